"""`dfer synth`: layouts and annotation formats, folds, ground truth, determinism, and a real expression signal."""
from __future__ import annotations

import csv
import json
from collections import Counter
from pathlib import Path

import numpy as np
import pytest

from dfer.data import labels
from dfer.data.synth import expressions as ex
from dfer.data.synth.clips import difficulty, render_clip
from dfer.data.synth.faces import render_face
from dfer.data.synth.generate import DATASETS, generate
from dfer.data.synth.writers import FOLDS

# Small but complete: every dataset, every class (the per-class floors keep all classes in every fold).
def settings(over: dict) -> dict:
    """params.yaml's `synth` section (every setting) with ``over`` merged in."""
    from dfer.config import deep_merge, load_params

    return deep_merge(load_params()["synth"], over)


SMALL = settings({"scale": 0.1, "dfew": {"clips": 300, "size": 64, "frames": 16},
                  "mafw": {"clips": 160, "width": 160, "height": 128, "frames": [24, 28]},
                  "ferv39k": {"clips": 200, "size": 64, "frames": [6, 10]},
                  "affectnet": {"image_size": [96, 112], "train": 1100, "validation_per_class": 40},
                  "rafdb": {"images": 700}, "ferplus": {"images": 700},
                  "voxceleb2": {"size": 64, "frames": [8, 12]}})
SEED = 3


@pytest.fixture(scope="module")
def synth(tmp_path_factory) -> tuple[Path, dict]:
    out = tmp_path_factory.mktemp("synth")
    summary = generate(out, DATASETS, SEED, SMALL, progress=False)
    return out, summary


def _rows(path: Path, delimiter=","):
    with open(path, newline="") as fh:
        return list(csv.reader(fh, delimiter=delimiter))


def _gt(root: Path, item_id: str) -> dict:
    return json.loads((root / "_groundtruth" / f"{item_id.replace('/', '__')}.json").read_text())


# ------------------------------------------------------------------------------------------ layouts
def test_dfew_layout_and_folds(synth):
    out, summary = synth
    root = out / "DFEW"
    n_cls = len(labels.CLASSES["DFEW"])
    all_ids, tests = set(), []
    for k in range(1, FOLDS + 1):
        tr = _rows(root / "EmoLabel_DataSplit" / "train(single-labeled)" / f"train_set_{k}.csv")
        te = _rows(root / "EmoLabel_DataSplit" / "test(single-labeled)" / f"test_set_{k}.csv")
        off_te = _rows(root / "EmoLabel_DataSplit" / "test(single-labeled)" / f"set_{k}.csv")
        assert tr[0] == ["video_name", "label"] and te[0] == ["video_name", "label"] and off_te[0] == tr[0]
        assert [(v, int(l) - 1) for v, l in off_te[1:]] == [(v, int(l)) for v, l in te[1:]]  # official = 1-based
        for v, lab in tr[1:] + te[1:]:
            assert len(v) == 5 and v.isdigit() and 0 <= int(lab) < n_cls
        train_ids, test_ids = {v for v, _ in tr[1:]}, {v for v, _ in te[1:]}
        assert not train_ids & test_ids
        all_ids |= train_ids | test_ids
        tests.append(test_ids)
        # every class (disgust included) appears in every test fold
        assert {int(lab) for _, lab in te[1:]} == set(range(n_cls))
        mae = _rows(root / "mae_dfer/dfew/org" / f"split0{k}" / "test.csv", delimiter=" ")
        assert sorted(Path(p).name for p, _ in mae) == sorted(test_ids)
        assert all(Path(p).is_absolute() and Path(p).is_dir() for p, _ in mae)
    # the five test sets partition the clips; each fold's train set is the rest
    assert sum(len(t) for t in tests) == len(all_ids) == summary["DFEW"]["items"]
    for k in range(FOLDS):
        tr = {v for v, _ in _rows(root / "EmoLabel_DataSplit" / "train(single-labeled)" / f"train_set_{k + 1}.csv")[1:]}
        assert tr == all_ids - tests[k]
    clip = root / "Clip" / "clip_224x224_16f" / sorted(all_ids)[0]
    assert sorted(p.name for p in clip.iterdir()) == sorted(f"{k}.jpg" for k in range(1, 17))
    import cv2
    assert cv2.imread(str(clip / "1.jpg")).shape == (64, 64, 3)


def test_mafw_layout_folds_and_videos_decode_with_decord(synth):
    import decord

    out, _ = synth
    root = out / "MAFW"
    names = labels.MAFW_OFFICIAL_NAMES
    all_ids, n_test = set(), 0
    for k in range(1, FOLDS + 1):
        sub = root / "anno" / "single" / "no_caption" / f"set_{k}"
        te = _rows(sub / "test.csv")
        assert te[0] == ["video_name", "labels"]
        txt = [line.split() for line in (sub / "test.txt").read_text().splitlines()]
        assert [(f"{v}.mp4", names[int(lab)]) for v, lab in te[1:]] == [tuple(t) for t in txt]
        assert {int(lab) for _, lab in te[1:]} == set(range(11))
        mae = _rows(root / "mae_dfer/mafw/single" / f"split0{k}" / "test.csv", delimiter=" ")
        mae_order = labels.MAE_DFER_CLASSES["MAFW"]
        assert [mae_order[int(lab)] for _, lab in mae] == [names[int(lab)] for _, lab in te[1:]]
        ids = {v for v, _ in te[1:]}
        assert not ids & all_ids
        all_ids |= ids
        n_test += len(ids)
    assert n_test == len(all_ids) == len(list((root / "data" / "clips").glob("*.mp4")))
    for vid in sorted(all_ids)[:3]:
        gt = _gt(root, vid)
        vr = decord.VideoReader(str(root / "data" / "clips" / f"{vid}.mp4"), num_threads=1)
        assert len(vr) == len(gt["boxes"]) and 24 <= len(vr) <= 28
        frame = vr[0].asnumpy()
        assert frame.shape == (128, 160, 3)
        # the face is small in the frame and moves: alignment has work to do
        boxes = np.array([b for b in gt["boxes"] if b is not None])
        widths = (boxes[:, 2] - boxes[:, 0]) / 160
        assert 0.15 < widths.mean() < 0.6
        centres = (boxes[:, :2] + boxes[:, 2:]) / 2
        assert np.ptp(centres, axis=0).max() > 1.0


def test_ferv39k_layout(synth):
    out, _ = synth
    root = out / "FERV39K"
    classes = labels.CLASSES["FERV39K"]
    tr, te = _rows(root / "Annotation" / "train.csv"), _rows(root / "Annotation" / "test.csv")
    assert tr[0] == ["path", "id"] == te[0]
    for path, lab in tr[1:] + te[1:]:
        scene, emo, clip = path.split("/")
        assert emo == classes[int(lab)] and len(clip) == 4 and clip.isdigit()
        assert (root / "2_ClipsforFaceCrop" / path / "1.jpg").is_file()
    official = [line.split() for line in (root / "4_setups" / "All_scenes" / "test_All.csv").read_text().splitlines()]
    assert [(p, classes[int(lab)]) for p, lab in te[1:]] == [tuple(x) for x in official]
    assert {int(lab) for _, lab in te[1:]} == set(range(7))
    assert not {p for p, _ in tr[1:]} & {p for p, _ in te[1:]}
    assert (root / "Annotation" / "label_index.txt").read_text().splitlines()[0] == "0 Angry"


def test_affectnet_layout(synth):
    out, _ = synth
    root = out / "AffectNet"
    for split in ("training", "validation"):
        rows = _rows(root / "Manually_Annotated_file_lists" / f"{split}.csv")
        assert rows[0] == ["subDirectory_filePath", "face_x", "face_y", "face_width", "face_height",
                           "facial_landmarks", "expression", "valence", "arousal"]
        codes = Counter(int(r[6]) for r in rows[1:])
        assert set(codes) <= set(range(11)) and set(range(8)) <= set(codes)
        for r in rows[1:]:
            assert (root / "Manually_Annotated_Images" / r[0]).is_file()
            if int(r[6]) < 10:
                pts = np.array(r[5].split(";"), float).reshape(68, 2)
                x, y, w, h = map(int, r[1:5])
                assert np.all(pts >= [x - 1, y - 1]) and np.all(pts <= [x + w + 1, y + h + 1])
                assert -1 <= float(r[7]) <= 1 and -1 <= float(r[8]) <= 1
        assert {8, 9, 10} & set(codes)  # rows that readers must drop
    val = Counter(int(r[6]) for r in _rows(root / "Manually_Annotated_file_lists" / "validation.csv")[1:])
    assert len({val[c] for c in range(8)}) == 1  # balanced validation set, as the real one


def test_rafdb_and_ferplus_layout(synth):
    out, _ = synth
    raf = out / "RAF-DB"
    lines = (raf / "basic" / "EmoLabel" / "list_patition_label.txt").read_text().splitlines()
    for line in lines:
        name, code = line.split()
        assert name.startswith(("train_", "test_")) and 1 <= int(code) <= 7
        assert (raf / "basic" / "Image" / "aligned" / name.replace(".jpg", "_aligned.jpg")).is_file()
    assert {int(line.split()[1]) for line in lines if line.startswith("test_")} == set(range(1, 8))
    fp = out / "FERPlus"
    pixels = _rows(fp / "fer2013" / "fer2013.csv")
    votes = _rows(fp / "FERPlus" / "fer2013new.csv")
    assert pixels[0] == ["emotion", "pixels", "Usage"]
    assert votes[0] == ["Usage", "Image name", "neutral", "happiness", "surprise", "sadness", "anger", "disgust",
                        "fear", "contempt", "unknown", "NF"]
    assert len(pixels) == len(votes)
    nf = 0
    for p, v in zip(pixels[1:], votes[1:]):
        assert len(p[1].split()) == 48 * 48 and 0 <= int(p[0]) <= 6 and p[2] == v[0]
        assert v[0] in ("Training", "PublicTest", "PrivateTest") and sum(map(int, v[2:])) == 10
        nf += int(np.argmax(list(map(int, v[2:])))) == 9
    assert nf == round(8 * SMALL["scale"]) == 1  # nf_rows=8, scaled
    preview = out / "FERPlus" / "_groundtruth" / "preview.png"
    import cv2
    assert cv2.imread(str(preview)).shape[1] == 8 * 96


def test_annotation_readers_read_every_format(synth):
    from dfer.data.annotations import load_split

    out, summary = synth
    for fmt in ("s2d", "official", "mae_dfer"):
        for ds, extra in (("DFEW", {}), ("MAFW", {"videos": "data/clips"})):
            n = sum(len(load_split(ds, out / ds, "test", k, format=fmt, **extra)) for k in range(1, 6))
            assert n == summary[ds]["items"]
        fer = load_split("FERV39K", out / "FERV39K", "train", format=fmt) + \
            load_split("FERV39K", out / "FERV39K", "test", format=fmt)
        assert len(fer) == summary["FERV39K"]["items"]
    a8 = load_split("AffectNet-8", out / "AffectNet", "test", format="official")
    a7 = load_split("AffectNet-7", out / "AffectNet", "test", format="official")
    assert {s.label for s in a8} == set(range(8)) and {s.label for s in a7} == set(range(7))
    assert len(load_split("RAF-DB", out / "RAF-DB", "test", format="official")) == \
        sum(summary["RAF-DB"]["counts"]["test"].values())
    assert len(load_split("FERPlus", out / "FERPlus", "test", format="official")) == \
        sum(summary["FERPlus"]["counts"]["PrivateTest"].values())


# ------------------------------------------------------------------------------------------ ground truth
def test_groundtruth_landmarks_inside_boxes_and_frames(synth):
    out, _ = synth
    seen_no_face = 0
    for ds in ("DFEW", "MAFW", "FERV39K"):
        gts = [json.loads(p.read_text()) for p in (out / ds / "_groundtruth").glob("*.json")
               if p.name != "manifest.json"]
        assert gts
        for gt in gts:
            assert len(gt["boxes"]) == len(gt["landmarks"]) == len(gt["intensity"])
            assert gt["true_label"] == gt["expression"] and gt["label_noise"] == (gt["label"] != gt["true_label"])
            for box, lm in zip(gt["boxes"], gt["landmarks"]):
                assert (box is None) == (lm is None)
                if box is None:
                    seen_no_face += 1
                    continue
                pts = np.array(lm)
                assert pts.shape == (68, 2)
                assert np.all(pts >= np.array(box[:2]) - 0.02) and np.all(pts <= np.array(box[2:]) + 0.02)
    assert seen_no_face > 0  # irrelevant frames exist
    dfew_ids = [p.stem for p in (out / "DFEW" / "Clip" / "clip_224x224_16f").iterdir()]
    assert all(len(_gt(out / "DFEW", i)["boxes"]) == SMALL["dfew"]["frames"] for i in dfew_ids)
    for ds in ("AffectNet", "RAF-DB", "FERPlus"):
        for p in list((out / ds / "_groundtruth").glob("*.json"))[:50]:
            if p.name == "manifest.json":
                continue
            gt = json.loads(p.read_text())
            if gt["box"] is not None:
                pts = np.array(gt["landmarks"])
                assert np.all(pts >= np.array(gt["box"][:2]) - 0.02) and np.all(pts <= np.array(gt["box"][2:]) + 0.02)
    for ds in DATASETS:
        manifest = json.loads((out / ds / "_groundtruth" / "manifest.json").read_text())
        assert manifest["seed"] == SEED and manifest["dataset"] == ds
        assert (out / ds / "_groundtruth" / "README.md").is_file()


def test_groundtruth_matches_ids_used_by_adapters(synth):
    from dfer.data.annotations import cache_name, load_split

    out, _ = synth
    for ds, root in (("FERV39K", "FERV39K"), ("AffectNet-8", "AffectNet"), ("RAF-DB", "RAF-DB"),
                     ("FERPlus", "FERPlus")):
        for s in load_split(ds, out / root, "test", format="s2d" if ds == "FERV39K" else "official"):
            assert (out / root / "_groundtruth" / f"{cache_name(s.id)}.json").is_file(), (ds, s.id)


def test_voxceleb2_stand_in_has_the_dev_layout_and_talking_faces(synth):
    """UniLearn's video pre-training data: dev/mp4/<speaker>/<11-character video id>/<clip>.mp4, decodable clips
    of one aligned face that is always speaking."""
    import re

    from dfer.data.video import count_frames
    from dfer.pretrain.stage import video_samples

    out, summary = synth
    root = out / "VoxCeleb2"
    clips = sorted((root / "dev" / "mp4").rglob("*.mp4"))
    v = SMALL["voxceleb2"]
    speakers = max(round(v["speakers"] * SMALL["scale"]), 2)
    assert len(clips) == summary["VoxCeleb2"]["items"] == speakers * v["videos_per_speaker"] * v["clips_per_video"]
    lo, hi = SMALL["voxceleb2"]["frames"]
    for clip in clips:
        rel = clip.relative_to(root).as_posix()
        assert re.fullmatch(r"dev/mp4/id\d{5}/[A-Za-z0-9_-]{11}/\d{5}\.mp4", rel), rel
        gt = json.loads((root / "_groundtruth" / f"{rel[:-4].replace('/', '__')}.json").read_text())
        assert gt["speech"] is True and gt["label"] == "unlabelled"
        assert lo <= count_frames(clip) == len(gt["boxes"]) <= hi
    assert [s.path for s in video_samples([{"videos": str(root / "dev" / "mp4")}])] == clips


# ------------------------------------------------------------------------------------------ determinism, atomicity
def test_same_seed_gives_identical_files(synth, tmp_path):
    out, _ = synth
    again = tmp_path / "again"
    generate(again, DATASETS, SEED, SMALL, progress=False)
    files = sorted(p.relative_to(out) for p in out.rglob("*") if p.is_file())
    assert files == sorted(p.relative_to(again) for p in again.rglob("*") if p.is_file())
    for rel in files:
        a, b = (out / rel).read_bytes(), (again / rel).read_bytes()
        if rel.parts[1] == "mae_dfer" or rel.name == "manifest.json":  # absolute paths differ by design
            b = b.replace(str(again.resolve()).encode(), str(out.resolve()).encode())
        assert a == b, rel
    other = tmp_path / "other"
    generate(other, ["RAF-DB"], SEED + 1, SMALL, progress=False)
    assert (other / "RAF-DB/basic/Image/aligned/train_00001_aligned.jpg").read_bytes() != \
        (out / "RAF-DB/basic/Image/aligned/train_00001_aligned.jpg").read_bytes()


def test_failed_run_keeps_previous_dataset(tmp_path, monkeypatch):
    from dfer.data.synth.writers import WRITERS

    generate(tmp_path, ["RAF-DB"], 0, settings({"scale": 0.05}), progress=False)
    before = sorted(p.relative_to(tmp_path) for p in tmp_path.rglob("*"))

    def broken(tmp, final, cfg, diff, seed, progress):
        (tmp / "half_written.txt").write_text("x")
        raise RuntimeError("disk full")

    monkeypatch.setitem(WRITERS, "RAF-DB", broken)
    with pytest.raises(RuntimeError, match="disk full"):
        generate(tmp_path, ["RAF-DB"], 0, settings({"scale": 0.05}), progress=False)
    assert sorted(p.relative_to(tmp_path) for p in tmp_path.rglob("*")) == before
    # a killed run's leftovers (dead pid) are cleaned up by the next run
    stale = tmp_path / ".RAF-DB.tmp-999999999"
    stale.mkdir()
    monkeypatch.undo()
    generate(tmp_path, ["RAF-DB"], 0, settings({"scale": 0.05}), progress=False)
    assert not stale.exists() and sorted(p.relative_to(tmp_path) for p in tmp_path.rglob("*")) == before


# ------------------------------------------------------------------------------------------ balance, noise
def test_class_balance_mimics_dfew():
    counts = ex.class_counts(ex.PRIORS["DFEW"], 300, floor=FOLDS)
    assert sum(counts.values()) == 300
    assert counts["disgust"] == min(counts.values()) and FOLDS <= counts["disgust"] <= 0.04 * 300
    assert counts["happiness"] > 5 * counts["disgust"]


def test_label_noise_rate_near_configured(synth):
    rng = np.random.default_rng(0)
    emotions = ex.dataset_emotions("DFEW")
    draws = [ex.true_from_annotated(rng, emotions[i % 7], 0.1, emotions) for i in range(7000)]
    rate = np.mean([d != emotions[i % 7] for i, d in enumerate(draws)])
    assert abs(rate - 0.1) < 0.015
    # noisy labels go to confusable classes (e.g. a clip annotated fear really shows surprise / anxiety / ...)
    wrong = Counter(d for i, d in enumerate(draws) if emotions[i % 7] == "fear" and d != "fear")
    assert set(wrong) <= {e for e in emotions if "fear" in ex.CONFUSIONS[e]}
    out, summary = synth
    gts = [json.loads(p.read_text()) for p in (out / "DFEW" / "_groundtruth").glob("*.json")
           if p.name != "manifest.json"]
    assert len(gts) == summary["DFEW"]["items"]
    measured = np.mean([g["label"] != g["true_label"] for g in gts])
    assert measured == pytest.approx(summary["DFEW"]["label_noise"]) and measured < 0.3


# ------------------------------------------------------------------------------------------ expression signal
def _normalise(lm) -> np.ndarray:
    """Landmarks in an eye-aligned frame (translation, scale, in-plane rotation removed)."""
    lm = np.asarray(lm, float)
    le, re = lm[36:42].mean(0), lm[42:48].mean(0)
    d = re - le
    a = -np.arctan2(d[1], d[0])
    rot = np.array([[np.cos(a), -np.sin(a)], [np.sin(a), np.cos(a)]])
    return (((lm - (le + re) / 2) @ rot.T) / np.linalg.norm(d)).ravel()


@pytest.fixture(scope="module")
def geometry():
    """60 geometry-only clips per MAFW emotion: apex-frame and 6-frame-sequence landmark features."""
    diff = difficulty({})
    X_apex, X_seq, y = [], [], []
    for ci, emo in enumerate(ex.dataset_emotions("MAFW")):
        for j in range(60):
            r = render_clip(np.random.default_rng([7, ci, j]), emo, 16, (112, 112), "aligned", diff, draw=False)
            valid = [i for i, lm in enumerate(r.landmarks) if lm is not None]
            apex = max(valid, key=lambda i: r.intensity[i])
            X_apex.append(_normalise(r.landmarks[apex]))
            picks = [min(valid, key=lambda v: abs(v - t)) for t in np.linspace(0, 15, 6)]
            X_seq.append(np.concatenate([_normalise(r.landmarks[i]) for i in picks]))
            y.append(emo)
    return np.array(X_apex), np.array(X_seq), np.array(y)


def _cv_accuracy(X, y) -> float:
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import StratifiedKFold, cross_val_score

    cv = StratifiedKFold(5, shuffle=True, random_state=0)
    return float(cross_val_score(LogisticRegression(max_iter=3000), X, y, cv=cv).mean())


def test_expression_signal_is_real_but_not_trivial(geometry):
    X_apex, _, y = geometry
    seven = np.isin(y, ex.dataset_emotions("DFEW"))
    acc7 = _cv_accuracy(X_apex[seven], y[seven])
    acc11 = _cv_accuracy(X_apex, y)
    assert 0.45 < acc7 < 0.97          # chance 1/7: the geometry carries the label, with real overlap
    assert 0.35 < acc11 < 0.95         # chance 1/11


def test_dynamics_only_pair_needs_time(geometry):
    X_apex, X_seq, y = geometry
    pair = np.isin(y, ["sadness", "disappointment"])
    apex_acc = _cv_accuracy(X_apex[pair], y[pair])
    seq_acc = _cv_accuracy(X_seq[pair], y[pair])
    assert apex_acc < 0.65                 # one apex frame: about chance (identical apex shapes)
    assert seq_acc > 0.7 and seq_acc > apex_acc + 0.15   # the temporal profile separates them


# ------------------------------------------------------------------------------------------ renderer API, CLI
def test_render_face_api():
    img, box, lm = render_face(np.random.default_rng(1), 96, "happiness", 0.8, (10.0, 0.0, 5.0))
    assert img.shape == (96, 96, 3) and img.dtype == np.uint8 and lm.shape == (68, 2)
    assert np.all(lm >= np.array(box[:2])) and np.all(lm <= np.array(box[2:]))
    assert 0 <= box[0] < box[2] <= 96 and 0 <= box[1] < box[3] <= 96
    again, _, lm2 = render_face(np.random.default_rng(1), 96, "happiness", 0.8, (10.0, 0.0, 5.0))
    assert np.array_equal(img, again) and np.array_equal(lm, lm2)
    _, _, smile = render_face(np.random.default_rng(2), 96, "happiness", 1.0, (0.0, 0.0, 0.0), noise=0)
    _, _, rest = render_face(np.random.default_rng(2), 96, "neutral", 1.0, (0.0, 0.0, 0.0), noise=0)
    corners = lambda p: (p[48, 1] + p[54, 1]) / 2 - p[51, 1]  # noqa: E731  corners relative to the upper lip
    assert corners(smile) < corners(rest)  # a smile lifts the mouth corners
    with pytest.raises(KeyError, match="unknown expression"):
        render_face(np.random.default_rng(0), 64, "joy")


def test_cli_writes_and_summarises(tmp_path, capsys):
    from dfer.config import ConfigError
    from dfer.data.synth.cli import main

    assert main(["--out", str(tmp_path), "--datasets", "RAF-DB", "FERPlus", "--scale", "0.05", "--quiet",
                 "--seed", "1", "--set", "synth.rafdb.size=64"]) == 0
    text = capsys.readouterr().out
    assert "RAF-DB: " in text and "FERPlus: " in text and "Happiness" in text and "total" in text
    import cv2
    assert cv2.imread(str(tmp_path / "RAF-DB/basic/Image/aligned/train_00001_aligned.jpg")).shape == (64, 64, 3)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["FERPlus", "RAF-DB"]
    with pytest.raises(ConfigError, match="bogus"):
        main(["--out", str(tmp_path), "--datasets", "RAF-DB", "--set", "synth.rafdb.bogus=1"])
