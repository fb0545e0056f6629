"""``dfer check-data``: report every bad annotation line and every unreadable item of a dataset at once.

Checks each split file line (malformed line, unknown label, duplicate id) and each referenced item
(missing/empty frame folder, unreadable or corrupt image, corrupt/empty/undecodable video, too few frames),
then prints one report listing ``file[:line]: problem`` with the fix for each. Exit 1 if anything is bad,
0 with a one-line summary otherwise.
"""
from __future__ import annotations

import os
import sys
from dataclasses import dataclass, field
from pathlib import Path

from tqdm import tqdm

from dfer.cli import add_params_args, command_parser, stage_params
from dfer.data import video
from dfer.data.annotations import FOLDED_DATASETS, Sample, load_dataset_entry
from dfer.data.clips import list_frames, read_image, read_rgb
from dfer.data.errors import DataError

# Split files beyond train/test: FERPlus's PublicTest (the official validation set).
SPLITS = {"FERPlus": ("train", "val", "test")}


@dataclass
class Report:
    dataset: str
    problems: list[DataError] = field(default_factory=list)
    split_files: int = 0
    lines: int = 0      # samples parsed from split files
    items: int = 0      # distinct items checked

    @property
    def ok(self) -> bool:
        return not self.problems

    def summary(self) -> str:
        state = "ok" if self.ok else f"{len(self.problems)} problem(s)"
        return (f"{self.dataset}: {state} — {self.split_files} split file(s), {self.lines} samples, "
                f"{self.items} items checked")

    def render(self) -> str:
        lines = [f"{self.summary()}:"] if self.problems else [self.summary()]
        for p in self.problems:
            lines.append(f"  {p.path}: {p.message}")
            if p.fix:
                lines.append(f"      fix: {p.fix}")
        return "\n".join(lines)


def check_item(sample: Sample, min_frames: int = 1, quick: bool = False, backend: str = "auto") -> None:
    """Raise DataError if the item of ``sample`` cannot be read completely."""
    if sample.kind == "image":
        read_image(sample)
        return
    if sample.kind == "frames":
        files = list_frames(sample.path, sample.frame_order)
        for f in ([files[0], files[-1]] if quick else files):
            read_rgb(f)
        n = len(files)
    else:
        n = video.count_frames(sample.path, backend)
        if not quick:
            n = len(video.read_frames(sample.path, None, backend))  # every frame must decode
    if n < min_frames:
        raise DataError(sample.path, f"too few frames: {n} < {min_frames}",
                        "re-extract the clip, or remove it from the split file")


def check_dataset(dataset: str, entry: dict, splits: list[str], folds: list[int | None],
                  base: str | os.PathLike | None = None, frame_order: str = "natural", min_frames: int = 1,
                  quick: bool = False, backend: str = "auto", progress: bool = True, root_origin: str = "") -> Report:
    """Check one dataset; ``root_origin`` says where its root came from when a preset or an override set it."""
    report = Report(dataset)
    root = Path(entry["root"])
    root = root if root.is_absolute() or base is None else Path(base) / root
    if not root.is_dir():
        fix = f"set data.datasets.{dataset}.root in params.yaml to the dataset folder (or run `dfer synth` for the " \
              "synthetic benchmark)"
        if root_origin:
            fix = f"{root_origin}; {fix}"
        report.problems.append(DataError(root, f"dataset root of {dataset} not found", fix))
        return report
    items: dict[Path, Sample] = {}
    for fold in folds:
        for split in splits:
            report.split_files += 1
            try:
                samples = load_dataset_entry(dataset, {**entry, "root": str(root), "subset": None}, split, fold,
                                             frame_order=frame_order, problems=report.problems)
            except DataError as exc:  # the split file itself is missing: report it and go on
                report.problems.append(exc)
                continue
            report.lines += len(samples)
            for s in samples:
                items.setdefault(s.path if s.kind != "image" or s.row < 0 else Path(f"{s.path}#{s.row}"), s)
    report.items = len(items)
    for sample in tqdm(items.values(), desc=f"check {dataset}", unit="item", disable=not progress,
                       file=sys.stderr):
        try:
            check_item(sample, min_frames, quick, backend)
        except DataError as exc:
            report.problems.append(DataError(f"{exc.path} (listed at {sample.source})", exc.message, exc.fix))
    return report


def main(argv: list[str] | None = None) -> int:
    ap = command_parser("check-data", __doc__)
    ap.add_argument("dataset", nargs="?", help="dataset name as in params.yaml data.datasets (e.g. DFEW)")
    ap.add_argument("--all", action="store_true", help="check every dataset in params.yaml")
    ap.add_argument("--split", default="all", choices=["train", "val", "test", "all"],
                    help="which split files (all: train and test, and FERPlus's PublicTest as val)")
    ap.add_argument("--fold", default="all", help="fold K (DFEW, MAFW) or `all` (the entry's folds)")
    add_params_args(ap)
    ap.add_argument("--min-frames", type=int, default=None,
                    help="clips with fewer decodable frames are errors (default: data.min_frames or 1)")
    ap.add_argument("--quick", action="store_true",
                    help="read only the first and last frame of each folder and count video frames")
    ap.add_argument("--backend", default=None, choices=video.BACKENDS,
                    help="video decoder (default: data.video_backend or auto)")
    ap.add_argument("--no-progress", action="store_true")
    args = ap.parse_args(argv)
    if not args.all and not args.dataset:
        ap.error("give a DATASET or --all")

    cfg, base = stage_params(args)
    data = cfg["data"]
    names = list(data["datasets"]) if args.all else [args.dataset]
    unknown = [n for n in names if n not in data["datasets"]]
    if unknown:
        ap.error(f"{unknown[0]!r} is not in params.yaml data.datasets ({', '.join(data['datasets'])})")
    min_frames = args.min_frames if args.min_frames is not None else int(data["min_frames"])

    reports = []
    for name in names:
        entry = data["datasets"][name]
        splits = list(SPLITS.get(name, ("train", "test"))) if args.split == "all" else [args.split]
        if name in FOLDED_DATASETS:
            folds = list(entry["folds"] or [1, 2, 3, 4, 5]) if args.fold == "all" else [int(args.fold)]
        else:
            folds = [None]
        report = check_dataset(name, entry, splits, folds, base=base,
                               frame_order=data["frame_order"], min_frames=min_frames, quick=args.quick,
                               backend=args.backend or data["video_backend"], progress=not args.no_progress,
                               root_origin=cfg.explain(f"data.datasets.{name}.root"))
        reports.append(report)
        print(report.render(), flush=True)
    bad = sum(len(r.problems) for r in reports)
    if bad:
        print(f"check-data: {bad} problem(s) in {sum(not r.ok for r in reports)} of {len(reports)} dataset(s)",
              file=sys.stderr)
        return 1
    return 0
