"""Write the validation split of each labelled dataset as its own classification folder.

`python -m streamer.train.splits --data ../shared/data --out /tmp/val` makes `<out>/<dataset>/labels.csv`
(only the validation rows, exactly the split training uses: streamer.train.data.read_clips) with
symlinks to the dataset's media folders, so `streamer eval classify <out>/<dataset>` measures a model on
data it was not trained on.
"""

from __future__ import annotations

import argparse
import csv
import sys
from pathlib import Path

from streamer.train.data import LABELLED, read_clips


def write_split(data_dir: Path, dataset: str, out_dir: Path, split: str = "val", seed: int = 0) -> Path:
    src = data_dir / dataset
    dst = out_dir / dataset
    dst.mkdir(parents=True, exist_ok=True)
    with (src / "labels.csv").open(newline="") as f:
        rows = list(csv.DictReader(f))
    keep = {c.file for c in read_clips(data_dir, dataset, seed) if c.split == split}
    rows = [r for r in rows if r["file"] in keep]
    for top in sorted({Path(r["file"]).parts[0] for r in rows}):
        link = dst / top
        if not link.exists():
            link.symlink_to((src / top).resolve(), target_is_directory=True)
    with (dst / "labels.csv").open("w", newline="") as f:
        w = csv.DictWriter(f, list(rows[0]))
        w.writeheader()
        w.writerows(rows)
    return dst


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m streamer.train.splits", description=__doc__.split("\n\n")[0])
    p.add_argument("--data", type=Path, required=True)
    p.add_argument("--out", type=Path, required=True)
    p.add_argument("--split", default="val", choices=("train", "val"))
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args(argv)
    for d in LABELLED:
        print(write_split(args.data, d, args.out, args.split, args.seed))
    return 0


if __name__ == "__main__":
    sys.exit(main())
