"""`dfer check-data` reports every bad item and line of a dataset at once."""
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np

from dfer.data import video
from dfer.data.check import main

ROOT = Path(__file__).resolve().parents[1]


def dfew_layout(root: Path, n=4):
    for i in range(1, n + 1):
        folder = root / "Clip/clip_224x224_16f" / f"{i:05d}"
        folder.mkdir(parents=True)
        for f in range(1, 5):
            cv2.imwrite(str(folder / f"{f}.jpg"), np.full((32, 32, 3), 20 * f, np.uint8))
    for split in ("train", "test"):
        d = root / f"EmoLabel_DataSplit/{split}(single-labeled)"
        d.mkdir(parents=True, exist_ok=True)
        ids = [1, 2] if split == "train" else [3, 4]
        (d / f"{split}_set_1.csv").write_text("video_name,label\n" + "".join(f"{i:05d},{i % 7}\n" for i in ids))


def mafw_layout(root: Path):
    for i in (1, 2, 3):
        video.write_video(root / f"data/clips/{i:05d}.mp4", np.full((6, 32, 32, 3), 40 * i, np.uint8))
    d = root / "anno/single/no_caption/set_1"
    d.mkdir(parents=True)
    (d / "train.csv").write_text("video_name,labels\n00001,0\n00002,10\n")
    (d / "test.csv").write_text("video_name,labels\n00003,4\n")


def run(capsys, *args):
    rc = main(["--params", str(ROOT / "params.yaml"), "--no-progress", *args])
    out = capsys.readouterr()
    return rc, out.out + out.err


def test_clean_dataset_passes_with_a_one_line_summary(tmp_path, capsys):
    dfew_layout(tmp_path / "DFEW")
    rc, out = run(capsys, "DFEW", "--fold", "1", "--set", f"data.datasets.DFEW.root={tmp_path / 'DFEW'}")
    assert rc == 0
    assert out.strip() == "DFEW: ok — 2 split file(s), 4 samples, 4 items checked"


def test_corrupt_video_and_malformed_line_are_both_reported(tmp_path, capsys):
    root = tmp_path / "MAFW"
    mafw_layout(root)
    bad_video = root / "data/clips/00002.mp4"
    bad_video.write_bytes(bad_video.read_bytes()[:300])
    split = root / "anno/single/no_caption/set_1/train.csv"
    split.write_text(split.read_text() + "00009;3\n")
    rc, out = run(capsys, "MAFW", "--fold", "1", "--set", f"data.datasets.MAFW.root={root}",
                  "data.datasets.MAFW.frames=null")
    assert rc == 1
    assert f"{split}:4: malformed line" in out
    assert f"{bad_video} (listed at {split}:3): corrupt or undecodable video" in out
    assert "2 problem(s)" in out and out.count("fix:") == 2


def test_every_kind_of_problem_in_one_report(tmp_path, capsys):
    root = tmp_path / "DFEW"
    dfew_layout(root, n=6)
    frames = root / "Clip/clip_224x224_16f"
    for f in (frames / "00002").iterdir():
        f.unlink()                                             # empty folder
    (frames / "00003/2.jpg").write_bytes(b"\xff\xd8broken")  # corrupt jpeg
    train = root / "EmoLabel_DataSplit/train(single-labeled)/train_set_1.csv"
    train.write_text("video_name,label\n00001,1\n00002,2\n00003,3\n00099,1\n00005,12\n00001,4\n")
    rc, out = run(capsys, "DFEW", "--fold", "1", "--split", "train", "--set", f"data.datasets.DFEW.root={root}")
    assert rc == 1
    expected = [f"{train}:6: clip 00005: unknown label '12'", f"{train}:7: duplicate id '00001'",
                f"{frames / '00002'} (listed at {train}:3): frame folder is empty",
                f"{frames / '00003/2.jpg'} (listed at {train}:4): unreadable or corrupt image",
                f"{frames / '00099'} (listed at {train}:5): frame folder not found"]
    for line in expected:
        assert line in out, line
    assert "5 problem(s)" in out


def test_too_few_frames_and_missing_split_file(tmp_path, capsys):
    root = tmp_path / "DFEW"
    dfew_layout(root)
    (root / "EmoLabel_DataSplit/test(single-labeled)/test_set_1.csv").unlink()
    rc, out = run(capsys, "DFEW", "--fold", "1", "--min-frames", "8", "--set", f"data.datasets.DFEW.root={root}")
    assert rc == 1
    assert "test_set_1.csv: split/annotation file not found" in out
    assert out.count("too few frames: 4 < 8") == 2


def test_cli_entry_point_without_traceback(tmp_path):
    proc = subprocess.run([sys.executable, "-m", "dfer.cli", "check-data", "DFEW", "--fold", "1",
                           "--set", f"data.datasets.DFEW.root={tmp_path / 'missing'}"],
                          cwd=ROOT, capture_output=True, text=True)
    assert proc.returncode == 1 and "Traceback" not in proc.stderr
    assert "dataset root of DFEW not found" in proc.stdout and "dfer synth" in proc.stdout


def test_ferplus_publictest_is_checked_too(tmp_path, capsys):
    """FERPlus has three official splits: a bad PublicTest (FER2013Valid) line is reported with its image id."""
    root = tmp_path / "FERPlus"
    for folder, line in (("FER2013Train", '{n},"(0, 0, 48, 48)",0,10,0,0,0,0,0,0,0,0\n'),
                         ("FER2013Valid", '{n},"(0, 0, 48, 48)",0,10,0,0,0,0,0,0,x,0\n'),
                         ("FER2013Test", '{n},"(0, 0, 48, 48)",10,0,0,0,0,0,0,0,0,0\n')):
        (root / folder).mkdir(parents=True)
        name = f"{folder.lower()}.png"
        cv2.imwrite(str(root / folder / name), np.full((48, 48), 90, np.uint8))
        (root / folder / "label.csv").write_text(line.format(n=name))
    rc, out = run(capsys, "FERPlus", "--set", f"data.datasets.FERPlus.root={root}")
    assert rc == 1
    assert "FERPlus: 1 problem(s) — 3 split file(s), 2 samples, 2 items checked" in out
    assert "FER2013Valid/label.csv:1: image fer2013valid.png: vote counts" in out


def afew_layout(root: Path):
    """AFEW 7.0: Train/<Emotion>/<clip>.avi and Val/<Emotion>/<clip>.avi."""
    for split, emotion, clip in (("Train", "Happy", "000101"), ("Train", "Angry", "000102"), ("Val", "Sad", "000201")):
        video.write_video(root / split / emotion / f"{clip}.avi", np.full((6, 32, 32, 3), 60, np.uint8))


def test_afew_clean_then_every_bad_item_named(tmp_path, capsys):
    from dfer.data.annotations import load_split

    root = tmp_path / "AFEW"
    afew_layout(root)
    rc, out = run(capsys, "AFEW", "--set", f"data.datasets.AFEW.root={root}")
    assert rc == 0 and out.startswith("AFEW: ok"), out
    train = load_split("AFEW", root, "train", format="official")
    assert [(s.id, s.label, s.kind) for s in train] == [("Angry/000102", 0, "video"), ("Happy/000101", 3, "video")]
    assert [s.id for s in load_split("AFEW", root, "test", format="official")] == ["Sad/000201"]
    # A misspelt emotion folder, a corrupt clip and an empty emotion folder: all three in one report.
    video.write_video(root / "Train" / "Happiness" / "000103.avi", np.full((6, 32, 32, 3), 60, np.uint8))
    bad = root / "Train" / "Angry" / "000102.avi"
    bad.write_bytes(bad.read_bytes()[:200])
    (root / "Val" / "Fear").mkdir()
    rc, out = run(capsys, "AFEW", "--set", f"data.datasets.AFEW.root={root}")
    assert rc == 1
    assert f"{root / 'Train' / 'Happiness'}: unknown emotion folder 'Happiness'" in out
    assert str(bad) in out and f"{root / 'Val' / 'Fear'}: no video files" in out


def test_synthetic_afew_has_the_layout_the_adapter_reads(tmp_path):
    from dfer.config import deep_merge, load_params
    from dfer.data.annotations import load_split
    from dfer.data.synth.generate import generate

    synth = deep_merge(load_params(ROOT / "params.yaml")["synth"], {"afew": {"clips": 28, "width": 64, "height": 48,
                                                                            "frames": [6, 8]}})
    generate(tmp_path, ["AFEW"], 1, synth, progress=False)
    train = load_split("AFEW", tmp_path / "AFEW", "train", format="official")
    val = load_split("AFEW", tmp_path / "AFEW", "test", format="official")
    assert len(train) + len(val) == 28 and len(val) >= 7
    assert {s.label for s in train} == set(range(7)) and all(s.path.suffix == ".avi" for s in train)
    assert all((tmp_path / "AFEW" / "_groundtruth" / f"{s.id.replace('/', '__')}.json").is_file() for s in val)
