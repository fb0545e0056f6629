"""Readers for the annotation files of every dataset, in every format we support.

``load_split`` turns one split file into ``Sample`` records whose labels are indices into
``labels.CLASSES[dataset]`` (the model order), whatever order the file uses:

=========  ==========  =====================================================================  ==============
dataset    format      split file (relative to the dataset root)                              label order
=========  ==========  =====================================================================  ==============
DFEW       s2d         EmoLabel_DataSplit/{train,test}(single-labeled)/{train,test}_set_K.csv  0-based official
DFEW       official    EmoLabel_DataSplit/{train,test}(single-labeled)/set_K.csv               1-based official
DFEW       mae_dfer    mae_dfer/dfew/org/split0K/{train,test}.csv (``/abs/path label``, no header) = S2D
MAFW       s2d         anno/single/no_caption/set_K/{train,test}.csv  (``video_name,labels``)  alphabetical
MAFW       official    anno/single/no_caption/set_K/{train,test}.txt  (``03747.mp4 anger``)    names
MAFW       mae_dfer    mae_dfer/mafw/single/split0K/{train,test}.csv                            MAE-DFER order
FERV39K    s2d         Annotation/{train,test}.csv  (``path,id``)                               alphabetical
FERV39K    official    4_setups/All_scenes/{train,test}_All.csv  (``Scene/Emo/clip Emotion``)   names
FERV39K    mae_dfer    mae_dfer/ferv39k/all_scenes/{train,test}.csv                             MAE-DFER order
AffectNet  official    Manually_Annotated_file_lists/{training,validation}.csv                 codes 0..7
RAF-DB     official    basic/EmoLabel/list_patition_label.txt  (``train_00001.jpg 5``)          1-based codes
FERPlus    official    FER2013{Train,Valid,Test}/label.csv + PNGs, or FERPlus/fer2013new.csv    majority vote
                       (votes) + fer2013/fer2013.csv (pixels)
AFEW       official    no list: {Train,Val}/<Emotion>/<clip>.avi (Val is the test split)         folder names
=========  ==========  =====================================================================  ==============

``mae_dfer`` files are the lists MAE-DFER's ``preprocess/*.py`` write to its ``saved/data/`` (same sub-paths):
set the dataset's ``splits:`` to that folder. Label orders and sources: docs/datasets.md. Bad lines raise a :class:`DataError` naming
``file:line``; with ``problems=[]`` they are collected instead (``dfer check-data`` reports all at once).
"""
from __future__ import annotations

import csv
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Iterator

import numpy as np

from dfer.data import labels
from dfer.data.errors import DataError

VIDEO_DATASETS = ("DFEW", "MAFW", "FERV39K", "AFEW")
IMAGE_DATASETS = ("AffectNet-7", "AffectNet-8", "RAF-DB", "FERPlus")
FOLDED_DATASETS = ("DFEW", "MAFW")
FORMATS = ("s2d", "official", "mae_dfer")
FRAME_ORDERS = ("natural", "lexicographic")

# Where frames / videos live when params.yaml does not say (the official releases' folders).
DEFAULT_FRAMES = {"DFEW": "Clip/clip_224x224_16f", "MAFW": "data/frames/frames_crop_align_224",
                  "FERV39K": "2_ClipsforFaceCrop"}
DEFAULT_VIDEOS = {"DFEW": "Clip/original", "MAFW": "data/clips", "AFEW": "."}   # AFEW: <root>/{Train,Val}/<Emotion>
VIDEO_EXTS = (".mp4", ".avi", ".mkv", ".mov", ".webm")
# Where the workflow's `dfer align` (rules/align.smk) writes the aligned frames of a dataset given as raw videos.
ALIGNED_FRAMES = "results/align/{dataset}"

SPLIT_FILE_FIX = "check `root`, `format` and `folds` of this dataset in params.yaml (data.datasets)"


@dataclass(frozen=True)
class Sample:
    id: str            # clip/image id as in the annotation file ("02522", "Crime/Angry/0063", "train_00001")
    label: int         # index into labels.CLASSES[dataset] (model order)
    path: Path         # frame folder, video file or image file (FERPlus: the fer2013.csv pixel table)
    kind: str          # "frames" | "video" | "image"
    dataset: str       # "DFEW", "MAFW", "FERV39K", "AffectNet-7", "AffectNet-8", "RAF-DB", "FERPlus"
    source: str        # "<annotation file>:<line number>" for error messages
    frame_order: str = "natural"   # frame folders: natural | lexicographic sort of the frame files
    row: int = -1                  # FERPlus: data row of the image in fer2013.csv


def cache_name(sample_id: str) -> str:
    """File stem of a clip/image in per-item caches (feature cache, ground truth): ``/`` -> ``__``."""
    return sample_id.replace("/", "__")


# ------------------------------------------------------------------------------------ small helpers
class _Collector:
    """Raise on the first problem, or collect them all when a list is given (check-data)."""

    def __init__(self, problems: list | None):
        self.problems = problems

    def __call__(self, error: DataError) -> None:
        if self.problems is None:
            raise error
        self.problems.append(error)


def _lines(path: Path) -> Iterator[tuple[int, str]]:
    """(1-based line number, stripped line) for the non-blank lines of a text file."""
    if not path.is_file():
        raise DataError(path, "split/annotation file not found", SPLIT_FILE_FIX)
    with open(path, newline="", encoding="utf-8", errors="replace") as fh:
        for no, line in enumerate(fh, 1):
            line = line.strip().lstrip("\ufeff")
            if line:
                yield no, line


def _csv_rows(path: Path, delimiter: str = ",") -> Iterator[tuple[int, list[str]]]:
    for no, line in _lines(path):
        yield no, [f.strip() for f in next(csv.reader([line], delimiter=delimiter))]


def _space_rows(path: Path) -> Iterator[tuple[int, list[str]]]:
    """``<path possibly with spaces> <label>``: split on the last run of whitespace."""
    for no, line in _lines(path):
        yield no, line.rsplit(None, 1)


def _is_int(text: str) -> bool:
    return bool(re.fullmatch(r"[+-]?\d+", text.strip()))


def _strip_ext(name: str) -> str:
    base, ext = os.path.splitext(name)
    return base if ext.lower() in VIDEO_EXTS else name


def _resolve(root: Path, sub: str | os.PathLike) -> Path:
    return Path(sub) if os.path.isabs(sub) else root / sub


def _fold_arg(dataset: str, fold) -> int | None:
    if dataset not in FOLDED_DATASETS:
        return None
    if fold is None:
        raise ValueError(f"{dataset} has five folds: pass fold=1..5")
    fold = int(fold)
    if not 1 <= fold <= 5:
        raise ValueError(f"{dataset} fold must be 1..5, got {fold}")
    return fold


# ------------------------------------------------------------------------------- clip item layout
class _ClipLayout:
    """Maps a clip id to its frame folder or video file under the dataset root."""

    def __init__(self, dataset: str, root: Path, frames, videos):
        self.dataset = dataset
        self.root = root
        if frames:
            self.kind, self.base = "frames", _resolve(root, frames)
        elif videos:
            self.kind, self.base = "video", _resolve(root, videos)
        else:
            self.kind, self.base = "frames", root / DEFAULT_FRAMES[dataset]

    def item(self, clip_id: str) -> tuple[Path, str]:
        if self.kind == "frames":
            return self.base / clip_id, "frames"
        for ext in VIDEO_EXTS:
            p = self.base / f"{clip_id}{ext}"
            if p.exists():
                return p, "video"
        return self.base / f"{clip_id}.mp4", "video"

    def item_from_abs(self, listed: str, clip_id: str) -> tuple[Path, str]:
        """MAE-DFER lists absolute paths of the authors' machine: use them when they exist, else rebase."""
        p = _resolve(self.root, listed)
        if p.is_dir():
            return p, "frames"
        if p.is_file():
            return p, "video"
        return self.item(clip_id)


def _clip_id(dataset: str, listed: str) -> str:
    parts = [p for p in listed.replace("\\", "/").split("/") if p]
    if dataset == "FERV39K":
        if "2_ClipsforFaceCrop" in parts:
            parts = parts[parts.index("2_ClipsforFaceCrop") + 1:]
        return "/".join(parts[-3:])
    clip = _strip_ext(parts[-1]) if parts else listed
    return clip.zfill(5) if dataset == "DFEW" and clip.isdigit() else clip


# ------------------------------------------------------------------------------- video datasets
# Where each format keeps its split files: the folder (``splits`` in params.yaml; this default under the
# dataset root when null) and the file inside it. MAE-DFER writes its lists to its own repository's
# ``saved/data/`` (sunlicai/MAE-DFER ``preprocess/{dfew,mafw,ferv39k}.py``): point ``splits`` at that folder,
# or copy it to <root>/mae_dfer.
SPLIT_FOLDERS = {"s2d": {"DFEW": "EmoLabel_DataSplit", "MAFW": "anno", "FERV39K": "Annotation"},
                 "official": {"DFEW": "EmoLabel_DataSplit", "MAFW": "anno", "FERV39K": "4_setups"},
                 "mae_dfer": {"DFEW": "mae_dfer", "MAFW": "mae_dfer", "FERV39K": "mae_dfer"}}
SPLIT_FILES = {
    "s2d": {"DFEW": "{split}(single-labeled)/{split}_set_{fold}.csv",
            "MAFW": "single/no_caption/set_{fold}/{split}.csv", "FERV39K": "{split}.csv"},
    "official": {"DFEW": "{split}(single-labeled)/set_{fold}.csv", "MAFW": "single/no_caption/set_{fold}/{split}.txt",
                 "FERV39K": "All_scenes/{split}_All.csv"},
    "mae_dfer": {"DFEW": "dfew/org/split0{fold}/{split}.csv", "MAFW": "mafw/single/split0{fold}/{split}.csv",
                 "FERV39K": "ferv39k/all_scenes/{split}.csv"},
}


def _split_file(dataset: str, root: Path, split: str, fold: int | None, fmt: str, splits=None) -> Path:
    folder = _resolve(root, splits) if splits else root / SPLIT_FOLDERS[fmt][dataset]
    return folder / SPLIT_FILES[fmt][dataset].format(split=split, fold=fold)


def _label_reader(dataset: str, fmt: str):
    """parse(text) -> model-order index; raises KeyError/ValueError with a readable message."""
    if fmt == "official" and dataset != "DFEW":
        # Official MAFW / FERV39K split files name the emotion ("anger", "Happy").
        def parse_name(text: str) -> int:
            try:
                return labels.index_of(dataset, text)
            except KeyError:
                raise KeyError(f"unknown emotion {text!r} (expected one of {labels.CLASSES[dataset]})") from None
        return parse_name

    n = len(labels.CLASSES[dataset])
    # Integer codes: S2D = model order; official DFEW = model order + 1; MAE-DFER = its own order.
    mapping = labels.order_map(labels.MAE_DFER_CLASSES[dataset], dataset) if fmt == "mae_dfer" \
        else {i: i for i in range(n)}
    offset = 1 if fmt == "official" else 0

    def parse(text: str) -> int:
        if not _is_int(text):
            raise ValueError(f"label {text!r} is not an integer")
        code = int(text) - offset
        if code not in mapping:
            raise KeyError(f"unknown label {text!r} (expected {offset}..{n - 1 + offset} for {dataset} {fmt} files)")
        return mapping[code]
    return parse


def _load_clips(dataset: str, root: Path, split: str, fold: int | None, fmt: str, frames, videos,
                frame_order: str, report, splits=None) -> list[Sample]:
    path = _split_file(dataset, root, split, fold, fmt, splits)
    layout = _ClipLayout(dataset, root, frames, videos)
    parse_label = _label_reader(dataset, fmt)
    rows = _space_rows(path) if (fmt == "mae_dfer" or (fmt == "official" and dataset != "DFEW")) \
        else _csv_rows(path)
    has_header = fmt == "s2d" or (fmt == "official" and dataset == "DFEW")
    samples: list[Sample] = []
    seen: dict[str, str] = {}
    first = True
    for no, fields in rows:
        where = f"{path}:{no}"
        is_first, first = first, False
        if is_first and has_header and len(fields) == 2 and not _is_int(fields[1]):
            continue  # header row (`video_name,label`, `path,id`, ...)
        if len(fields) != 2 or not fields[0] or not fields[1]:
            report(DataError(where, f"malformed line {','.join(fields)!r}: expected 2 fields "
                             "(clip, label)", "fix or delete this line"))
            continue
        listed, label_text = fields
        clip_id = _clip_id(dataset, listed)
        try:
            label = parse_label(label_text)
        except (KeyError, ValueError) as exc:
            report(DataError(where, f"clip {clip_id}: {exc.args[0]}", "correct the label or check `format` in "
                             "params.yaml"))
            continue
        if clip_id in seen:
            report(DataError(where, f"duplicate id {clip_id!r} (first at {seen[clip_id]})",
                             "delete the duplicate line"))
            continue
        seen[clip_id] = where
        if fmt == "mae_dfer":
            item, kind = layout.item_from_abs(listed, clip_id)
        else:
            item, kind = layout.item(clip_id)
        samples.append(Sample(clip_id, label, item, kind, dataset, where, frame_order))
    return samples


AFEW_FOLDERS = {"train": "Train", "test": "Val"}


def _load_afew(root: Path, split: str, frames, frame_order: str, report) -> list[Sample]:
    """AFEW 7.0 (EmotiW): ``<root>/{Train,Val}/<Emotion>/<clip>.avi``, the label is the folder name, the clip id
    ``<Emotion>/<clip>`` (AFEW's clip names are unique across Train and Val). With ``frames`` (faces aligned by
    ``dfer align``, or your own RetinaFace crops in the same layout), ``<frames>/<Emotion>/<clip>/`` frame folders
    are read instead of the videos."""
    split_dir = root / AFEW_FOLDERS[split]
    if not split_dir.is_dir():
        report(DataError(split_dir, f"AFEW {split} folder not found", "expected <root>/Train/<Emotion>/<clip>.avi "
                         "and <root>/Val/...; check data.datasets.AFEW.root"))
        return []
    classes = labels.CLASSES["AFEW"]
    frame_root = _resolve(root, frames) if frames else None
    samples: list[Sample] = []
    for folder in sorted(p for p in split_dir.iterdir() if p.is_dir()):
        if folder.name not in classes:
            report(DataError(folder, f"unknown emotion folder {folder.name!r}",
                             f"AFEW's folders are {', '.join(classes)}; rename or remove it"))
            continue
        clips = sorted(p for p in folder.iterdir() if p.suffix.lower() in VIDEO_EXTS)
        if not clips:
            report(DataError(folder, "no video files in this emotion folder", f"expected {', '.join(VIDEO_EXTS)}"))
        for clip in clips:
            clip_id = f"{folder.name}/{clip.stem}"
            if frame_root is not None:
                samples.append(Sample(clip_id, classes.index(folder.name), frame_root / folder.name / clip.stem,
                                      "frames", "AFEW", str(clip), frame_order))
            else:
                samples.append(Sample(clip_id, classes.index(folder.name), clip, "video", "AFEW", str(clip)))
    return samples


# ------------------------------------------------------------------------------- image datasets
AFFECTNET_COLUMNS = ["subDirectory_filePath", "face_x", "face_y", "face_width", "face_height",
                     "facial_landmarks", "expression", "valence", "arousal"]
AFFECTNET_DROPPED = {8, 9, 10}  # None, Uncertain, Non-Face


def _load_affectnet(dataset: str, root: Path, split: str, report) -> list[Sample]:
    name = {"train": "training", "test": "validation", "val": "validation"}[split]
    path = root / "Manually_Annotated_file_lists" / f"{name}.csv"
    n_classes = len(labels.CLASSES[dataset])
    samples, seen = [], {}
    col_path, col_expr = 0, 6
    for no, fields in _csv_rows(path):
        where = f"{path}:{no}"
        if fields and fields[0] == AFFECTNET_COLUMNS[0]:  # header row
            col_expr = fields.index("expression") if "expression" in fields else col_expr
            continue
        if len(fields) <= col_expr or not fields[col_path]:
            report(DataError(where, f"malformed line: {len(fields)} fields, expected {len(AFFECTNET_COLUMNS)} "
                             f"({','.join(AFFECTNET_COLUMNS)})", "fix or delete this line"))
            continue
        expr = fields[col_expr]
        if not _is_int(expr) or not 0 <= int(expr) <= 10:
            report(DataError(where, f"image {fields[col_path]}: unknown expression code {expr!r} (AffectNet codes "
                             "are 0..10)", "correct the expression column"))
            continue
        code = int(expr)
        if code in AFFECTNET_DROPPED or code >= n_classes:  # AffectNet-7 also drops 7 (Contempt)
            continue
        rel = fields[col_path].replace("\\", "/")
        if rel in seen:
            report(DataError(where, f"duplicate image {rel!r} (first at {seen[rel]})", "delete the duplicate"))
            continue
        seen[rel] = where
        samples.append(Sample(rel, code, root / "Manually_Annotated_Images" / rel, "image", dataset, where))
    return samples


def _load_rafdb(root: Path, split: str, report) -> list[Sample]:
    path = root / "basic" / "EmoLabel" / "list_patition_label.txt"
    samples, seen = [], {}
    prefix = {"train": "train_", "test": "test_"}[split]
    for no, line in _lines(path):
        where = f"{path}:{no}"
        fields = line.split()
        if len(fields) != 2:
            report(DataError(where, f"malformed line {line!r}: expected `<name>.jpg <label 1..7>`",
                             "fix or delete this line"))
            continue
        name, code = fields
        if not name.startswith(("train_", "test_")):
            report(DataError(where, f"image name {name!r} starts with neither train_ nor test_",
                             "fix the name"))
            continue
        if not name.startswith(prefix):
            continue
        if not _is_int(code) or not 1 <= int(code) <= 7:
            report(DataError(where, f"image {name}: unknown label {code!r} (RAF-DB basic labels are 1..7)",
                             "correct the label"))
            continue
        stem = os.path.splitext(name)[0]
        if stem in seen:
            report(DataError(where, f"duplicate id {stem!r} (first at {seen[stem]})", "delete the duplicate"))
            continue
        seen[stem] = where
        image = root / "basic" / "Image" / "aligned" / f"{stem}_aligned.jpg"
        samples.append(Sample(stem, int(code) - 1, image, "image", "RAF-DB", where))
    return samples


FERPLUS_VOTES = ["neutral", "happiness", "surprise", "sadness", "anger", "disgust", "fear", "contempt",
                 "unknown", "NF"]
FERPLUS_USAGE = {"train": "Training", "val": "PublicTest", "test": "PrivateTest"}
FERPLUS_FOLDERS = {"train": "FER2013Train", "val": "FER2013Valid", "test": "FER2013Test"}


def ferplus_label(votes: list[int]) -> int | None:
    """The official FERPlus "majority" label (microsoft/FERPlus ``src/ferplus.py``, ``_process_data``): votes of
    one annotator are dropped as outliers; the top class is kept only with more than half of the remaining
    votes, and only if it is an emotion (not unknown / not-a-face); otherwise the image is dropped (None)."""
    kept = [v if v > 1 else 0 for v in votes]
    total = sum(kept)
    if total <= 0:
        return None
    winner = int(np.argmax(kept))
    if kept[winner] <= 0.5 * total or winner >= len(FERPLUS_VOTES) - 2:
        return None
    return winner


def _ferplus_votes(fields: list[str], where: str, image: str, report) -> list[int] | None:
    """The 10 vote counts of a FERPlus line, or None (reported) when they are not integers."""
    if not all(_is_int(v) for v in fields):
        report(DataError(where, f"image {image}: vote counts {fields} are not all integers", "correct the votes"))
        return None
    return [int(v) for v in fields]


def _load_ferplus(root: Path, split: str, report) -> list[Sample]:
    """FERPlus in either official layout: the ``FER2013{Train,Valid,Test}/`` folders of PNG images with their
    ``label.csv`` (``generate_training_data.py``'s output), or ``fer2013new.csv`` (votes) next to the Kaggle
    ``fer2013/fer2013.csv`` (pixels)."""
    if (root / FERPLUS_FOLDERS["train"] / "label.csv").is_file():
        return _load_ferplus_folders(root, split, report)
    return _load_ferplus_csv(root, split, report)


def _load_ferplus_folders(root: Path, split: str, report) -> list[Sample]:
    folder = root / FERPLUS_FOLDERS[split]
    path = folder / "label.csv"
    samples, seen = [], {}
    for no, fields in _csv_rows(path):
        where = f"{path}:{no}"
        # fer0028638.png,"(0, 0, 48, 48)",4,0,0,0,1,0,0,4,1,0 (older releases have no face box column)
        votes_at = len(fields) - len(FERPLUS_VOTES)
        if votes_at not in (1, 2) or not fields[0]:
            report(DataError(where, f"malformed line: {len(fields)} fields, expected image name, [face box,] and "
                             f"{len(FERPLUS_VOTES)} vote counts ({','.join(FERPLUS_VOTES)})", "fix or delete this line"))
            continue
        stem = os.path.splitext(fields[0])[0]
        votes = _ferplus_votes(fields[votes_at:], where, fields[0], report)
        if votes is None:
            continue
        label = ferplus_label(votes)
        if label is None:
            continue  # no majority, unknown or not a face: dropped, as the official reader does
        if stem in seen:
            report(DataError(where, f"duplicate image {stem!r} (first at {seen[stem]})", "delete the duplicate"))
            continue
        seen[stem] = where
        samples.append(Sample(stem, label, folder / fields[0], "image", "FERPlus", where))
    return samples


def _load_ferplus_csv(root: Path, split: str, report) -> list[Sample]:
    votes_path = root / "FERPlus" / "fer2013new.csv"
    pixels_path = root / "fer2013" / "fer2013.csv"
    if not pixels_path.is_file():
        raise DataError(pixels_path, "FER2013 pixel table not found (FERPlus images live in it)",
                        "put the Kaggle fer2013.csv at <root>/fer2013/fer2013.csv, or the official FER2013Train/"
                        "FER2013Valid/FER2013Test folders (with label.csv) in <root>")
    usage = FERPLUS_USAGE[split]
    samples, seen = [], {}
    row = -1
    for no, fields in _csv_rows(votes_path):
        where = f"{votes_path}:{no}"
        if no == 1 and fields and fields[0] == "Usage":
            continue
        row += 1  # fer2013new.csv rows align 1:1 with fer2013.csv rows (header excluded)
        if len(fields) != 2 + len(FERPLUS_VOTES):
            report(DataError(where, f"malformed line: {len(fields)} fields, expected 12 "
                             "(Usage,Image name,neutral..contempt,unknown,NF)", "fix or delete this line"))
            continue
        if fields[0] not in FERPLUS_USAGE.values():
            report(DataError(where, f"image {fields[1] or f'(row {row})'}: unknown Usage {fields[0]!r} "
                             "(Training|PublicTest|PrivateTest)", "correct the Usage column"))
            continue
        if fields[0] != usage or not fields[1]:
            continue  # other split, or no face in this FER2013 row (empty Image name)
        votes = _ferplus_votes(fields[2:], where, fields[1], report)
        if votes is None:
            continue
        label = ferplus_label(votes)
        if label is None:
            continue  # no majority, unknown or not a face: dropped, as the official reader does
        stem = os.path.splitext(fields[1])[0]
        if stem in seen:
            report(DataError(where, f"duplicate image {stem!r} (first at {seen[stem]})", "delete the duplicate"))
            continue
        seen[stem] = where
        samples.append(Sample(stem, label, pixels_path, "image", "FERPlus", where, row=row))
    return samples


# ------------------------------------------------------------------------------------- subsets
def parse_subset(subset) -> tuple[str, float, int] | None:
    """``0.043`` / ``500`` / ``{fraction: 0.043, seed: 0}`` / ``{count: 500}`` -> (kind, value, seed)."""
    if subset is None:
        return None
    if isinstance(subset, dict):
        seed = int(subset.get("seed", 0))
        if subset.get("fraction") is not None:
            return "fraction", float(subset["fraction"]), seed
        if subset.get("count") is not None:
            return "count", int(subset["count"]), seed
        raise ValueError(f"subset {subset!r}: give `fraction` or `count` (and optionally `seed`)")
    if isinstance(subset, float) and 0 < subset <= 1:
        return "fraction", float(subset), 0
    if isinstance(subset, int) and subset > 0:
        return "count", int(subset), 0
    raise ValueError(f"subset {subset!r}: use a fraction in (0,1], a positive count, or a dict")


def stratified_subset(samples: list[Sample], subset) -> list[Sample]:
    """Seeded, class-stratified subset (AffectNet-7-Small); keeps file order and >=1 sample per class."""
    spec = parse_subset(subset)
    if spec is None:
        return samples
    kind, value, seed = spec
    by_class: dict[int, list[int]] = {}
    for i, s in enumerate(samples):
        by_class.setdefault(s.label, []).append(i)
    classes = sorted(by_class)
    sizes = np.array([len(by_class[c]) for c in classes], dtype=float)
    if kind == "fraction":
        take = np.maximum(1, np.round(sizes * value)).astype(int)
    else:
        total = min(int(value), len(samples))
        exact = sizes * total / sizes.sum()
        take = np.floor(exact).astype(int)
        for j in np.argsort(-(exact - take))[: total - take.sum()]:  # largest remainders
            take[j] += 1
        take = np.maximum(take, 1)
    take = np.minimum(take, sizes.astype(int))
    rng = np.random.default_rng(seed)
    keep: list[int] = []
    for c, k in zip(classes, take):
        keep += rng.choice(by_class[c], size=int(k), replace=False).tolist()
    return [samples[i] for i in sorted(keep)]


# ---------------------------------------------------------------------------------------- public
def load_split(dataset: str, root: str | os.PathLike, split: str, fold: int | None = None,
               format: str = "s2d", frames: str | None = None, videos: str | None = None,
               frame_order: str = "natural", subset=None, problems: list | None = None, splits: str | None = None,
               **_ignored) -> list[Sample]:
    """Samples of one split, labels in ``labels.CLASSES[dataset]`` order.

    ``split``: ``train`` | ``test`` (``val`` for FERPlus PublicTest / AffectNet validation). ``fold``: 1..5
    for DFEW and MAFW. ``frames`` / ``videos``: folders (relative to ``root`` or absolute) of frame folders
    or video files; frames win when both are given, the official frame folder is the default. ``splits``:
    the folder of the split files (default: the format's own, see ``SPLIT_FOLDERS``).
    ``subset`` (train split only): seeded class-stratified fraction/count. ``problems``: collect bad
    lines into this list instead of raising on the first one. Other keyword arguments (the rest of a
    params.yaml dataset entry, e.g. ``folds``) are ignored.
    """
    labels.classes(dataset)  # KeyError naming the known datasets
    if format not in FORMATS:
        raise ValueError(f"unknown annotation format {format!r}; use one of {FORMATS}")
    if frame_order not in FRAME_ORDERS:
        raise ValueError(f"unknown frame_order {frame_order!r}; use one of {FRAME_ORDERS}")
    if split not in ("train", "test", "val"):
        raise ValueError(f"unknown split {split!r}; use train or test")
    root = Path(root)
    report = _Collector(problems)
    if dataset == "AFEW":
        if split == "val":
            raise ValueError("AFEW: its Val folder is the test split (the Test labels are withheld); use test")
        samples = _load_afew(root, split, frames, frame_order, report)
    elif dataset in VIDEO_DATASETS:
        if split == "val":
            raise ValueError(f"{dataset} has no validation split (the official code validates on test)")
        fold = _fold_arg(dataset, fold)
        samples = _load_clips(dataset, root, split, fold, format, frames, videos, frame_order, report, splits)
    elif dataset.startswith("AffectNet"):
        samples = _load_affectnet(dataset, root, split, report)
    elif dataset == "RAF-DB":
        if split == "val":
            raise ValueError("RAF-DB has no validation split")
        samples = _load_rafdb(root, split, report)
    else:
        samples = _load_ferplus(root, split, report)
    if subset is not None and split == "train":
        samples = stratified_subset(samples, subset)
    return samples


def needs_alignment(dataset: str, entry: dict) -> bool:
    """A dataset given as raw videos without a frames folder is aligned by the workflow (MAFW, AFEW)."""
    return not entry["frames"] and bool(entry["videos"] or DEFAULT_VIDEOS.get(dataset))


def with_aligned_frames(dataset: str, entry: dict) -> dict:
    """A ``data.datasets`` entry whose items are read as the models read them: the entry itself, or for a
    dataset the workflow aligns, the entry with ``frames`` set to the aligned frames (``ALIGNED_FRAMES``), so
    that landmark features and training see the same face crops, not the raw videos."""
    if not needs_alignment(dataset, entry):
        return entry
    return {**entry, "frames": ALIGNED_FRAMES.format(dataset=dataset)}


def load_dataset_entry(dataset: str, entry: dict, split: str, fold: int | None = None,
                       frame_order: str | None = None, base: str | os.PathLike | None = None,
                       problems: list | None = None) -> list[Sample]:
    """``load_split`` from a params.yaml ``data.datasets[<dataset>]`` entry. A relative ``root`` is taken from
    ``base`` (the project root); relative ``frames``/``videos`` from the dataset root, or from ``base`` when
    they exist only there (aligned frames written by ``dfer align`` under results/)."""
    kw = {k: v for k, v in entry.items() if k in ("format", "frames", "videos", "frame_order", "subset", "splits")}
    if frame_order and "frame_order" not in kw:
        kw["frame_order"] = frame_order
    root = Path(entry["root"])
    if base is not None:
        if not root.is_absolute():
            root = Path(base) / root
        # e.g. aligned frames under results/: relative to the project root, wherever the dataset lives
        for key in ("frames", "videos"):
            sub = kw.get(key)
            if sub and not os.path.isabs(sub) and not (root / sub).exists() and (Path(base) / sub).exists():
                kw[key] = str(Path(base) / sub)
    return load_split(dataset, root, split, fold, problems=problems, **kw)


def label_files(dataset: str, entry: dict, fold: int | None = None, base: str | os.PathLike | None = None
                ) -> list[Path]:
    """The files a dataset's labels and splits are read from (those that exist), for a run's ``fold`` (every
    split of it): the split files of a video dataset, the annotation lists of an image dataset. None for AFEW
    (its labels are folder names)."""
    root = Path(entry["root"])
    if base is not None and not root.is_absolute():
        root = Path(base) / root
    fmt, splits = entry.get("format", "s2d"), entry.get("splits")
    if dataset == "AFEW":
        paths = []
    elif dataset in VIDEO_DATASETS:
        fold = (fold or 1) if dataset in FOLDED_DATASETS else None
        paths = [_split_file(dataset, root, split, fold, fmt, splits) for split in ("train", "test")]
    elif dataset.startswith("AffectNet"):
        paths = [root / "Manually_Annotated_file_lists" / f"{n}.csv" for n in ("training", "validation")]
    elif dataset == "RAF-DB":
        paths = [root / "basic" / "EmoLabel" / "list_patition_label.txt"]
    else:  # FERPlus: the folders' label.csv, else the votes table
        paths = [root / f / "label.csv" for f in FERPLUS_FOLDERS.values()] + [root / "FERPlus" / "fer2013new.csv"]
    return [p for p in paths if p.is_file()]


def labels_of(samples: Iterable[Sample]) -> list[int]:
    return [s.label for s in samples]
