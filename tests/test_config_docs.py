"""scripts/config_docs.py renders docs/configuration.md's reference from streamer/config.py's models: every
key of every section with its description, and --check fails when the page is stale."""

from pathlib import Path

from streamer.config import Config
from tests import scripts

ROOT = Path(__file__).resolve().parents[1]


def load_script():
    return scripts.load_script("config_docs")


def sections(cd, path, model):
    yield path, model
    for name, field in model.model_fields.items():
        sub = cd.model_of(field.annotation)
        if sub is not None:
            yield from sections(cd, cd.key_path(path, name, field.annotation), sub)


def test_every_key_of_every_section_is_in_the_reference_with_its_description():
    cd = load_script()
    ref = cd.reference()
    found = 0
    for name, field in Config.model_fields.items():
        top = cd.key_path("", name, field.annotation)
        for path, model in sections(cd, top, cd.model_of(field.annotation)):
            table = ref.split(f"### `{path}`\n", 1)[1].split("\n### ", 1)[0]
            for key, f in model.model_fields.items():
                assert f"| `{key}` |" in table and cd.cell(f.description) in table, f"{path}.{key}"
                found += 1
    assert found > 60
    engine = ref.split("### `engine`\n", 1)[1].split("\n### ", 1)[0]
    assert "| `backend` | `auto` \\| `onnxruntime` \\| `onnxruntime-cpu` \\| `tensorrt` \\| `torch` |  | `auto` |" in engine
    assert "| `max_batch` | int | at least 1, at most 256 | `2` |" in engine
    cameras = ref.split("### `cameras[]`\n", 1)[1]
    assert "| `id` | str | `^[A-Za-z0-9_.-]{1,64}$` | required |" in cameras
    assert "default &lt;anomaly.dir>/&lt;id>.npz" in cameras  # not taken for HTML tags


def test_check_fails_on_a_stale_page_and_passes_once_rendered(tmp_path, capsys):
    cd = load_script()
    doc = tmp_path / "configuration.md"
    doc.write_text("# Configuration\n\nintro\n\n<!-- config:reference -->\nold\n<!-- /config:reference -->\n\nafter\n")
    assert cd.main(["--check"], doc=doc) == 1
    assert "out of date" in capsys.readouterr().err
    assert cd.main([], doc=doc) == 0
    assert cd.main(["--check"], doc=doc) == 0
    text = doc.read_text()
    assert text.startswith("# Configuration\n\nintro\n\n") and text.endswith("\n\nafter\n") and "### `redis`" in text
    doc.write_text("# no region\n")
    assert cd.main(["--check"], doc=doc) == 1
