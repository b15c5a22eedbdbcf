"""A dead process's metrics files are folded into one archive per type: the totals stay, the files do not."""

import multiprocessing as mp
import threading

import pytest

from streamer.outputs import metrics as m


def _child(camera: str, windows: int, infer_s: list[float]) -> None:
    """A stand-in ingest/engine process: it records what the real ones record (multiprocess mode from the
    environment it inherits at spawn), then exits."""
    from streamer.outputs import metrics

    metrics.WINDOWS.labels(camera).inc(windows)
    metrics.SOURCE_UP.labels(camera).set(1)
    for s in infer_s:
        metrics.STAGE_LATENCY.labels("infer").observe(s)


def _spawn(camera, windows, infer_s):
    p = mp.get_context("spawn").Process(target=_child, args=(camera, windows, infer_s))
    p.start()
    p.join(30)
    assert p.exitcode == 0
    return p.pid


def _value(name, labels):
    for s in m.collect_samples():
        if s.name == name and all(s.labels.get(k) == v for k, v in labels.items()):
            return s.value
    return None


@pytest.fixture
def multiproc_dir(tmp_path, monkeypatch):
    monkeypatch.setenv(m.MULTIPROC_ENV, str(tmp_path))
    return tmp_path


def test_dead_processes_fold_into_two_files_and_their_totals_stay(multiproc_dir):
    pids = [_spawn("a", 5, [0.03, 0.03, 0.3]) for _ in range(3)] + [_spawn("b", 2, [])]
    assert len(list(multiproc_dir.glob("*.db"))) >= 9  # counter, histogram and live gauge per process
    for pid in pids:
        m.process_exited(pid)
    assert sorted(f.name for f in multiproc_dir.glob("*.db")) == ["counter_archive.db", "histogram_archive.db"]
    assert _value("streamer_windows_total", {"camera": "a"}) == 15
    assert _value("streamer_windows_total", {"camera": "b"}) == 2
    assert _value("streamer_stage_latency_seconds_count", {"stage": "infer"}) == 9
    assert _value("streamer_stage_latency_seconds_bucket", {"stage": "infer", "le": "0.035"}) == 6
    assert _value("streamer_stage_latency_seconds_sum", {"stage": "infer"}) == pytest.approx(3 * 0.36)
    assert _value("streamer_source_up", {"camera": "a"}) is None  # a dead process's live gauge goes


def test_a_later_death_adds_to_the_archive_and_a_live_process_is_left_alone(multiproc_dir):
    m.process_exited(_spawn("a", 4, [0.01]))
    later = _spawn("a", 6, [0.01])
    assert _value("streamer_windows_total", {"camera": "a"}) == 10  # archived + not yet folded
    m.process_exited(later)
    m.process_exited(later)  # twice (the supervisor and a stop may both say so): nothing counted again
    assert _value("streamer_windows_total", {"camera": "a"}) == 10
    assert _value("streamer_stage_latency_seconds_count", {"stage": "infer"}) == 2


def test_a_scrape_during_folds_never_sees_a_total_twice_or_missing(multiproc_dir):
    pids = [_spawn("a", 1, []) for _ in range(12)]
    seen, errors, done = [], [], threading.Event()

    def scrape():
        while not done.is_set():
            try:
                seen.append(_value("streamer_windows_total", {"camera": "a"}))
            except Exception as e:  # a file removed between the collector's glob and its read
                errors.append(e)

    t = threading.Thread(target=scrape)
    t.start()
    for pid in pids:
        m.process_exited(pid)
    done.set()
    t.join()
    assert not errors
    assert len(seen) > 0 and set(seen) == {12}
