"""`python -m engines.train --data ../shared/data --out engines/weights [--minutes N]`

Trains the default fusion model, exports it (ONNX + sidecar + PyTorch state dict), checks ONNX
Runtime against PyTorch, measures CPU throughput and writes MODEL_CARD.md beside the weights.
`streamer train` calls `main(argv)`.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import logging
import math
import platform
import shlex
import sys
import time
from dataclasses import replace
from pathlib import Path

log = logging.getLogger(__name__)


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m engines.train", description=__doc__.split("\n\n")[1])
    p.add_argument("--data", type=Path, default=None,
                   help="folder holding urbansound8k/, glass_break/, fight/ (required unless --card-only)")
    p.add_argument("--out", type=Path, default=Path("engines/weights"), help="output folder (fusion.onnx, ...)")
    p.add_argument("--minutes", type=float, default=5.0, help="training time budget (default 5)")
    p.add_argument("--steps", type=int, default=0, help="train a fixed number of steps instead (reproducible)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=2, help="CPU threads for decoding and training")
    p.add_argument("--name", default="fusion", help="model name (file stem)")
    p.add_argument("--far", type=float, default=None,
                   help="per-class thresholds: false-alarm rate on validation negative windows (default 0.02)")
    p.add_argument("--far-video", type=float, default=None,
                   help="the same for fight, over validation no_fight windows (default 0.2)")
    p.add_argument("--mix", type=float, default=None,
                   help="probability of mixing two urbansound8k windows (targets: both; default 0.5)")
    p.add_argument("--audio-steps", type=int, default=None,
                   help="audio-only steps after each step with video (default: the recipe's, TrainConfig)")
    p.add_argument("--select", choices=("final", "best"), default="final",
                   help="keep the last step (default) or the step with the best validation mAP")
    p.add_argument("--resume", action="store_true", help="continue the run in .cache/train/last.pt")
    p.add_argument("--card-only", action="store_true",
                   help="only rewrite MODEL_CARD.md from <out>/<name>.metrics.json (and <name>.eval.json)")
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if not logging.getLogger().handlers:
        logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    if args.card_only:
        return write_card(args.out, args.name)
    if args.data is None:
        print("error: --data is required (unless --card-only)", file=sys.stderr)
        return 2
    for d in ("urbansound8k", "glass_break", "fight"):  # ucsd_ped2 is optional (extra negatives)
        if not (args.data / d / "labels.csv").is_file():
            print(f"error: {args.data / d / 'labels.csv'} not found (--data must hold the dataset folders)",
                  file=sys.stderr)
            return 2
    from engines.bench import measure_throughput
    from engines.export import check_parity, export_onnx, save_torch_weights
    from engines.model import embedding_layout, set_static_output_dims, write_layout
    from engines.runtime.onnxruntime import OnnxRuntime
    from engines.spec import save_spec
    from engines.train.loop import DEFAULT_FAR, DEFAULT_FAR_VIDEO, TrainConfig, train

    cfg = TrainConfig(data_dir=args.data, out_dir=args.out, minutes=args.minutes, steps=args.steps,
                      seed=args.seed, threads=args.threads, far=DEFAULT_FAR if args.far is None else args.far,
                      far_video=DEFAULT_FAR_VIDEO if args.far_video is None else args.far_video,
                      select=args.select, resume=args.resume)
    if args.mix is not None:
        cfg.mix_p = args.mix
    if args.audio_steps is not None:
        cfg.audio_steps = args.audio_steps
    res = train(cfg)
    model, spec, report = res["model"], res["spec"], res["report"]
    spec = replace(spec, thresholds=res["thresholds"], name=args.name)
    model.spec = spec
    args.out.mkdir(parents=True, exist_ok=True)
    onnx_path = args.out / f"{args.name}.onnx"
    export_onnx(model, spec, onnx_path)
    layout = embedding_layout(spec, model.arch)
    write_layout(onnx_path, layout)
    set_static_output_dims(onnx_path, spec)
    report["embedding_layout"] = layout
    parity = check_parity(model, onnx_path, spec, batches=(1, 3, 8))
    digest = hashlib.sha256(onnx_path.read_bytes()).hexdigest()[:12]
    spec = replace(spec, version=f"0.1.0+{digest}")
    save_spec(spec, onnx_path)
    save_torch_weights(model, onnx_path)
    speed = {}
    for b in (1, 8):
        with OnnxRuntime(onnx_path, intra_op_threads=args.threads) as rt:
            speed[b] = measure_throughput(rt, b, seconds=5.0)
    wall = time.time() - res["t_start"]
    command = "python -m engines.train " + " ".join(shlex.quote(a) for a in (argv if argv is not None
                                                                              else sys.argv[1:]))
    report.update(parity=[p.__dict__ for p in parity], ort_windows_per_s=speed, wall_seconds=round(wall, 1),
                  version=spec.version, onnx_sha256_12=digest, command=command,
                  machine=f"{platform.processor() or platform.machine()}, {args.threads} CPU threads")
    (args.out / f"{args.name}.metrics.json").write_text(json.dumps(report, indent=2, default=float) + "\n")
    write_card(args.out, args.name)
    log.info("wrote %s (version %s), ORT CPU %.0f windows/s at batch 1, %.0f at batch 8",
             onnx_path, spec.version, speed[1], speed[8])
    return 0


def _steps_split(r: dict) -> str:
    cfg = r.get("config", {})
    cycle = 1 + int(cfg.get("audio_steps", 0))
    full = (int(r["steps"]) + cycle - 1) // cycle
    return (f"{full} of {sum(r.get('batch_mix', {}).values())} windows with video, {int(r['steps']) - full} "
            f"audio-only of {sum(cfg.get('audio_mix', {}).values())} windows")


def _f(x, nd: int = 3) -> str:
    return "n/a" if x is None or (isinstance(x, float) and math.isnan(x)) else f"{x:.{nd}f}"


def write_card(out: Path, name: str = "fusion") -> int:
    """MODEL_CARD.md from `<name>.metrics.json` (training) and, when present, `<name>.eval.json`
    (results of `streamer eval` on the validation splits, see engines/weights/EVAL.md)."""
    from engines.spec import load_spec

    mp = out / f"{name}.metrics.json"
    if not mp.is_file():
        print(f"error: {mp} not found", file=sys.stderr)
        return 2
    report = json.loads(mp.read_text())
    ep = out / f"{name}.eval.json"
    ev = json.loads(ep.read_text()) if ep.is_file() else None
    spec = load_spec(out / f"{name}.onnx")
    (out / "MODEL_CARD.md").write_text(model_card(spec, report, ev, out))
    return 0


def model_card(spec, r: dict, ev: dict | None, out: Path) -> str:
    files = {p.name: p.stat().st_size for p in sorted(out.glob(f"{spec.name}.*"))}
    speed = {int(k): v for k, v in r["ort_windows_per_s"].items()}
    arch = r.get("arch", {})
    lay = r.get("embedding_layout") or {}
    cfg = r.get("config", {})
    u, g, fi = r["urbansound8k"], r["glass_break"], r["fight"]
    lines = [
        f"# {spec.name} {spec.version}: the default fusion model",
        "",
        ("One audio-visual network (engines/model.py, `engines.train.loop.default_arch()`): a per-frame "
         f"depthwise-separable CNN (channels {arch.get('video_channels')}) on {spec.frames} frames of "
         f"{spec.height}x{spec.width} RGB plus frame-to-frame differences (mean, max and mean change over time); "
         f"a CNN of full 3x3 convolutions (channels {arch.get('audio_channels')}) on a {arch.get('n_mels')}-bin "
         f"log-mel of {spec.window_seconds:g} s of {spec.sample_rate} Hz audio (STFT as a fixed-basis Conv1d "
         f"inside the graph); a fixed {arch.get('spatial_grid')}x{arch.get('spatial_grid')} grid of per-cell grey "
         "level and motion statistics, whose log-motion also feeds the fusion; fused with the two modality "
         f"masks by an MLP into {len(spec.classes)} independent sigmoid logits."),
        "",
        (f"- Parameters: {r['params']:,}; compute: {r['macs'] / 1e6:.1f} M multiply-accumulates per window "
         f"({2 * r['macs'] / 1e6:.0f} MFLOPs)."),
        (f"- ONNX Runtime CPU on this machine ({r.get('machine', '?')}): **{speed[1]:.0f} windows/s at batch 1, "
         f"{speed[8]:.0f} windows/s at batch 8** (target >= 40)."),
    ]
    eb = r.get("engine_benchmark")
    if eb:
        lines.append(
            f"- `python -m benchmarks.engine` (real windows of the demo clip, {eb.get('threads')} threads, load average "
            f"{eb.get('loadavg_before')}): ONNX Runtime **{eb['ort_windows_per_s_b8']:.0f} windows/s at batch 8**, "
            f"torch eager {eb['torch_windows_per_s_b8']:.0f}" + (f"; {eb['note']}" if eb.get("note") else "") + ".")
    lines += [
        "- ONNX vs PyTorch max |diff| of logits: "
        + ", ".join(f"batch {p['batch']}: {p['max_abs_diff_logits']:.1e}" for p in r["parity"]) + ".",
        "- Files: " + ", ".join(f"`{k}` ({v / 1e6:.2f} MB)" for k, v in files.items()) + ".",
        "",
        "## Results on validation data (never trained on; splits by source)",
        "",
    ]
    if ev:
        c = ev["classify"]
        us, fc, gb = c["urbansound8k"], c["fight"], c["glass_break"]
        an = ev.get("anomaly", {})
        lines += [
            "Measured with the commands in `engines/weights/EVAL.md` (`streamer eval`, the live decode and "
            "windowing, clip score = max over its windows, thresholds from `fusion.json`).",
            "",
            "| benchmark | split | this model | target | published (not comparable: see below) |",
            "|---|---|---|---|---|",
            (f"| UrbanSound8K, 10-class clip accuracy | train fold 1, validate fold 2 ({us['n']} clips) | "
             f"**{us['accuracy']:.3f}** (macro F1 {us['macro_f1']:.3f}) | >= 0.85 | SB-CNN 0.79, ESResNet 0.854 "
             "(10-fold CV, 9 training folds) |"),
            (f"| Surveillance Camera Fight, accuracy | ~20% of source videos ({fc['n']} clips, "
             f"{fc['per_class']['fight']['n']} fight) | **{fc['accuracy']:.3f}** (fight AP "
             f"{_f(fc['per_class']['fight']['ap'])}, clip AUC {_f(fi.get('clip_auc_max'))}) | >= 0.85 | ~0.72 |"),
            (f"| glass_break vs background, AP | ~20% of recordings ({gb['n']} clips) | "
             f"**{_f(gb['per_class']['glass_break']['ap'])}** (accuracy {gb['accuracy']:.3f}) | >= 0.95 | |"),
        ]
        if an:
            lines.append(
                f"| UCSD Ped2, frame-level AUC | learn normal from the 16 train clips, test clips 01-03 "
                f"({an['frames']} frames) | **{an['auc']:.3f}** | >= 0.97 | ConvAE 0.90, FFP 0.954, MNAD 0.970 "
                "(all 12 test clips) |")
        lines += [
            "",
            ("Fight accuracy is at the stored threshold (a false-alarm rate of "
             f"{r.get('far_video', 0.2):g} of validation windows with video and no fight); the best accuracy any "
             f"single threshold reaches on these 50 clips is {_f(fi.get('clip_accuracy_max_oracle'))} "
             "(chosen on the same clips, so optimistic)."),
        ]
        if an:
            lines.append(
                f"Anomaly: at the calibrated threshold (false-alarm rate {an['far_target']:g} of normal training "
                f"windows) {an['alert_rate_normal']} of normal and {an['alert_rate_anomalous']} of anomalous "
                "test frames alert.")
        lines.append("")
    lines += [
        ("From the training run's own evaluation (window scores averaged per clip): UrbanSound8K fold-2 "
         f"accuracy {u['clip_accuracy']:.3f} (max over windows: {u.get('clip_accuracy_max', float('nan')):.3f}; "
         f"with an unrelated video attached, {u.get('clip_accuracy_with_video_clips', '?')} clips: "
         f"{u.get('clip_accuracy_with_video', float('nan')):.3f}); glass_break clip AUC "
         f"{_f(g.get('clip_auc_max'))}, AP {_f(g.get('clip_ap_max'))}; fight clip AUC {_f(fi.get('clip_auc_max'))} "
         f"(audio masked: {_f(fi.get('clip_auc_max_audio_masked'))})."),
        "",
        ("Not comparable to the published anchors: UrbanSound8K anchors use 10-fold CV on all 10 folds (we "
         "train on fold 1 only, 873 clips); the fight and glass_break validation sets are tens of clips from a "
         "handful of sources, so their numbers move by several points between seeds; UCSD Ped2 anchors use all "
         "12 test clips (we validate on 3)."),
        "",
        "## Classes and thresholds",
        "",
        (f"Per class, the lowest threshold at which at most {r.get('far', 0.02):g} (fight: "
         f"{r.get('far_video', 0.2):g}) of the validation negative windows that could carry the class score above it (audio classes: every validation window with audio "
         "that is not of the class, from all datasets; fight: every validation window with video that is not a "
         "fight). Window-level metrics; clip labels apply to every window of a clip, so window recall is "
         "understated for short events."),
        "",
        "| class | threshold | window FAR | AP | precision | recall | max-F1 threshold (F1) | val positives / negatives |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for c in spec.classes:
        m = r["classes"][c]
        lines.append(f"| {c} | {m['threshold']:.3f} | {_f(m.get('far'))} | {_f(m['ap'])} | {_f(m['precision'])} | "
                     f"{_f(m['recall'])} | {m.get('f1_threshold', float('nan')):.3f} ({_f(m.get('f1_at_f1_threshold'))}) "
                     f"| {m['val_positives']} / {m.get('val_negatives', '?')} |")
    hist = ", ".join(f"{h['step']}: {h['val_map']:.3f}" for h in r.get("history", []))
    lines += [
        "",
        f"Mean window AP over classes: **{r['window_map']:.3f}**.",
        "",
        "## Training",
        "",
        f"- Command: `{r.get('command', '?')}`",
        (f"- Wall time: **{r['wall_seconds'] / 60:.1f} min** in total (decode/cache {r['decode_seconds']:.0f} s, "
         f"training {r['train_seconds'] / 60:.1f} min, {r['steps']} steps"
         + (f" ({_steps_split(r)})" if cfg.get("audio_steps") else
            f" of {sum(r.get('batch_mix', {}).values())} windows")
         + f", kept step {r['kept_step']} ({r.get('select', 'final')})), on {r.get('machine', '?')}, seed "
         f"{cfg.get('seed', 0)}; resumable (`--resume`, checkpoints in .cache/train)."),
        "- Windows: 1 s, hop 0.5 s, decoded by `streamer.ingest.clip.clip_windows` (the live ingest code).",
        f"- Train windows: {r['train_windows']}; validation windows: {r['val_windows']}.",
        (f"- Batch mix: {r.get('batch_mix')}"
         + (f", each such step followed by {cfg['audio_steps']} audio-only step(s) of {cfg.get('audio_mix')} "
            "(no video, no paired video: ~3x cheaper, so the audio classes see far more windows in the budget)"
            if cfg.get("audio_steps") else "")
         + "; multi-label BCE; negatives (glass_break `background`, fight "
         "`no_fight`, UCSD Ped2 normal training footage) have all-zero targets."),
        ("- Augmentation: " + (f"two urbansound8k windows mixed at -5..5 dB with both labels as targets (p "
         f"{cfg.get('mix_p')}); " if cfg.get("mix_p") else "") + "audio mixed into a background (glass_break background or fight audio) at 0-20 dB SNR "
         f"(p {cfg.get('background_p')}), reverberation through a synthetic room response (RT60 0.15-0.9 s, p "
         f"{cfg.get('reverb_p')}), circular shift, gain -18..+6 dB, SpecAugment; video: one random crop per window "
         "(60-100%), flip, brightness/contrast, desaturation, blur, JPEG quality 15-60, time reversal; fight "
         f"windows get their audio masked (p {cfg.get('fight_audio_mask_p')}) or silenced (p "
         f"{cfg.get('fight_audio_silence_p')}), audio-only windows get a video without a fight (p "
         f"{cfg.get('pair_video_p')})."),
        (f"- AdamW (lr {cfg.get('lr')}, weight decay {cfg.get('weight_decay')}), 5% warm-up then cosine to 0 "
         f"over the time budget. Validation mAP during training (step: mAP): {hist}."),
    ]
    abl = r.get("ablations")
    if abl:
        lines += [
            "",
            "## Ablations behind this recipe",
            "",
            abl["note"],
            "",
            "| run | change from the 33-min recipe | steps | val mAP | US8K fold-2 acc (mean / max) | glass AP | fight clip AUC |",
            "|---|---|---|---|---|---|---|",
        ]
        for a in abl["runs"]:
            lines.append(f"| {a['name']} | {a['change']} | {a['steps']} | {a['val_map']:.3f} | {a['us8k_acc_mean']:.3f} / "
                         f"{a['us8k_acc_max']:.3f} | {a['glass_ap']:.3f} | {a['fight_auc_max']:.3f} |")
    lines += [
        "",
        "## Embedding",
        "",
        (f"`embedding` [B, {spec.embedding_dim}]: values {lay.get('fused')} are the learned fused embedding; "
         f"values {lay.get('spatial')} a {lay.get('grid')}x{lay.get('grid')} grid, cell-major, of "
         f"{lay.get('features')} (grey level and mean/max |frame-to-frame change| per cell, in [0, 1], zero when "
         "video is masked). The layout is recorded in the ONNX metadata (`streamer.embedding_layout`); the "
         "per-camera normality model (streamer/detect/normality.py) uses the grid."),
        "",
        "## Data and licenses",
        "",
        ("- UrbanSound8K folds 1-2 (Salamon, Jacoby, Bello, ACM MM 2014), **CC BY-NC 3.0**: non-commercial; "
         "attribute the Freesound authors. This model is trained on it, so treat the weights as "
         "non-commercial until retrained."),
        "- Surveillance Camera Fight dataset (Akti et al., IPTA 2019), **MIT**.",
        "- Glass break vs background (Edge Impulse exports from a public GitHub repo), **no license stated**.",
        ("- UCSD Anomaly Detection Ped2 (Mahadevan et al., CVPR 2010): normal training clips used as "
         "video negatives and to learn normality; cite when used."),
        "",
        "## Limits",
        "",
        (f"- Trained from scratch (no pretrained backbone) in {r['train_seconds'] / 60:.0f} minutes on 2 CPU cores, on ~870 "
         "UrbanSound8K clips, ~210 glass_break clips and ~140 fight clips from ~25 source videos."),
        "- Audio-only classes were never seen together with their own video.",
        ("- The anomaly grid sees changes of grey level and motion per cell of a fixed camera; it does not "
         "know what objects are, and a camera that moves (PTZ) needs a new normality model."),
    ]
    return "\n".join(lines) + "\n"
