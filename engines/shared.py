"""The backbones' weights, once: a model reads them from the backbone files beside it, never a copy of its own.

A model folder (the package's `engines/weights/`, or what `streamer train --out` writes) holds the
exported graph (`fusion.onnx`), its sidecar and state dict, and `backbones/`:

- `backbones/yamnet.bin`: YAMNet's weights, the external data of `backbones/yamnet.onnx` (which the torch
  backend loads) and, for the same tensors, of the exported graph: its YAMNet initializers are ONNX
  external-data references (location `backbones/yamnet.bin`, offset, length) into that file
  (`share_weights`). ONNX Runtime, `onnx.load` and TensorRT's parser all read external data relative
  to the model's folder (ONNX Runtime refuses a location outside it, so the file sits below it).
- `backbones/movenet_multipose.onnx`: the pose model. The exported graph takes `poses` as an input;
  ONNX Runtime and torch run this file on the frames (engines.pose.PoseRunner) and TensorRT builds the one
  graph with it in front (engines.pose.one_graph): the model's metadata names the file and its frames.

The model's metadata (`SHARED_KEY`) records the sha256 of each such file as exported, so a backbone file
that changed since is an error at load (`check_shared_files`), not silently different weights, and the
model's digest covers them (`model_files`, `model_sha256`: the TensorRT engine cache key).

Imports onnx and numpy only (never torch): the CPU serving path uses it.
"""

from __future__ import annotations

import hashlib
import json
import logging
import shutil
from pathlib import Path
from typing import Any

from engines.errors import ModelLoadError
from engines.spec import BACKBONE_DIR

log = logging.getLogger(__name__)

SHARED_KEY = "streamer.shared_files"  # ONNX metadata: {file relative to the model's folder: sha256} (JSON)
BACKBONES = "backbones"  # the folder beside a model with its backbones' files
YAMNET_WEIGHTS = f"{BACKBONES}/yamnet.bin"  # YAMNet's weights: external data of backbones/yamnet.onnx and of the model
YAMNET_GRAPH = f"{BACKBONES}/yamnet.onnx"
POSE_MODEL = f"{BACKBONES}/movenet_multipose.onnx"
NOTICE = f"{BACKBONES}/NOTICE.md"  # Apache-2.0 asks that the notice travels with the files


def file_sha256(path: str | Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(1 << 20):
            h.update(chunk)
    return h.hexdigest()


def read_graph(onnx_path: str | Path) -> Any:
    """The model without its external data (names, metadata, references): quick, whatever its weights."""
    import onnx

    return onnx.load(str(onnx_path), load_external_data=False)


def metadata(model: Any) -> dict[str, str]:
    return {p.key: p.value for p in model.metadata_props}


def set_metadata(model: Any, key: str, value: Any) -> None:
    """Write `key` (JSON of `value`; None removes it) into the model's metadata, in place."""
    for p in list(model.metadata_props):
        if p.key == key:
            model.metadata_props.remove(p)
    if value is not None:
        model.metadata_props.add(key=key, value=json.dumps(value, sort_keys=True))


def save_graph(model: Any, onnx_path: str | Path) -> None:
    """Write the model's protobuf as it is: external-data references stay references. (`onnx.save` would
    write the bytes of any tensor that has both into the external file, appending to a shared one.)"""
    Path(onnx_path).write_bytes(model.SerializeToString())


def shared_files(onnx_path: str | Path) -> dict[str, str]:
    """{file relative to the model's folder: sha256 at export} of the files the model reads beside its
    graph; {} for a model that records none (older exports keep theirs as `<stem>.*.bin`), or a file
    that is no ONNX model."""
    try:
        value = metadata(read_graph(onnx_path)).get(SHARED_KEY)
    except Exception:  # noqa: BLE001  (onnx raises protobuf's own types for a file that is no model)
        return {}
    return dict(json.loads(value)) if value else {}


def check_shared_files(onnx_path: str | Path, folder: str | Path | None = None) -> None:
    """ModelLoadError unless every file the model shares is there with the bytes it was exported against:
    beside it, or in `folder` for a runtime that reads them from there (torch: the package's)."""
    base = Path(onnx_path).parent if folder is None else Path(folder)
    for rel, sha in shared_files(onnx_path).items():
        f = base / rel
        if not f.is_file():
            raise ModelLoadError(f"{Path(onnx_path).name} reads {rel} beside it, which is missing ({f})")
        if file_sha256(f) != sha:
            raise ModelLoadError(f"{f} is not the file {Path(onnx_path).name} was exported with (sha256 "
                                 f"{sha[:12]}...): re-derived or replaced; restore it or export the model again")


def model_files(onnx_path: str | Path) -> list[Path]:
    """The ONNX file and every file it reads beside it: its shared backbone files (`SHARED_KEY`), or for
    older exports its own external weight files (`<stem>.<part>.bin`)."""
    p = Path(onnx_path)
    shared = shared_files(p)
    if shared:
        return [p, *(p.parent / rel for rel in sorted(shared))]
    return [p, *sorted(p.parent.glob(f"{p.stem}.*.bin"))]


def model_sha256(onnx_path: str | Path) -> str:
    """sha256 over the graph and every file it reads (`model_files`), each with its name relative to the
    model's folder, in order: changes when any of them does."""
    h = hashlib.sha256()
    base = Path(onnx_path).parent
    for f in model_files(onnx_path):
        h.update(f.relative_to(base).as_posix().encode())
        try:
            h.update(f.read_bytes())
        except OSError as e:
            raise ModelLoadError(f"model file {f} (read by {Path(onnx_path).name}) is missing or unreadable: "
                                 f"{e.strerror or e}") from None
    return h.hexdigest()


def provide_backbones(folder: str | Path, files: tuple[str, ...] = (YAMNET_WEIGHTS, POSE_MODEL, NOTICE)) -> None:
    """Make `folder/backbones/` hold the package's backbone `files` (a model folder outside the package
    gets its own copy, once; in the package they are the package's)."""
    folder = Path(folder)
    if (folder / BACKBONES).resolve() == BACKBONE_DIR.resolve():
        return
    for rel in files:
        src, dst = BACKBONE_DIR.parent / rel, folder / rel
        if dst.is_file() and file_sha256(dst) == file_sha256(src):
            continue
        if dst.exists() and rel != NOTICE:
            log.warning("replacing %s by the package's %s: models exported against the old one will not load", dst, rel)
        dst.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(src, dst)


def _tensor_bytes(t: Any, base: Path) -> bytes:
    """A tensor's data as stored (little-endian), wherever it is: inline or in an external file."""
    from onnx import TensorProto, numpy_helper
    from onnx.external_data_helper import ExternalDataInfo

    if t.data_location == TensorProto.EXTERNAL:
        info = ExternalDataInfo(t)
        with open(base / info.location, "rb") as f:
            f.seek(info.offset or 0)
            return f.read(info.length) if info.length else f.read()
    if t.HasField("raw_data"):
        return bytes(t.raw_data)
    return bytes(numpy_helper.from_array(numpy_helper.to_array(t)).raw_data)


def external_tensors(onnx_path: str | Path, location: str) -> dict[tuple[int, tuple[int, ...], str], tuple[int, int]]:
    """{(data type, shape, sha256 of the bytes): (offset, length)} of the tensors a model keeps in its
    external file `location` (relative to the model's folder), read from that file."""
    from onnx.external_data_helper import ExternalDataInfo

    p = Path(onnx_path)
    out: dict[tuple[int, tuple[int, ...], str], tuple[int, int]] = {}
    for t in read_graph(p).graph.initializer:
        if t.external_data and ExternalDataInfo(t).location == location:
            data = _tensor_bytes(t, p.parent)
            key = (t.data_type, tuple(t.dims), hashlib.sha256(data).hexdigest())
            out.setdefault(key, (int(ExternalDataInfo(t).offset or 0), len(data)))
    return out


def weights_apart(onnx_path: str | Path, location: str) -> None:
    """Rewrite an ONNX file with every initializer's data in the external file `location` (beside it,
    written anew), the graph keeping references; deterministic for the same graph."""
    import onnx

    p = Path(onnx_path)
    m = onnx.load(str(p))
    (p.parent / location).unlink(missing_ok=True)  # onnx appends to an existing file
    onnx.save_model(m, str(p), save_as_external_data=True, all_tensors_to_one_file=True, location=location,
                    size_threshold=0, convert_attribute=False)
    (p.parent / location).chmod(0o644)  # onnx creates it owner-only; it ships in the package


def share_weights(onnx_path: str | Path, location: str = YAMNET_WEIGHTS, graph: str = YAMNET_GRAPH,
                  extra: tuple[str, ...] = ()) -> list[Path]:
    """Point every initializer of `onnx_path` whose data is byte for byte a tensor of the backbone `graph`
    (its weights in `location`, both relative to the model's folder; the package's when the folder is
    not the package) at that tensor in `location`, and record the sha256 of `location` and of `extra`
    (other files the model reads, e.g. the pose model) in the model's metadata. In place, idempotent;
    initializers that are external data of another file (older exports: `<stem>.yamnet.bin`) are
    matched too, and that file deleted when nothing reads it any more. Returns `model_files`."""
    from onnx import TensorProto
    from onnx.external_data_helper import ExternalDataInfo

    p = Path(onnx_path)
    base = p.parent
    provide_backbones(base, tuple(dict.fromkeys((location, *extra, NOTICE))))
    src = BACKBONE_DIR.parent / graph  # the package's: `location` in the folder is a copy of its weights
    index = external_tensors(src, Path(location).relative_to(Path(graph).parent).as_posix())
    if not index:
        raise ValueError(f"{src} keeps no weights in {location}")
    m = read_graph(p)
    before = {ExternalDataInfo(t).location for t in m.graph.initializer if t.data_location == TensorProto.EXTERNAL}
    shared = 0
    for t in m.graph.initializer:
        data = _tensor_bytes(t, base)
        hit = index.get((t.data_type, tuple(t.dims), hashlib.sha256(data).hexdigest()))
        if hit is None:
            if t.data_location == TensorProto.EXTERNAL and ExternalDataInfo(t).location != location:
                raise ValueError(f"{p.name}: tensor {t.name} is in {ExternalDataInfo(t).location} and not in {location}")
            continue
        offset, length = hit
        t.ClearField("raw_data")
        for f in ("float_data", "int32_data", "int64_data", "double_data", "uint64_data", "string_data"):
            t.ClearField(f)
        del t.external_data[:]
        t.data_location = TensorProto.EXTERNAL
        for k, v in (("location", location), ("offset", str(offset)), ("length", str(length))):
            t.external_data.add(key=k, value=v)
        shared += 1
    files = {rel: file_sha256(base / rel) for rel in (location, *extra)}
    set_metadata(m, SHARED_KEY, files)
    save_graph(m, p)
    for old in before - {location}:
        (base / old).unlink(missing_ok=True)
    log.info("%s: %d initializers read from %s", p.name, shared, location)
    return model_files(p)
