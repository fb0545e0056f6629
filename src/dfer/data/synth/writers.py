"""One writer per dataset: renders the items and writes them in the real dataset's on-disk layout.

Every writer has the signature ``write_<dataset>(tmp_root, final_root, cfg, diff, seed, progress) -> summary``:
it writes into ``tmp_root`` (renamed to ``final_root`` by the caller once complete), uses ``final_root`` only
for the absolute paths of the MAE-DFER split files, and returns {"counts": {split: {class: n}}, "items": n}.
Each item draws from its own RNG (``item_rng(seed, dataset, index)``), so output is independent of
iteration order and byte-identical for the same seed and settings.
"""
from __future__ import annotations

import json
import zlib
from pathlib import Path

import cv2
import numpy as np

from dfer.data import labels
from dfer.data.synth import expressions as ex
from dfer.data.synth.clips import render_clip

FOLDS = 5


# ------------------------------------------------------------------------------------------ helpers
def item_rng(seed: int, dataset: str, index: int | str) -> np.random.Generator:
    key = index if isinstance(index, int) else zlib.crc32(str(index).encode())
    return np.random.default_rng([int(seed), zlib.crc32(dataset.encode()), int(key)])


def write_lines(path: Path, lines: list[str]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", encoding="utf-8", newline="\n") as fh:
        fh.write("".join(f"{line}\n" for line in lines))


def write_jpg(path: Path, rgb: np.ndarray, quality: int = 92) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    if not cv2.imwrite(str(path), cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_JPEG_QUALITY, int(quality)]):
        raise OSError(f"{path}: could not write JPEG")


def _r(v, nd=2):
    return None if v is None else np.round(np.asarray(v, dtype=np.float64), nd).tolist()


def write_clip_groundtruth(gt_dir: Path, item_id: str, r, annotated: str, extra: dict | None = None) -> None:
    rec = {"boxes": [_r(b) for b in r.boxes], "landmarks": [_r(lm) for lm in r.landmarks],
           "expression": r.meta["expression"], "dynamics": r.meta["dynamics"], "true_label": r.meta["expression"],
           "label": annotated, "label_noise": annotated != r.meta["expression"], "intensity": r.intensity,
           "apex_intensity": r.meta["apex_intensity"], "pose": r.meta["pose"],
           "neutral_stretch": r.meta["neutral_stretch"], "irrelevant_frames": r.meta["irrelevant"],
           "occluded": r.meta["occluded"], "speech": r.meta["speech"], **(extra or {})}
    _dump(gt_dir / f"{item_id.replace('/', '__')}.json", rec)


def write_image_groundtruth(gt_dir: Path, item_id: str, box, lm, true: str | None, annotated: str | None,
                            extra: dict | None = None) -> None:
    rec = {"box": _r(box), "landmarks": _r(lm), "expression": true, "true_label": true, "label": annotated,
           "label_noise": (annotated != true) if (annotated and true) else False, **(extra or {})}
    _dump(gt_dir / f"{item_id.replace('/', '__')}.json", rec)


def _dump(path: Path, rec: dict) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(rec, separators=(",", ":")), encoding="utf-8")


def annotated_labels(rng: np.random.Generator, prior: dict, emotions: list[str], total: int,
                     floor: int) -> list[str]:
    """Shuffled list of annotated (canonical) labels with counts following ``prior`` (only ``emotions``)."""
    counts = ex.class_counts({e: prior[e] for e in emotions}, total, floor)
    out = [e for e in emotions for _ in range(counts[e])]
    rng.shuffle(out)
    return out


def stratified_folds(rng: np.random.Generator, ann: list[str], k: int = FOLDS) -> list[int]:
    """Fold 1..k per item, class-stratified (each class spread evenly over the folds)."""
    folds = [0] * len(ann)
    offset = 0
    for e in sorted(set(ann)):
        idx = [i for i, a in enumerate(ann) if a == e]
        rng.shuffle(idx)
        for j, i in enumerate(idx):
            folds[i] = (offset + j) % k + 1
        offset += len(idx)
    return folds


def stratified_test(rng: np.random.Generator, ann: list[str], fraction: float) -> list[bool]:
    """True = test item; every class gets at least one test item (and one train item) when it has >= 2."""
    test = [False] * len(ann)
    for e in sorted(set(ann)):
        idx = [i for i, a in enumerate(ann) if a == e]
        rng.shuffle(idx)
        n = min(max(1, int(round(fraction * len(idx)))), max(len(idx) - 1, 1)) if len(idx) > 1 else 0
        for i in idx[:n]:
            test[i] = True
    return test


def _counts(names: list[str], classes: list[str]) -> dict[str, int]:
    return {c: sum(1 for n in names if n == labels.canonical(c)) for c in classes}


def _n(cfg: dict, key: str, scale: float, floor: int) -> int:
    return max(int(round(cfg[key] * scale)), floor)


def _plan_labels(ds: str, cfg: dict, seed: int, emotions: list[str], min_items: int, floor: int,
                 key: str = "clips") -> tuple[int, np.random.Generator, list[str]]:
    """Item count (``cfg[key]`` x scale, at least ``min_items``), the dataset's seeded plan RNG and its shuffled
    annotated labels (at least ``floor`` a class); the RNG then draws the rest of the plan in a fixed order."""
    n = _n(cfg, key, cfg["scale"], min_items)
    rng = item_rng(seed, ds, "plan")
    return n, rng, annotated_labels(rng, ex.PRIORS[ds], emotions, n, floor=floor)


def _plan_clip_labels(ds: str, cfg: dict, seed: int, per_class: int, floor: int):
    """:func:`_plan_labels` of a video dataset (at least ``per_class`` clips a class), with its class names and
    canonical emotions: ``(classes, emotions, n, rng, ann)``."""
    classes = labels.classes(ds)
    emotions = ex.dataset_emotions(ds)
    n, rng, ann = _plan_labels(ds, cfg, seed, emotions, per_class * len(classes), floor)
    return classes, emotions, n, rng, ann


def _quality(rng) -> int:
    return int(rng.integers(75, 96))


# ------------------------------------------------------------------------------------------ DFEW
def _plan_folded_clips(ds: str, cfg: dict, seed: int, id_range: int):
    """Clip count, annotated labels, 5-fold assignment and 5-digit ids (below the real dataset's id range)
    of a folded video dataset, all drawn from its seeded plan RNG in one fixed order."""
    classes, emotions, n, rng, ann = _plan_clip_labels(ds, cfg, seed, per_class=FOLDS, floor=FOLDS)
    folds = stratified_folds(rng, ann)
    ids = [f"{i:05d}" for i in sorted(rng.choice(np.arange(1, id_range), n, replace=False))]
    return classes, emotions, n, ann, folds, ids


def write_dfew(tmp: Path, final: Path, cfg: dict, diff: dict, seed: int, progress) -> dict:
    ds = "DFEW"
    classes, emotions, n, ann, folds, ids = _plan_folded_clips(ds, cfg, seed, id_range=16373)
    size = int(cfg["size"])

    def render(i, r_, true, T):
        return render_clip(r_, true, T, (size, size), "aligned", diff)

    def write(i, r_, r):
        q = _quality(r_)
        for k, img in enumerate(r.frames, 1):
            write_jpg(tmp / "Clip" / "clip_224x224_16f" / ids[i] / f"{k}.jpg", img, q)
        write_clip_groundtruth(tmp / "_groundtruth", ids[i], r, ann[i], {"fold": folds[i]})

    truth, n_frames = _render_clips(ds, seed, n, ann, emotions, cfg, progress, render, write)
    lab = [emotions.index(a) for a in ann]
    split_dir = tmp / "EmoLabel_DataSplit"
    counts = {}
    for k in range(1, FOLDS + 1):
        for split in ("train", "test"):
            rows = [i for i in range(n) if (folds[i] == k) == (split == "test")]
            sub = split_dir / f"{split}(single-labeled)"
            write_lines(sub / f"{split}_set_{k}.csv", ["video_name,label"] + [f"{ids[i]},{lab[i]}" for i in rows])
            write_lines(sub / f"set_{k}.csv", ["video_name,label"] + [f"{ids[i]},{lab[i] + 1}" for i in rows])
            mae = labels.MAE_DFER_CLASSES[ds]
            write_lines(tmp / "mae_dfer/dfew/org" / f"split0{k}" / f"{split}.csv",
                        [f"{(final / 'Clip' / 'clip_224x224_16f' / ids[i]).as_posix()} "
                         f"{mae.index(classes[lab[i]])}" for i in rows])
            counts[f"fold{k}/{split}"] = _counts([ann[i] for i in rows], classes)
    return _clip_summary(n, ann, truth, n_frames, counts, classes)


# ------------------------------------------------------------------------------------------ MAFW
def _write_mp4(path: Path, frames: list[np.ndarray], fps: int) -> None:
    import av

    path.parent.mkdir(parents=True, exist_ok=True)
    h, w = frames[0].shape[:2]
    with av.open(str(path), mode="w") as container:
        stream = container.add_stream("libx264", rate=fps)
        stream.width, stream.height, stream.pix_fmt = w, h, "yuv420p"
        stream.thread_count = 1  # deterministic bitstream
        stream.options = {"crf": "20", "preset": "ultrafast", "tune": "zerolatency"}
        for img in frames:
            for packet in stream.encode(av.VideoFrame.from_ndarray(img, format="rgb24")):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)


def write_mafw(tmp: Path, final: Path, cfg: dict, diff: dict, seed: int, progress) -> dict:
    ds = "MAFW"
    classes, emotions, n, ann, folds, ids = _plan_folded_clips(ds, cfg, seed, id_range=10046)
    size = (int(cfg["height"]), int(cfg["width"]))

    def render(i, r_, true, T):
        return render_clip(r_, true, T, size, "wild", diff, face_width=tuple(cfg["face_width"]))

    def write(i, r_, r):
        _write_mp4(tmp / "data" / "clips" / f"{ids[i]}.mp4", r.frames, int(cfg["fps"]))
        write_clip_groundtruth(tmp / "_groundtruth", ids[i], r, ann[i], {"fold": folds[i], "fps": int(cfg["fps"])})

    truth, n_frames = _render_clips(ds, seed, n, ann, emotions, cfg, progress, render, write)
    lab = [emotions.index(a) for a in ann]
    mae = labels.MAE_DFER_CLASSES[ds]
    counts = {}
    for k in range(1, FOLDS + 1):
        for split in ("train", "test"):
            rows = [i for i in range(n) if (folds[i] == k) == (split == "test")]
            sub = tmp / "anno" / "single" / "no_caption" / f"set_{k}"
            write_lines(sub / f"{split}.csv", ["video_name,labels"] + [f"{ids[i]},{lab[i]}" for i in rows])
            write_lines(sub / f"{split}.txt", [f"{ids[i]}.mp4 {labels.MAFW_OFFICIAL_NAMES[lab[i]]}" for i in rows])
            write_lines(tmp / "mae_dfer/mafw/single" / f"split0{k}" / f"{split}.csv",
                        [f"{(final / 'data' / 'clips' / f'{ids[i]}.mp4').as_posix()} "
                         f"{mae.index(labels.MAFW_OFFICIAL_NAMES[lab[i]])}" for i in rows])
            counts[f"fold{k}/{split}"] = _counts([ann[i] for i in rows], classes)
    write_lines(tmp / "anno" / "id_to_calss.txt", [f"{i} {c}" for i, c in enumerate(classes)])
    return _clip_summary(n, ann, truth, n_frames, counts, classes)


# ------------------------------------------------------------------------------------------ FERV39K
def write_ferv39k(tmp: Path, final: Path, cfg: dict, diff: dict, seed: int, progress) -> dict:
    ds = "FERV39K"
    classes, emotions, n, rng, ann = _plan_clip_labels(ds, cfg, seed, per_class=2, floor=3)
    test = stratified_test(rng, ann, cfg["test_fraction"])
    scenes = list(cfg["scenes"])
    scene_of = [scenes[int(j)] for j in rng.integers(0, len(scenes), n)]
    numbers = rng.choice(np.arange(1, 10000), n, replace=False)
    ids = [f"{scene_of[i]}/{classes[emotions.index(ann[i])]}/{int(numbers[i]):04d}" for i in range(n)]
    tints = {s: item_rng(seed, ds, f"scene:{s}").uniform(30, 220, 3).tolist() for s in scenes}
    size = int(cfg["size"])

    def render(i, r_, true, T):
        return render_clip(r_, true, T, (size, size), "aligned", diff, scene={"tint": tints[scene_of[i]]})

    def write(i, r_, r):
        q = _quality(r_)
        for k, img in enumerate(r.frames, 1):
            write_jpg(tmp / "2_ClipsforFaceCrop" / ids[i] / f"{k}.jpg", img, q)
        write_clip_groundtruth(tmp / "_groundtruth", ids[i], r, ann[i], {"scene": scene_of[i]})

    truth, n_frames = _render_clips(ds, seed, n, ann, emotions, cfg, progress, render, write)
    lab = [emotions.index(a) for a in ann]
    mae = labels.MAE_DFER_CLASSES[ds]
    counts = {}
    for split in ("train", "test"):
        rows = sorted((i for i in range(n) if test[i] == (split == "test")), key=lambda i: ids[i])
        write_lines(tmp / "Annotation" / f"{split}.csv", ["path,id"] + [f"{ids[i]},{lab[i]}" for i in rows])
        write_lines(tmp / "4_setups" / "All_scenes" / f"{split}_All.csv",
                    [f"{ids[i]} {classes[lab[i]]}" for i in rows])
        write_lines(tmp / "mae_dfer/ferv39k/all_scenes" / f"{split}.csv",
                    [f"{(final / '2_ClipsforFaceCrop' / ids[i]).as_posix()} {mae.index(classes[lab[i]])}"
                     for i in rows])
        counts[split] = _counts([ann[i] for i in rows], classes)
    write_lines(tmp / "Annotation" / "label_index.txt", [f"{i} {c}" for i, c in enumerate(classes)])
    return _clip_summary(n, ann, truth, n_frames, counts, classes)


def _render_clips(ds: str, seed: int, n: int, ann: list, emotions: list, cfg: dict, progress, render,
                  write) -> tuple[list, int]:
    """Every clip ``i`` of a clip dataset from its own RNG: the true label behind its annotation (label noise),
    a length ``cfg["frames"]`` (a fixed count, or drawn from a [lo, hi] range), ``render(i, rng, true, T)`` then
    ``write(i, rng, rendered)``; returns the true labels and the frame total."""
    frames = cfg["frames"]
    truth, n_frames = [], 0
    for i in progress(range(n), desc=ds):
        r_ = item_rng(seed, ds, i)
        true = ex.true_from_annotated(r_, ann[i], cfg["label_noise"], emotions)
        T = int(frames) if isinstance(frames, int) else int(r_.integers(frames[0], frames[1] + 1))
        write(i, r_, render(i, r_, true, T))
        truth.append(true)
        n_frames += T
    return truth, n_frames


def _clip_summary(n: int, ann: list, truth: list, n_frames: int, counts: dict, classes: list) -> dict:
    return {"items": n, "frames": n_frames, "counts": counts, "all": _counts(ann, classes),
            "label_noise": float(np.mean([a != t for a, t in zip(ann, truth)]))}


# ------------------------------------------------------------------------------------------ AFEW
def write_afew(tmp: Path, final: Path, cfg: dict, diff: dict, seed: int, progress) -> dict:
    """AFEW 7.0's layout: ``{Train,Val}/<Emotion>/<5-digit id>.avi`` (movie scenes: the face is not centred)."""
    ds = "AFEW"
    classes, emotions, n, rng, ann = _plan_clip_labels(ds, cfg, seed, per_class=4, floor=4)
    val = stratified_test(rng, ann, cfg["val_fraction"])
    ids = [f"{int(i):06d}" for i in rng.choice(np.arange(1, 999999), n, replace=False)]
    size = (int(cfg["height"]), int(cfg["width"]))

    def render(i, r_, true, T):
        return render_clip(r_, true, T, size, "wild", diff, face_width=tuple(cfg["face_width"]))

    def write(i, r_, r):
        split, emotion = "Val" if val[i] else "Train", classes[emotions.index(ann[i])]
        _write_mp4(tmp / split / emotion / f"{ids[i]}.avi", r.frames, int(cfg["fps"]))
        write_clip_groundtruth(tmp / "_groundtruth", f"{emotion}/{ids[i]}", r, ann[i], {"split": split})

    truth, n_frames = _render_clips(ds, seed, n, ann, emotions, cfg, progress, render, write)
    counts = {split: _counts([ann[i] for i in range(n) if val[i] == is_val], classes)
              for split, is_val in (("train", False), ("test", True))}
    return _clip_summary(n, ann, truth, n_frames, counts, classes)


# ------------------------------------------------------------------------------------------ AffectNet
AFFECTNET_CODES = ["neutral", "happiness", "sadness", "surprise", "fear", "disgust", "anger", "contempt"]
# Typical (valence, arousal) per emotion, for the valence/arousal columns.
VALENCE_AROUSAL = {"neutral": (0.0, 0.0), "happiness": (0.7, 0.4), "sadness": (-0.6, -0.2),
                   "surprise": (0.2, 0.7), "fear": (-0.5, 0.7), "disgust": (-0.6, 0.4), "anger": (-0.6, 0.6),
                   "contempt": (-0.4, 0.2)}
AFFECTNET_COLUMNS = ["subDirectory_filePath", "face_x", "face_y", "face_width", "face_height", "facial_landmarks",
                     "expression", "valence", "arousal"]


def write_affectnet(tmp: Path, final: Path, cfg: dict, diff: dict, seed: int, progress) -> dict:
    ds = "AffectNet"
    emotions = AFFECTNET_CODES
    scale = cfg["scale"]
    n_train = _n(cfg, "train", scale, 8 * len(emotions))
    per_val = max(int(round(cfg["validation_per_class"] * scale)), 2)
    rng = item_rng(seed, ds, "plan")
    plan = [("training", a) for a in annotated_labels(rng, ex.PRIORS[ds], emotions, n_train, floor=8)]
    val = [e for e in emotions for _ in range(per_val)]
    rng.shuffle(val)
    plan += [("validation", a) for a in val]
    n_special = max(3, int(round(cfg["invalid_rows"] * scale)))  # codes 8/9/10, dropped by readers
    specials = [(["training", "validation"][j % 2], [8, 9, 10][j % 3]) for j in range(n_special)]
    gt_dir = tmp / "_groundtruth"
    rows = {"training": [], "validation": []}
    counts = {"training": {c: 0 for c in labels.classes("AffectNet-8")},
              "validation": {c: 0 for c in labels.classes("AffectNet-8")}}
    noisy = 0
    total = len(plan) + len(specials)
    lo, hi = cfg["image_size"]
    for i in progress(range(total), desc=ds):
        r_ = item_rng(seed, ds, i)
        sub = str(int(r_.integers(1, 1300)))
        name = r_.bytes(20).hex() + ".jpg"
        rel = f"{sub}/{name}"
        w, h = int(r_.integers(lo, hi + 1)), int(r_.integers(lo, hi + 1))
        if i < len(plan):
            split, annotated = plan[i]
            true = ex.true_from_annotated(r_, annotated, cfg["label_noise"], emotions)
            code = emotions.index(annotated)
            face = True
        else:
            split, code = specials[i - len(plan)]
            annotated = None
            true = str(r_.choice(emotions)) if code != 10 else None
            face = code != 10
        if face:
            r = render_clip(r_, true, 1, (h, w), "wild", diff, face_width=tuple(cfg["face_width"]),
                            allow_irrelevant=False)
            img, box, lm = r.frames[0], r.boxes[0], r.landmarks[0]
        else:  # code 10 (Non-Face): a scene without a face
            r, img, box, lm = None, _no_face(r_, h, w, diff), None, None
        write_jpg(tmp / "Manually_Annotated_Images" / sub / name, img, _quality(r_))
        if face:
            bx = [int(round(v)) for v in box]
            fx, fy, fw, fh = bx[0], bx[1], bx[2] - bx[0], bx[3] - bx[1]
            lms = ";".join(f"{v:.2f}" for v in np.asarray(lm).ravel())
            va = VALENCE_AROUSAL[true]
            val_, aro = np.clip(np.array(va) * r.meta["apex_intensity"] + r_.normal(0, 0.15, 2), -1, 1)
        else:
            fx = fy = 0
            fw, fh = w, h
            lms = ""
            val_, aro = -2.0, -2.0
        if annotated is not None and true != annotated:
            noisy += 1
        rows[split].append(f"{rel},{fx},{fy},{fw},{fh},{lms},{code},{val_:.6f},{aro:.6f}")
        if code < 8:
            counts[split][labels.classes("AffectNet-8")[code]] += 1
        write_image_groundtruth(gt_dir, rel, box, lm, true, annotated,
                                {"split": split, "expression_code": code,
                                 "apex_intensity": r.meta["apex_intensity"] if face else None,
                                 "pose": r.meta["pose"] if face else None})
    for split, lines in rows.items():
        write_lines(tmp / "Manually_Annotated_file_lists" / f"{split}.csv", [",".join(AFFECTNET_COLUMNS)] + lines)
    return {"items": total, "counts": counts, "invalid_rows": n_special, "label_noise": noisy / len(plan)}


def _no_face(rng, h: int, w: int, diff: dict) -> np.ndarray:
    from dfer.data.synth.faces import background, photometric

    bg = background(rng, h, w, int(rng.integers(4, 12)))
    return photometric(rng, bg, gradient=0.3, noise=float(rng.uniform(*diff["noise"])), blur=0.0)


# ------------------------------------------------------------------------------------------ RAF-DB
RAFDB_CODES = ["surprise", "fear", "disgust", "happiness", "sadness", "anger", "neutral"]  # codes 1..7


def write_rafdb(tmp: Path, final: Path, cfg: dict, diff: dict, seed: int, progress) -> dict:
    ds = "RAF-DB"
    emotions = RAFDB_CODES
    n, rng, ann = _plan_labels(ds, cfg, seed, emotions, 4 * len(emotions), floor=4, key="images")
    test = stratified_test(rng, ann, cfg["test_fraction"])
    size = int(cfg["size"])
    gt_dir = tmp / "_groundtruth"
    lines, names, noisy = [], [], 0
    counters = {"train": 0, "test": 0}
    counts = {"train": {c: 0 for c in labels.classes(ds)}, "test": {c: 0 for c in labels.classes(ds)}}
    for i in range(n):
        split = "test" if test[i] else "train"
        counters[split] += 1
        names.append(f"{split}_{counters[split]:05d}")
    for i in progress(range(n), desc=ds):
        r_ = item_rng(seed, ds, i)
        true = ex.true_from_annotated(r_, ann[i], cfg["label_noise"], emotions)
        r = render_clip(r_, true, 1, (size, size), "aligned", diff, allow_irrelevant=False)
        write_jpg(tmp / "basic" / "Image" / "aligned" / f"{names[i]}_aligned.jpg", r.frames[0], _quality(r_))
        code = emotions.index(ann[i]) + 1
        lines.append((names[i], f"{names[i]}.jpg {code}"))
        counts[names[i].split("_")[0]][labels.classes(ds)[code - 1]] += 1
        noisy += true != ann[i]
        write_image_groundtruth(gt_dir, names[i], r.boxes[0], r.landmarks[0], true, ann[i],
                                {"apex_intensity": r.meta["apex_intensity"], "pose": r.meta["pose"]})
    lines.sort(key=lambda x: (not x[0].startswith("train"), x[0]))  # official file: train_* then test_*
    write_lines(tmp / "basic" / "EmoLabel" / "list_patition_label.txt", [ln for _, ln in lines])
    return {"items": n, "counts": counts, "label_noise": noisy / n}


# ------------------------------------------------------------------------------------------ FERPlus
FERPLUS_COLUMNS = ["neutral", "happiness", "surprise", "sadness", "anger", "disgust", "fear", "contempt",
                   "unknown", "NF"]
FER2013_CODES = ["anger", "disgust", "fear", "happiness", "sadness", "surprise", "neutral"]  # fer2013.csv emotion


def write_ferplus(tmp: Path, final: Path, cfg: dict, diff: dict, seed: int, progress) -> dict:
    ds = "FERPlus"
    emotions = FERPLUS_COLUMNS[:8]
    n, rng, truths = _plan_labels(ds, cfg, seed, emotions, 6 * len(emotions), floor=6, key="images")
    # Usage split stratified on the shown expression: 80% Training, 10% PublicTest, 10% PrivateTest.
    usage = ["Training"] * n
    test = stratified_test(rng, truths, 0.2)
    flip = False
    for e in sorted(set(truths)):
        for i in [j for j in range(n) if truths[j] == e and test[j]]:
            usage[i] = "PublicTest" if flip else "PrivateTest"
            flip = not flip
    n_nf = max(1, int(round(cfg["nf_rows"] * cfg["scale"])))
    nf_at = set(int(j) for j in rng.choice(np.arange(n + n_nf), n_nf, replace=False))
    gt_dir = tmp / "_groundtruth"
    pix_rows, vote_rows = ["emotion,pixels,Usage"], [
        "Usage,Image name," + ",".join(FERPLUS_COLUMNS)]
    counts: dict[str, dict[str, int]] = {u: {c: 0 for c in labels.classes(ds)}
                                        for u in ("Training", "PublicTest", "PrivateTest")}
    noisy = 0
    it = iter(range(n))
    for row in progress(range(n + n_nf), desc=ds):
        r_ = item_rng(seed, ds, row)
        name = f"fer{row:07d}.png"
        if row in nf_at:
            img = cv2.cvtColor(_no_face(r_, 48, 48, diff), cv2.COLOR_RGB2GRAY)
            votes = np.zeros(10, int)
            votes[9] = int(r_.integers(6, 11))
            votes[8] = 10 - votes[9]
            u = ["Training", "PublicTest", "PrivateTest"][int(r_.integers(3))] if r_.random() < 0.3 else "Training"
            fer_code = int(r_.integers(7))
            box = lm = true = None
            majority = None
        else:
            i = next(it)
            true, u = truths[i], usage[i]
            r = render_clip(r_, true, 1, (48, 48), "aligned", diff, gray=True, allow_irrelevant=False)
            img, box, lm = r.frames[0][..., 0], r.boxes[0], r.landmarks[0]
            votes = _votes(r_, true, cfg["label_noise"])
            majority = FERPLUS_COLUMNS[int(np.argmax(votes))]
            fer_true = true if true in FER2013_CODES else "neutral"  # FER2013 has no contempt
            fer_label = ex.noisy_label(r_, fer_true, cfg["fer2013_label_noise"], FER2013_CODES)
            fer_code = FER2013_CODES.index(fer_label)
            if majority in emotions:
                counts[u][labels.classes(ds)[emotions.index(majority)]] += 1
                noisy += majority != true
        pix_rows.append(f"{fer_code},{' '.join(str(int(v)) for v in img.ravel())},{u}")
        vote_rows.append(f"{u},{name}," + ",".join(str(int(v)) for v in votes))
        write_image_groundtruth(gt_dir, name[:-4], box, lm, true, majority,
                                {"row": row, "votes": [int(v) for v in votes], "usage": u})
    write_lines(tmp / "fer2013" / "fer2013.csv", pix_rows)
    write_lines(tmp / "FERPlus" / "fer2013new.csv", vote_rows)
    return {"items": n + n_nf, "counts": counts, "nf_rows": n_nf, "label_noise": noisy / n}


def _votes(rng: np.random.Generator, true: str, noise: float) -> np.ndarray:
    """10 crowd votes: most on the shown expression; with probability ``noise`` the crowd prefers a
    confusable class (the majority label is then wrong), otherwise a few dissenting votes."""
    votes = np.zeros(10, int)
    alt = ex.CONFUSIONS[true]
    alt = [a for a in alt if a in FERPLUS_COLUMNS[:8]] or ["neutral"]
    other = FERPLUS_COLUMNS.index(alt[int(rng.integers(len(alt)))])
    t = FERPLUS_COLUMNS.index(true)
    if rng.random() < noise:
        votes[other] = int(rng.integers(5, 8))
        votes[t] = 10 - votes[other] - 1
        votes[8] = 1
    else:
        votes[t] = int(rng.integers(6, 11))
        rest = 10 - votes[t]
        votes[other] += rest // 2 + rest % 2
        votes[8] += rest // 2
    return votes


from dfer.data.synth.generic import write_generic  # noqa: E402  (non-face images, see generic.py)
from dfer.data.synth.voxceleb2 import write_voxceleb2  # noqa: E402  (unlabelled talking faces, see voxceleb2.py)

WRITERS = {"DFEW": write_dfew, "MAFW": write_mafw, "FERV39K": write_ferv39k, "AffectNet": write_affectnet,
           "RAF-DB": write_rafdb, "FERPlus": write_ferplus, "Generic": write_generic, "VoxCeleb2": write_voxceleb2,
           "AFEW": write_afew}
