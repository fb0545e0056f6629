"""Every annotation reader (one per dataset and format) on small layouts written in the official formats, including label-order mapping."""
from pathlib import Path

import cv2
import numpy as np
import pytest

from dfer.data import labels, video
from dfer.data.annotations import ferplus_label, load_split, stratified_subset
from dfer.data.clips import open_clip, read_image
from dfer.data.errors import DataError


def write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


def frames(folder: Path, n=4, ext=".jpg", value=100):
    folder.mkdir(parents=True, exist_ok=True)
    for i in range(1, n + 1):
        cv2.imwrite(str(folder / f"{i}{ext}"), np.full((32, 32, 3), value, np.uint8))


def cls(dataset, i):
    return labels.CLASSES[dataset][i]


# ------------------------------------------------------------------------------------------ DFEW
def test_dfew_s2d_official_and_mae_dfer_give_the_same_labels(tmp_path):
    root = tmp_path / "DFEW"
    for cid in ("00001", "00002", "00003"):
        frames(root / "Clip/clip_224x224_16f" / cid)
    write(root / "EmoLabel_DataSplit/train(single-labeled)/train_set_1.csv",
          "video_name,label\n00001,0\n00002,6\n00003,3\n")
    write(root / "EmoLabel_DataSplit/train(single-labeled)/set_1.csv",
          "video_name,label\n1,1\n2,7\n3,4\n")  # official: 1-based, ids not zero-padded
    write(root / "mae_dfer/dfew/org/split01/train.csv",
          "/mnt/data1/AC/Dataset/DFEW/Clip/jpg_256/00001 0\n/mnt/data1/AC/Dataset/DFEW/Clip/jpg_256/00002 6\n"
          "/mnt/data1/AC/Dataset/DFEW/Clip/jpg_256/00003 3\n")
    results = {fmt: load_split("DFEW", root, "train", 1, format=fmt) for fmt in ("s2d", "official", "mae_dfer")}
    for fmt, samples in results.items():
        assert [(s.id, cls("DFEW", s.label)) for s in samples] == \
            [("00001", "Happy"), ("00002", "Fear"), ("00003", "Angry")], fmt
        assert all(s.kind == "frames" and s.path == root / "Clip/clip_224x224_16f" / s.id for s in samples)
    s = results["s2d"][1]
    assert s.source.endswith("train_set_1.csv:3") and s.dataset == "DFEW"
    assert len(open_clip(s)) == 4


def test_dfew_test_split_and_videos(tmp_path):
    root = tmp_path / "DFEW"
    video.write_video(root / "Clip/original/00007.mp4", np.zeros((6, 32, 32, 3), np.uint8))
    write(root / "EmoLabel_DataSplit/test(single-labeled)/test_set_5.csv", "video_name,label\n00007,2\n")
    (s,) = load_split("DFEW", root, "test", 5, frames=None, videos="Clip/original")
    assert s.kind == "video" and s.path.name == "00007.mp4" and cls("DFEW", s.label) == "Neutral"
    assert len(open_clip(s)) == 6
    with pytest.raises(ValueError, match="fold"):
        load_split("DFEW", root, "test")


# ------------------------------------------------------------------------------------------ MAFW
def test_mafw_three_formats_map_to_alphabetical_order(tmp_path):
    root = tmp_path / "MAFW"
    for cid in ("03747", "00012", "10045"):
        video.write_video(root / f"data/clips/{cid}.mp4", np.zeros((5, 32, 32, 3), np.uint8))
    anno = root / "anno/single/no_caption/set_2"
    write(anno / "train.csv", "video_name,labels\n03747,0\n00012,4\n10045,1\n")
    write(anno / "train.txt", "03747.mp4 anger\n00012.mp4 disgust\n10045.mp4 anxiety\n")
    write(root / "mae_dfer/mafw/single/split02/train.csv",
          "/data/MAFW/data/frames/03747 0\n/data/MAFW/data/frames/00012 1\n/data/MAFW/data/frames/10045 8\n")
    for fmt in ("s2d", "official", "mae_dfer"):
        samples = load_split("MAFW", root, "train", 2, format=fmt, frames=None, videos="data/clips")
        assert [(s.id, cls("MAFW", s.label)) for s in samples] == \
            [("03747", "Anger"), ("00012", "Disgust"), ("10045", "Anxiety")], fmt
        assert all(s.kind == "video" and s.path == root / f"data/clips/{s.id}.mp4" for s in samples)
    # MAE-DFER MAFW label 1 'disgust' -> S2D index 4
    assert load_split("MAFW", root, "train", 2, format="mae_dfer", videos="data/clips")[1].label == 4


def test_mafw_frames_win_over_videos_and_may_live_elsewhere(tmp_path):
    root, aligned = tmp_path / "MAFW", tmp_path / "aligned/MAFW"
    frames(aligned / "03747", ext=".png")
    write(root / "anno/single/no_caption/set_1/test.csv", "video_name,labels\n03747,10\n")
    (s,) = load_split("MAFW", root, "test", 1, frames=str(aligned), videos="data/clips")
    assert s.kind == "frames" and s.path == aligned / "03747" and cls("MAFW", s.label) == "Surprise"
    assert open_clip(s).get([0]).shape == (1, 32, 32, 3)


def test_mae_dfer_mafw_full_order():
    mae = labels.MAE_DFER_CLASSES["MAFW"]
    got = {i: labels.index_of("MAFW", n) for i, n in enumerate(mae)}
    assert got == {0: 0, 1: 4, 2: 5, 3: 6, 4: 8, 5: 9, 6: 10, 7: 2, 8: 1, 9: 7, 10: 3}


# --------------------------------------------------------------------------------------- FERV39K
def test_ferv39k_formats_and_mae_order(tmp_path):
    root = tmp_path / "FERV39K"
    clips = ["Crime/Angry/0063", "Daily/Happy/0001", "Party/Sad/0102"]
    for c in clips:
        frames(root / "2_ClipsforFaceCrop" / c)
    write(root / "Annotation/test.csv", "path,id\nCrime/Angry/0063,0\nDaily/Happy/0001,3\nParty/Sad/0102,5\n")
    write(root / "4_setups/All_scenes/test_All.csv",
          "Crime/Angry/0063 Angry\nDaily/Happy/0001 Happy\nParty/Sad/0102 Sad\n")
    write(root / "mae_dfer/ferv39k/all_scenes/test.csv",
          f"{root}/2_ClipsforFaceCrop/Crime/Angry/0063 3\n/elsewhere/FERV39k/2_ClipsforFaceCrop/Daily/Happy/0001 0\n"
          f"/elsewhere/FERV39k/2_ClipsforFaceCrop/Party/Sad/0102 1\n")
    for fmt in ("s2d", "official", "mae_dfer"):
        samples = load_split("FERV39K", root, "test", format=fmt)
        assert [(s.id, cls("FERV39K", s.label)) for s in samples] == \
            [("Crime/Angry/0063", "Angry"), ("Daily/Happy/0001", "Happy"), ("Party/Sad/0102", "Sad")], fmt
        assert all(s.path == root / "2_ClipsforFaceCrop" / s.id and s.path.is_dir() for s in samples)
    # MAE-DFER FERV39K label 0 'Happy' -> S2D index 3
    assert load_split("FERV39K", root, "test", format="mae_dfer")[1].label == 3


# ------------------------------------------------------------------------------------- AffectNet
AFFECTNET_HEADER = ("subDirectory_filePath,face_x,face_y,face_width,face_height,facial_landmarks,"
                    "expression,valence,arousal\n")


def affectnet(root: Path, name: str, codes: list[int]):
    lines = []
    for i, code in enumerate(codes):
        rel = f"{i % 3 + 1}/img{i:04d}.jpg"
        img = root / "Manually_Annotated_Images" / rel
        img.parent.mkdir(parents=True, exist_ok=True)
        cv2.imwrite(str(img), np.full((40, 40, 3), 30 + code, np.uint8))
        lines.append(f"{rel},0,0,40,40,\"1.0;2.0;3.0\",{code},0.1,-0.2\n")
    write(root / "Manually_Annotated_file_lists" / name, AFFECTNET_HEADER + "".join(lines))


def test_affectnet7_and_8_drop_the_right_codes(tmp_path):
    root = tmp_path / "AffectNet"
    affectnet(root, "training.csv", list(range(11)))
    affectnet(root, "validation.csv", [0, 7, 6])
    seven = load_split("AffectNet-7", root, "train", format="official")
    eight = load_split("AffectNet-8", root, "train", format="official")
    assert [s.label for s in seven] == list(range(7))
    assert [s.label for s in eight] == list(range(8))
    assert cls("AffectNet-8", eight[7].label) == "Contempt"
    assert eight[0].path == root / "Manually_Annotated_Images/1/img0000.jpg"
    assert read_image(eight[2]).shape == (40, 40, 3)
    assert [s.label for s in load_split("AffectNet-7", root, "test", format="official")] == [0, 6]


def test_affectnet_subset_is_seeded_and_class_stratified(tmp_path):
    root = tmp_path / "AffectNet"
    codes = [0] * 40 + [1] * 20 + [5] * 10
    affectnet(root, "training.csv", codes)
    full = load_split("AffectNet-7", root, "train", format="official")
    small = load_split("AffectNet-7", root, "train", format="official", subset={"fraction": 0.1, "seed": 3})
    again = load_split("AffectNet-7", root, "train", format="official", subset={"fraction": 0.1, "seed": 3})
    other = stratified_subset(full, {"fraction": 0.1, "seed": 4})
    assert [s.id for s in small] == [s.id for s in again]
    assert [s.id for s in small] != [s.id for s in other]
    assert sorted(s.label for s in small) == [0, 0, 0, 0, 1, 1, 5]
    counted = stratified_subset(full, {"count": 14, "seed": 0})
    assert len(counted) == 14 and sorted(s.label for s in counted).count(0) == 8
    # the test split is never subsampled
    assert len(load_split("AffectNet-7", root, "train", subset=0.5)) == 35


# ---------------------------------------------------------------------------------------- RAF-DB
def test_rafdb_splits_and_one_based_labels(tmp_path):
    root = tmp_path / "RAF-DB"
    names = ["train_00001", "train_00002", "test_0001"]
    for n in names:
        p = root / "basic/Image/aligned" / f"{n}_aligned.jpg"
        p.parent.mkdir(parents=True, exist_ok=True)
        cv2.imwrite(str(p), np.zeros((30, 30, 3), np.uint8))
    write(root / "basic/EmoLabel/list_patition_label.txt", "train_00001.jpg 5\ntrain_00002.jpg 1\ntest_0001.jpg 7\n")
    train = load_split("RAF-DB", root, "train", format="official")
    test = load_split("RAF-DB", root, "test", format="official")
    assert [(s.id, cls("RAF-DB", s.label)) for s in train] == [("train_00001", "Sadness"), ("train_00002", "Surprise")]
    assert [(s.id, cls("RAF-DB", s.label)) for s in test] == [("test_0001", "Neutral")]
    assert read_image(test[0]).shape == (30, 30, 3)


# --------------------------------------------------------------------------------------- FERPlus
def test_ferplus_majority_vote_and_usage(tmp_path):
    root = tmp_path / "FERPlus"
    rows = [  # (usage, name, votes neutral..contempt,unknown,NF)
        ("Training", "fer0000000.png", [0, 9, 1, 0, 0, 0, 0, 0, 0, 0]),   # happiness
        ("Training", "", [10, 0, 0, 0, 0, 0, 0, 0, 0, 0]),                 # no face image: dropped
        ("Training", "fer0000002.png", [1, 0, 0, 0, 0, 0, 0, 0, 8, 1]),   # unknown majority: dropped
        ("PublicTest", "fer0000003.png", [0, 0, 0, 0, 0, 0, 0, 10, 0, 0]),
        ("PrivateTest", "fer0000004.png", [2, 0, 0, 0, 0, 0, 6, 0, 0, 2]),  # fear
        ("Training", "fer0000005.png", [0, 0, 0, 0, 0, 0, 0, 0, 0, 10]),  # not a face: dropped
    ]
    rng = np.random.default_rng(0)
    pixels = [rng.integers(0, 256, 48 * 48) for _ in rows]
    write(root / "fer2013/fer2013.csv", "emotion,pixels,Usage\n" + "".join(
        f"3,{' '.join(map(str, p))},{u}\n" for p, (u, _, _) in zip(pixels, rows)))
    write(root / "FERPlus/fer2013new.csv",
          "Usage,Image name,neutral,happiness,surprise,sadness,anger,disgust,fear,contempt,unknown,NF\n" + "".join(
              f"{u},{n},{','.join(map(str, v))}\n" for u, n, v in rows))
    train = load_split("FERPlus", root, "train", format="official")
    test = load_split("FERPlus", root, "test", format="official")
    val = load_split("FERPlus", root, "val", format="official")
    assert [(s.id, cls("FERPlus", s.label)) for s in train] == [("fer0000000", "Happiness")]
    assert [(s.id, cls("FERPlus", s.label)) for s in test] == [("fer0000004", "Fear")]
    assert [cls("FERPlus", s.label) for s in val] == ["Contempt"]
    img = read_image(test[0])
    assert img.shape == (48, 48, 3)
    assert np.array_equal(img[:, :, 0].ravel(), pixels[4]) and np.array_equal(img[:, :, 2], img[:, :, 0])
    assert ferplus_label([0] * 10) is None


@pytest.mark.parametrize("votes, label", [
    ([0, 9, 1, 0, 0, 0, 0, 0, 0, 0], 1),    # single votes are outliers: happiness 9 of 9
    ([4, 0, 0, 0, 1, 0, 0, 4, 1, 0], None),  # 4 of 8 after dropping single votes: no majority (plain argmax: 0)
    ([2, 0, 0, 0, 0, 0, 6, 0, 0, 2], 6),    # fear 6 of 10 > half
    ([5, 0, 0, 5, 0, 0, 0, 0, 0, 0], None),  # a tie is no majority
    ([3, 0, 0, 0, 0, 0, 1, 0, 6, 0], None),  # "unknown" wins: dropped
    ([1, 1, 1, 1, 1, 1, 1, 1, 1, 1], None),  # every vote is an outlier
])
def test_ferplus_official_majority_rule(votes, label):
    assert ferplus_label(votes) == label


def test_ferplus_official_folders_with_label_csv(tmp_path):
    """microsoft/FERPlus FER2013{Train,Valid,Test}/label.csv (name, face box, 10 votes) next to the PNGs."""
    import cv2

    root = tmp_path / "FERPlus"
    rows = {"FER2013Train": [("fer0000000.png", [0, 9, 1, 0, 0, 0, 0, 0, 0, 0]),
                             ("fer0000001.png", [4, 0, 0, 0, 1, 0, 0, 4, 1, 0])],
            "FER2013Valid": [("fer0028638.png", [0, 0, 0, 0, 0, 0, 0, 10, 0, 0])],
            "FER2013Test": [("fer0032220.png", [2, 0, 0, 0, 0, 0, 6, 0, 0, 2])]}
    for folder, items in rows.items():
        lines = []
        for name, votes in items:
            cv2.imwrite(str(write(root / folder / "x", "").with_name(name)), np.full((48, 48), 77, np.uint8))
            lines.append(f'{name},"(0, 0, 48, 48)",{",".join(map(str, votes))}\n')
        write(root / folder / "label.csv", "".join(lines))
    train = load_split("FERPlus", root, "train", format="official")
    assert [(s.id, cls("FERPlus", s.label)) for s in train] == [("fer0000000", "Happiness")]
    assert [cls("FERPlus", s.label) for s in load_split("FERPlus", root, "val", format="official")] == ["Contempt"]
    test = load_split("FERPlus", root, "test", format="official")
    assert [cls("FERPlus", s.label) for s in test] == ["Fear"]
    assert read_image(test[0]).shape == (48, 48, 3) and read_image(test[0])[0, 0, 0] == 77
    write(root / "FER2013Valid/label.csv", 'fer0028638.png,"(0, 0, 48, 48)",1,2,x,0,0,0,0,0,0,0\n')
    with pytest.raises(DataError, match=r"label\.csv:1: image fer0028638\.png: vote counts"):
        load_split("FERPlus", root, "val", format="official")


# ---------------------------------------------------------------------------------------- errors
def test_bad_lines_name_file_and_line(tmp_path):
    root = tmp_path / "DFEW"
    split = write(root / "EmoLabel_DataSplit/train(single-labeled)/train_set_1.csv",
                  "video_name,label\n00001,0\n00002\n00003,9\n00001,2\n00004,x\n")
    with pytest.raises(DataError, match=r"train_set_1\.csv:3: malformed line"):
        load_split("DFEW", root, "train", 1)
    problems = []
    samples = load_split("DFEW", root, "train", 1, problems=problems)
    assert [s.id for s in samples] == ["00001"]
    text = [str(p) for p in problems]
    assert [t.split(": ", 1)[0].rsplit(":", 1)[1] for t in text] == ["3", "4", "5", "6"]
    assert "clip 00003: unknown label '9'" in text[1] and "duplicate id '00001'" in text[2]
    assert "clip 00004: label 'x' is not an integer" in text[3]  # the id, not only file:line
    with pytest.raises(DataError, match="split/annotation file not found"):
        load_split("DFEW", root, "test", 1)


def test_unknown_emotion_name_in_official_files(tmp_path):
    root = tmp_path / "MAFW"
    write(root / "anno/single/no_caption/set_1/train.txt", "00001.mp4 anger\n00002.mp4 joy\n")
    with pytest.raises(DataError, match=r"train\.txt:2: clip 00002: unknown emotion 'joy'"):
        load_split("MAFW", root, "train", 1, format="official", videos="data/clips")
