"""`streamer eval classify|anomaly` and `streamer learn-normal`.

Wire into the main parser with `add_parsers(subparsers)`; every command sets `fn(args) -> int`.

    streamer eval classify DIR --json [--negative a,b] [--model PATH]
    streamer eval anomaly DIR --json [--model PATH]
    streamer learn-normal --camera ID --from FILE_OR_URL [--minutes N] [--out DIR] [--model PATH]
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
import time
from pathlib import Path

from engines.runtime.select import BACKENDS
from streamer.config import NORMALITY_DIR
from streamer.detect.normality import DEFAULT_FAR

log = logging.getLogger(__name__)

LIVE_DEFAULT_MINUTES = 10.0  # a live URL without --minutes


def _model(args: argparse.Namespace) -> str:
    from engines.spec import DEFAULT_MODEL

    return str(args.model or DEFAULT_MODEL)


def _filters(items: list[str] | None) -> dict[str, str]:
    out = {}
    for it in items or []:
        if "=" not in it:
            raise ValueError(f"--where takes COLUMN=VALUE, got {it!r}")
        k, v = it.split("=", 1)
        out[k.strip()] = v.strip()
    return out


def cmd_eval(args: argparse.Namespace) -> int:
    from engines.errors import EngineError
    from streamer.detect.normality import NormalityError
    from streamer.evaluate import EvalError, evaluate_anomaly, evaluate_classification

    t0 = time.time()
    try:
        if args.what == "classify":
            negatives = [n.strip() for n in (args.negative or "").split(",") if n.strip()]
            res = evaluate_classification(args.dir, _model(args), negatives=negatives, filters=_filters(args.where),
                                          backend=args.backend, hop=args.hop, workers=args.workers,
                                          threads=args.threads, progress=not args.json and sys.stderr.isatty())
            out = res.report
            for f in res.failed:
                print(f"warning: skipped {f}", file=sys.stderr)
        else:
            out = evaluate_anomaly(args.dir, _model(args), hop=args.hop, far=args.far, workers=args.workers,
                                   progress=not args.json and sys.stderr.isatty())
    except (EvalError, NormalityError, EngineError, FileNotFoundError, ValueError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    if args.json:
        print(json.dumps(out))
    else:
        _print_human(args.what, out, time.time() - t0)
    return 0


def _print_human(what: str, out: dict, seconds: float) -> None:
    if what == "classify":
        print(f"{out['n']} clips: accuracy {out['accuracy']:.3f}, macro F1 {out['macro_f1']:.3f} ({seconds:.0f} s)")
        print(f"{'label':20} {'n':>5} {'AP':>7} {'precision':>10} {'recall':>8}")
        for lab, m in out["per_class"].items():
            ap = "-" if m["ap"] is None else f"{m['ap']:.3f}"
            print(f"{lab:20} {m['n']:>5} {ap:>7} {m['precision']:>10.3f} {m['recall']:>8.3f}")
    else:
        print(f"{out['frames']} test frames ({out['anomalous_frames']} anomalous): frame AUC {out['auc']:.4f}; "
              f"at the calibrated threshold (false-alarm rate {out['far_target']:g}) "
              f"{out['alert_rate_normal']} of normal and {out['alert_rate_anomalous']} of anomalous frames alert "
              f"({seconds:.0f} s)")


def cmd_learn_normal(args: argparse.Namespace) -> int:
    """Learn a camera's normality from a file or a live URL (the first --minutes of it): the moving objects
    the ingest finds in its windows (the engine is not run)."""
    from dataclasses import replace

    from streamer import urls
    from streamer.detect.normality import NormalityError, NormalityModel, camera_path
    from streamer.errors import SourceError, redact
    from streamer.ingest.opening import SourceOptions
    from streamer.ingest.source import SourceReader, probe_geometry

    minutes = args.minutes if args.minutes else (LIVE_DEFAULT_MINUTES if urls.is_live(args.source) else None)
    limit = minutes * 60.0 if minutes else None
    try:
        from engines.spec import load_spec

        spec = load_spec(_model(args))
        geo = replace(probe_geometry(spec, args.hop), objects=True)
        reader = SourceReader(args.source, args.camera, geo, SourceOptions())
        objs = []
        t0 = time.time()
        for w in reader.windows():
            if limit is not None and w.end > limit + 1e-6:
                break
            objs.append(w.objects)
            if len(objs) % 240 == 0:
                print(f"[learn-normal] {args.camera}: {len(objs)} windows ({w.end / 60:.1f} min of footage)",
                      file=sys.stderr, flush=True)
        if not objs:
            raise NormalityError(f"{redact(args.source)} gave no windows")
        nm = NormalityModel.fit([objs], spec.frames, camera=args.camera, far=args.far)
        path = nm.save(Path(args.out_file) if args.out_file else camera_path(Path(args.out).expanduser(), args.camera))
    except (NormalityError, SourceError, FileNotFoundError, ValueError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    info = {"camera": args.camera, "path": str(path), "windows": nm.windows, "objects": nm.calibration["objects"],
            "threshold": round(nm.threshold, 6), "far": nm.far, "seconds": round(time.time() - t0, 1)}
    print(json.dumps(info) if args.json else
          f"learned normal for camera {args.camera} from {nm.windows} windows ({info['objects']} moving objects): "
          f"{path} (threshold {nm.threshold:.3f} for a false-alarm rate of {nm.far:g})")
    return 0


def _common(s: argparse.ArgumentParser) -> None:
    s.add_argument("--model", default=None, help="ONNX model with its .json sidecar (default: the bundled one)")
    s.add_argument("--backend", choices=BACKENDS, default="onnxruntime",
                   help="engine backend (default onnxruntime)")
    s.add_argument("--threads", type=int, default=0, help="CPU threads for the engine (0: the backend's choice)")
    s.add_argument("--hop", type=float, default=0.5, help="window hop in seconds (the pipeline's default 0.5)")
    s.add_argument("--json", action="store_true", help="print one JSON object")


def add_parsers(sub: argparse._SubParsersAction) -> None:
    """Add `eval` and `learn-normal` to the `streamer` subcommands."""
    s = sub.add_parser("eval", help="measure the model on a labelled folder (classify) or an anomaly folder")
    s.add_argument("what", choices=("classify", "anomaly"))
    s.add_argument("dir", type=Path, help="classification folder (labels.csv: file,label) or anomaly folder "
                   "(train/, test/, test/labels.csv)")
    s.add_argument("--negative", default="", help="classify: labels meaning 'none of the classes', comma-separated")
    s.add_argument("--where", action="append", metavar="COLUMN=VALUE",
                   help="classify: only rows of labels.csv with this value (repeatable), e.g. fold=2")
    s.add_argument("--workers", type=int, default=2, help="decoding processes")
    s.add_argument("--far", type=float, default=DEFAULT_FAR, help="anomaly: false-alarm rate the threshold is set for")
    _common(s)
    s.set_defaults(fn=cmd_eval)

    s = sub.add_parser("learn-normal", help="learn a camera's normality (anomaly) model from its own footage")
    s.add_argument("--camera", required=True, help="camera id (the model is saved as <out>/<camera>.npz)")
    s.add_argument("--from", dest="source", required=True, metavar="FILE_OR_URL", help="normal footage: file or URL")
    s.add_argument("--minutes", type=float, default=None, help="learn from the first N minutes (default: all of "
                   f"a file, {LIVE_DEFAULT_MINUTES:g} of a live URL)")
    s.add_argument("--out", default=NORMALITY_DIR, help=f"folder of per-camera models (default {NORMALITY_DIR}, where `streamer run` looks)")
    s.add_argument("--out-file", default=None, help="exact output path instead of <out>/<camera>.npz")
    s.add_argument("--far", type=float, default=DEFAULT_FAR, help="false-alarm rate (fraction of normal windows) the "
                   f"threshold is calibrated to (default {DEFAULT_FAR:g})")
    _common(s)
    s.set_defaults(fn=cmd_learn_normal)


def main(argv: list[str] | None = None) -> int:
    """Stand-alone entry (`python -m streamer.eval_cli ...`) until the main CLI wires `add_parsers`."""
    p = argparse.ArgumentParser(prog="streamer")
    add_parsers(p.add_subparsers(dest="cmd", required=True))
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    return int(args.fn(args) or 0)


if __name__ == "__main__":
    sys.exit(main())
