"""Operating the fleet while it runs: cameras added, removed and changed through the HTTP API or SIGHUP,
written back to the config file (the status the API and the page show: streamer/fleet_status.py).

Persistence: **the config file itself** is the one place the fleet is written down. An API change
rewrites its `cameras:` list (ruamel.yaml round trip: every other line, comment and key order is kept),
into a temporary file beside it that is fsynced and renamed over it (atomic: a crash leaves the old file
or the new one, never half of one); the result is validated like any config before it replaces the old
one. So `streamer run FILE` after a restart runs what the API left, and SIGHUP (edit the file, then
`kill -HUP <pid>`) applies the file's difference to what runs: cameras added, removed, and changed
(thresholds and loudness alone: live; anything else: that camera alone restarts, its timeline continued). Sections
other than `cameras` take effect at the next restart (SIGHUP logs which ones differ). Without a file
(`streamer demo`) changes apply to the running process only (`"persisted": false`).

With shards (`shard.replicas` > 1) the file lists every replica's cameras; an added camera runs on the
replica it hashes to (the API answers `"running": false` and its replica elsewhere).
"""

from __future__ import annotations

import io
import logging
import os
import threading
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ValidationError

from streamer import shard, urls
from streamer.config import CameraConfig, Config, error_list, load_config, parse_config
from streamer.detect.events import known_classes
from streamer.errors import ConfigError, redact, redact_text
from streamer.fleet_status import FleetStatus

log = logging.getLogger(__name__)

CALL_TIMEOUT_S = 10.0  # an API change waits this long for the pipeline's thread


class ApiError(Exception):
    """An answer other than 2xx: status, a one-line message, and (422) the errors with their key paths."""

    def __init__(self, status: int, message: str, errors: list[dict[str, Any]] | None = None) -> None:
        super().__init__(message)
        self.status, self.message, self.errors = status, redact_text(message), errors or []

    def body(self) -> dict[str, Any]:
        out: dict[str, Any] = {"error": self.message}
        if self.errors:
            out["errors"] = self.errors
        return out


# ---- the config file --------------------------------------------------------------------------------
def _rt_yaml(text: str) -> tuple[Any, Any]:
    from ruamel.yaml import YAML
    from ruamel.yaml.util import load_yaml_guess_indent

    _data, indent, block_seq_indent = load_yaml_guess_indent(text)
    rt = YAML(typ="rt")
    rt.preserve_quotes = True
    rt.width = 4096
    # the file's own sequence style (`- id:` under `cameras:` at its indent); mappings at 2, as written by hand
    rt.indent(mapping=2, sequence=indent or 2, offset=block_seq_indent or 0)
    return rt, rt.load(text)


def atomic_write(path: Path, text: str) -> None:
    """Write a file so that readers see the old one or the new one whole: a temporary file beside it,
    fsynced, renamed over it, the directory fsynced. The file's mode is kept."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        mode = path.stat().st_mode & 0o7777
    except OSError:
        mode = 0o644
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
    try:
        with os.fdopen(fd, "w") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    dfd = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(dfd)
    finally:
        os.close(dfd)


def edit_cameras(path: Path, change: Any) -> None:
    """Apply `change(cameras)` to the file's `cameras:` list (a ruamel sequence of mappings, edited in
    place) and write the file back atomically, after checking that it is still a valid config."""
    text = path.read_text()
    rt, doc = _rt_yaml(text)
    change(doc["cameras"])
    out = io.StringIO()
    rt.dump(doc, out)
    new = out.getvalue()
    parse_config(yaml.safe_load(new), str(path), new)  # a ConfigError here leaves the file as it was
    atomic_write(path, new)


def camera_doc(cam: CameraConfig) -> dict[str, Any]:
    """The camera as it goes into the file: the keys that were given, their validated values."""
    out: dict[str, Any] = {"id": cam.id}
    for k in CameraConfig.model_fields:
        if k != "id" and k in cam.model_fields_set:
            v = getattr(cam, k)
            out[k] = v.model_dump() if isinstance(v, BaseModel) else dict(v) if isinstance(v, dict) else v
    return out


# ---- the fleet ---------------------------------------------------------------------------------------
class Fleet:
    """The running pipeline, its config file (or None), and the changes made to them."""

    def __init__(self, pipe: Any, path: str | Path | None = None, loaded: Config | None = None) -> None:
        self.pipe = pipe
        self.path = Path(path).resolve() if path else None  # a symlinked config: the file it points to
        self.loaded = loaded  # the whole config as read at start (every replica's cameras)
        self._lock = threading.Lock()  # one change at a time (API calls, SIGHUP)
        self.status = FleetStatus(pipe)

    # ---- status (streamer.fleet_status) ------------------------------------------------------------
    def snapshot(self, max_age: float = 1.0) -> dict[str, Any]:
        """Cameras and engine, as /api/cameras, /api/engine and the page show them (computed at most
        once per `max_age` s, however many clients ask)."""
        return self.status.snapshot(max_age)

    def history(self, cid: str, since: float | None = None, alerts: bool = True) -> dict[str, Any]:
        """GET /api/cameras/{id}/history: the camera's timeline (streamer.outputs.history)."""
        view = self.status.history(cid, since, alerts)
        if view is None:
            raise ApiError(404, f"no camera {cid} running here")
        return view

    def histories(self, since: dict[str, float]) -> dict[str, Any]:
        """Every camera's rows after `since[camera]` (the event stream's `history` event), without alerts."""
        return self.status.histories(since)

    def readiness(self) -> tuple[bool, str]:
        """(ready, reason): the engine answers and at least one source delivers."""
        return self.status.readiness()

    # ---- changes -----------------------------------------------------------------------------------
    def _call(self, op: str, *args: Any, timeout: float = CALL_TIMEOUT_S) -> Any:
        try:
            return self.pipe.call(op, *args, timeout=timeout)
        except KeyError as e:
            raise ApiError(409 if op == "add" else 404, str(e.args[0]) if e.args else str(e)) from None
        except ConfigError as e:
            raise ApiError(422, str(e), [{"path": "normality", "msg": str(e)}]) from None
        except RuntimeError as e:
            raise ApiError(503, str(e)) from None
        except TimeoutError:
            raise ApiError(503, f"the pipeline did not apply the change within {timeout:g} s") from None
        finally:
            self.status.invalidate()  # the next status shows the change

    def _file_config(self) -> Config | None:
        if self.path is None:
            return None
        try:
            return load_config(self.path)
        except ConfigError as e:
            raise ApiError(409, f"the config file does not load as it is now, fix it first: {str(e).splitlines()[0]}") from None

    def _validate(self, doc: dict[str, Any], payload: dict[str, Any]) -> CameraConfig:
        """The camera `doc` describes, checked as a config would be; `payload`: what the request gave."""
        try:
            cam = CameraConfig.model_validate(doc)
        except ValidationError as e:
            errs = error_list(e)
            raise ApiError(422, "; ".join(f"{x['path']}: {x['msg']}" for x in errs), errs) from None
        self._check_sources(payload)
        self._check_thresholds(cam.thresholds)
        return cam

    def _check_thresholds(self, values: dict[str, float], prefix: str = "thresholds") -> None:
        known = known_classes(self.pipe.cfg, self.pipe.spec.classes)
        bad = [{"path": f"{prefix}.{k}", "msg": f"unknown class; the model has {sorted(known)}", "got": k}
               for k in sorted(set(values) - known)]
        if bad:
            raise ApiError(422, f"{bad[0]['path']}: unknown class", bad)

    def _check_sources(self, payload: dict[str, Any]) -> None:
        """The API's part of the URL policy (streamer.urls): a file only under http.media_roots; a
        normality model only under anomaly.dir or http.media_roots."""
        roots = self.pipe.cfg.http.media_roots
        bad = []
        for key in ("url", "detect_url"):
            if isinstance(payload.get(key), str):
                try:
                    urls.check(payload[key], roots)
                except ValueError as e:
                    bad.append({"path": key, "msg": str(e), "got": redact(payload[key])})
        if isinstance(payload.get("normality"), str):  # a model file is read: only from where models live
            try:
                urls.check_file_under(payload["normality"], [self.pipe.cfg.anomaly.dir, *roots], "normality models")
            except ValueError as e:
                bad.append({"path": "normality", "msg": str(e), "got": payload["normality"]})
        if bad:
            raise ApiError(422, f"{bad[0]['path']}: {bad[0]['msg']}", bad)

    def _persist(self, change: Any) -> bool:
        if self.path is None:
            return False
        try:
            edit_cameras(self.path, change)
        except OSError as e:
            raise ApiError(500, f"cannot write the config file {self.path}: {e.strerror or e}; nothing was changed") from None
        except ConfigError as e:
            raise ApiError(422, str(e).replace("\n", "; ")) from None
        return True

    def _owner(self, cid: str) -> int:
        s = self.pipe.cfg.shard
        return shard.owner(cid, s.replicas) if s.replicas > 1 else 0

    def _mine(self, cid: str) -> bool:
        return self._owner(cid) == (self.pipe.cfg.shard.index or 0)

    def add(self, payload: Any) -> dict[str, Any]:
        """POST /api/cameras: a camera object as in the YAML."""
        if not isinstance(payload, dict):
            raise ApiError(422, "(top level): expected a camera object", [{"path": "(top level)", "msg": "expected an object"}])
        cam = self._validate(payload, payload)
        with self._lock:
            running = {c.id for c in self.pipe.cfg.cameras}
            full = self._file_config()
            if cam.id in running or (full is not None and cam.id in {c.id for c in full.cameras}):
                raise ApiError(409, f"camera {cam.id} exists (DELETE it first, or PATCH it)")
            persisted = self._persist(lambda seq: seq.append(camera_doc(cam)))
            mine = self._mine(cam.id)
            out: dict[str, Any] = {"id": cam.id, "persisted": persisted, "running": mine, "replica": self._owner(cam.id)}
            if mine:
                try:
                    r = self._call("add", cam)
                except ApiError:
                    if persisted:  # it did not start: the file must not say it runs
                        self._persist(lambda seq: _drop(seq, cam.id))
                    raise
                out.update(pid=r["pid"])
            log.info("camera %s: added through the API (%s)", cam.id, "persisted" if persisted else "not persisted")
            return out

    def remove(self, cid: str) -> dict[str, Any]:
        """DELETE /api/cameras/{id}: stops it, frees its ring; once its process has ended."""
        with self._lock:
            running = {c.id for c in self.pipe.cfg.cameras}
            full = self._file_config()
            in_file = full is not None and cid in {c.id for c in full.cameras}
            if cid not in running and not in_file:
                raise ApiError(404, f"no camera {cid}")
            if full is not None and in_file and len(full.cameras) == 1:
                raise ApiError(409, f"camera {cid} is the config's last camera (cameras needs at least one)")
            if full is None and len(running) == 1:
                raise ApiError(409, f"camera {cid} is the last camera")
            persisted = self._persist(lambda seq: _drop(seq, cid)) if in_file else False
            out: dict[str, Any] = {"id": cid, "persisted": persisted, "was_running": cid in running}
            if cid in running:
                r = self._call("remove", cid, timeout=CALL_TIMEOUT_S + 5)
                out.update(exitcode=r.get("exitcode"), ring=r.get("ring"))
            log.info("camera %s: removed through the API", cid)
            return out

    def patch(self, cid: str, payload: Any) -> dict[str, Any]:
        """PATCH /api/cameras/{id}: `thresholds` and `loudness` change live; any other key restarts that camera alone."""
        if not isinstance(payload, dict) or not payload:
            raise ApiError(422, "(top level): expected an object of camera keys to change", [{"path": "(top level)", "msg": "expected an object"}])
        if "id" in payload and payload["id"] != cid:
            raise ApiError(422, "id: a camera's id cannot change (DELETE and POST it)", [{"path": "id", "msg": "cannot change"}])
        with self._lock:
            current = next((c for c in self.pipe.cfg.cameras if c.id == cid), None)
            full = self._file_config()
            if current is None and full is not None:
                current = next((c for c in full.cameras if c.id == cid), None)
            if current is None:
                raise ApiError(404, f"no camera {cid}")
            merged = {**camera_doc(current), **payload, "id": cid}
            cam = self._validate(merged, payload)
            in_file = full is not None and cid in {c.id for c in full.cameras}
            persisted = self._persist(lambda seq: _update(seq, cid, payload, cam)) if in_file else False
            running = cid in {c.id for c in self.pipe.cfg.cameras}
            restarted = False
            if running:
                if live_only(current, cam):
                    self._call("detect", cam)
                else:
                    self._call("replace", cam)
                    restarted = True
            return {"id": cid, "persisted": persisted, "running": running, "restarted": restarted,
                    "thresholds": dict(cam.thresholds), "loudness": cam.loudness.model_dump() if cam.loudness else None}

    # ---- SIGHUP -----------------------------------------------------------------------------------
    def reload(self) -> dict[str, Any]:
        """Reread the config file and apply the difference in cameras; returns what was done."""
        if self.path is None:
            log.warning("SIGHUP: no config file to reread (streamer demo)")
            return {}
        with self._lock:
            try:
                new = load_config(self.path)
            except ConfigError as e:
                log.error("SIGHUP: %s; nothing changed", str(e).replace("\n", "; "))
                return {"error": str(e)}
            done = self._apply({c.id: c for c in self.pipe.cfg.cameras}, {c.id: c for c in shard.local_config(new).cameras})
            if self.loaded is not None:
                before, after = self.loaded.model_dump(exclude={"cameras"}), new.model_dump(exclude={"cameras"})
                later = sorted(k for k in after if before.get(k) != after[k])
                if later:
                    log.warning("SIGHUP: %s changed in %s; that takes effect at the next restart", ", ".join(later), self.path)
            self.loaded = new
            self.status.invalidate()
            log.info("SIGHUP: %s reread: added %s, removed %s, changed %s%s", self.path, done["added"] or "none",
                     done["removed"] or "none", done["changed"] or "none",
                     f", failed {done['failed']}" if done["failed"] else "")
            return done

    def _apply(self, cur: dict[str, CameraConfig], want: dict[str, CameraConfig]) -> dict[str, list[str]]:
        """Make the running cameras `cur` into `want`: removals first (all at once), then additions, then changes."""
        done: dict[str, list[str]] = {"added": [], "removed": [], "changed": [], "failed": []}
        removals = [(cid, self.pipe.submit("remove", cid)) for cid in sorted(set(cur) - set(want))]
        for cid, fut in removals:
            try:
                fut.result(CALL_TIMEOUT_S + 5)
                done["removed"].append(cid)
            except Exception as e:
                log.error("SIGHUP: camera %s not removed: %s", cid, e)
                done["failed"].append(cid)
        for cid in sorted(set(want) - set(cur)):
            try:
                self.pipe.call("add", want[cid], timeout=CALL_TIMEOUT_S)
                done["added"].append(cid)
            except Exception as e:
                log.error("SIGHUP: camera %s not added: %s", cid, redact_text(str(e)))
                done["failed"].append(cid)
        for cid in sorted(set(want) & set(cur)):
            if want[cid].model_dump() == cur[cid].model_dump():
                continue
            try:
                self.pipe.call("detect" if live_only(cur[cid], want[cid]) else "replace", want[cid])
                done["changed"].append(cid)
            except Exception as e:
                log.error("SIGHUP: camera %s not changed: %s", cid, redact_text(str(e)))
                done["failed"].append(cid)
        return done


def _drop(seq: Any, cid: str) -> None:
    for i in reversed(range(len(seq))):
        if isinstance(seq[i], dict) and seq[i].get("id") == cid:
            del seq[i]


def _update(seq: Any, cid: str, payload: dict[str, Any], cam: CameraConfig) -> None:
    for entry in seq:
        if isinstance(entry, dict) and entry.get("id") == cid:
            for k in payload:
                if k == "id":
                    continue
                v = getattr(cam, k)
                if (k == "thresholds" and not v) or (k in LIVE and v is None):
                    entry.pop(k, None)
                else:
                    entry[k] = camera_doc(cam)[k]


LIVE = ("thresholds", "loudness")  # a camera's settings that change while it runs (op `detect`)


def live_only(a: CameraConfig, b: CameraConfig) -> bool:
    """Whether a and b differ in LIVE settings at most."""
    blank = dict.fromkeys(LIVE)
    return {**a.model_dump(), **blank} == {**b.model_dump(), **blank}
