"""Video decoding (decord + PyAV fallback) and frame-folder clips on real files made here."""
from pathlib import Path

import cv2
import numpy as np
import pytest

from dfer.data import video
from dfer.data.annotations import Sample
from dfer.data.clips import list_frames, open_clip
from dfer.data.errors import DataError

N_FRAMES = 24


def ramp_frames(n=N_FRAMES, h=64, w=64):
    """Frame i is a flat gray image of intensity 10*i: decoded content identifies the frame."""
    frames = np.zeros((n, h, w, 3), np.uint8)
    frames[:] = (np.arange(n) * 10).astype(np.uint8)[:, None, None, None]
    return frames


def frame_ids(frames):
    return np.round(frames[:, 8:-8, 8:-8].mean(axis=(1, 2, 3)) / 10).astype(int).tolist()


@pytest.fixture(scope="module")
def clip_mp4(tmp_path_factory):
    return video.write_video(tmp_path_factory.mktemp("v") / "clip.mp4", ramp_frames())


@pytest.mark.parametrize("backend", ["decord", "pyav", "auto"])
def test_count_and_random_access_decode_the_right_frames(clip_mp4, backend):
    assert video.count_frames(clip_mp4, backend) == N_FRAMES
    idx = [0, 5, 23, 5, 12]
    frames = video.read_frames(clip_mp4, idx, backend)
    assert frames.shape == (5, 64, 64, 3) and frames.dtype == np.uint8
    assert frame_ids(frames) == idx


def test_all_frames_when_no_indices(clip_mp4):
    assert frame_ids(video.read_frames(clip_mp4)) == list(range(N_FRAMES))


def test_auto_falls_back_to_pyav_where_decord_fails(tmp_path):
    # decord 0.6 cannot copy frames whose width is not 32-aligned (48 px here); PyAV can.
    path = video.write_video(tmp_path / "narrow.mp4", ramp_frames(12, 64, 48))
    with pytest.raises(DataError, match="narrow.mp4"):
        video.read_frames(path, [0, 1], backend="decord")
    assert frame_ids(video.read_frames(path, [0, 11, 3], backend="auto")) == [0, 11, 3]


def test_index_past_the_end_names_the_file(clip_mp4):
    with pytest.raises(DataError, match=r"clip\.mp4.*out of range.*24 decodable"):
        video.read_frames(clip_mp4, [0, N_FRAMES], backend="decord")


@pytest.mark.parametrize("make, message", [
    (lambda p, good: p.write_bytes(good.read_bytes()[:400]), "corrupt or undecodable"),
    (lambda p, good: p.write_bytes(b""), "empty"),
    (lambda p, good: p.write_bytes(b"\x00junk" * 200), "corrupt or undecodable"),
    (lambda p, good: None, "not found"),
])
def test_bad_videos_raise_data_error_naming_file_and_fix(tmp_path, clip_mp4, make, message):
    bad = tmp_path / "bad_clip.mp4"
    make(bad, clip_mp4)
    with pytest.raises(DataError) as info:
        video.read_frames(bad, [0])
    text = str(info.value)
    assert "bad_clip.mp4" in text and message in text and "fix:" in text
    assert isinstance(info.value, ValueError)


def test_count_frames_rejects_corrupt_file(tmp_path, clip_mp4):
    bad = tmp_path / "trunc.mp4"
    bad.write_bytes(clip_mp4.read_bytes()[:400])
    with pytest.raises(DataError, match="trunc.mp4"):
        video.count_frames(bad)


def _frame_folder(folder: Path, n: int, ext=".jpg"):
    folder.mkdir(parents=True)
    for i in range(1, n + 1):  # 1.jpg .. n.jpg, as in DFEW clip_224x224_16f
        cv2.imwrite(str(folder / f"{i}{ext}"), np.full((32, 32, 3), i * 10, np.uint8))


def test_frame_folder_natural_and_lexicographic_order(tmp_path):
    _frame_folder(tmp_path / "00001", 12)
    assert [p.stem for p in list_frames(tmp_path / "00001")] == [str(i) for i in range(1, 13)]
    assert [p.stem for p in list_frames(tmp_path / "00001", "lexicographic")][:4] == ["1", "10", "11", "12"]
    nat = Sample("00001", 0, tmp_path / "00001", "frames", "DFEW", "x.csv:2")
    lex = Sample("00001", 0, tmp_path / "00001", "frames", "DFEW", "x.csv:2", frame_order="lexicographic")
    clip = open_clip(nat)
    assert len(clip) == 12
    assert frame_ids(clip.get([0, 1, 11])) == [1, 2, 12]
    assert frame_ids(open_clip(lex).get([0, 1, 11])) == [1, 10, 9]
    assert clip.get([3], size=(20, 16)).shape == (1, 20, 16, 3)


def test_video_and_frame_clips_share_one_interface(tmp_path, clip_mp4):
    _frame_folder(tmp_path / "f", 5, ".png")
    for sample, n in [(Sample("v", 0, clip_mp4, "video", "MAFW", "a:1"), N_FRAMES),
                      (Sample("f", 0, tmp_path / "f", "frames", "MAFW", "a:1"), 5)]:
        clip = open_clip(sample)
        assert len(clip) == n
        assert clip.get([0, n - 1]).shape[0] == 2
        with pytest.raises(DataError, match="out of range"):
            clip.get([n])


def test_missing_empty_and_corrupt_frame_folders(tmp_path):
    with pytest.raises(DataError, match="frame folder not found"):
        open_clip(Sample("x", 0, tmp_path / "nope", "frames", "DFEW", "a:1"))
    (tmp_path / "empty").mkdir()
    with pytest.raises(DataError, match="empty"):
        open_clip(Sample("x", 0, tmp_path / "empty", "frames", "DFEW", "a:1"))
    _frame_folder(tmp_path / "c", 3)
    (tmp_path / "c" / "2.jpg").write_bytes(b"not a jpeg")
    clip = open_clip(Sample("c", 0, tmp_path / "c", "frames", "DFEW", "a:1"))
    with pytest.raises(DataError, match=r"2\.jpg: unreadable or corrupt image"):
        clip.get([0, 1, 2])


def test_truncated_download_is_counted_from_what_is_there_and_reported(tmp_path):
    # moov atom first (faststart), tail cut off: the index still promises 40 frames.
    import av

    path = tmp_path / "faststart.mp4"
    rng = np.random.default_rng(0)
    with av.open(str(path), "w", options={"movflags": "faststart"}) as c:
        s = c.add_stream("libx264", rate=25)
        s.width = s.height = 64
        s.pix_fmt = "yuv420p"
        for f in rng.integers(0, 255, (40, 64, 64, 3), dtype=np.uint8):
            for p in s.encode(av.VideoFrame.from_ndarray(f, format="rgb24")):
                c.mux(p)
        for p in s.encode():
            c.mux(p)
    cut = tmp_path / "cut.mp4"
    cut.write_bytes(path.read_bytes()[: int(path.stat().st_size * 0.6)])
    n = video.count_frames(cut)
    assert 0 < n < 40
    assert video.read_frames(cut, [0, 1]).shape == (2, 64, 64, 3)
    with pytest.raises(DataError, match=r"cut\.mp4: corrupt or undecodable video"):
        video.read_frames(cut)  # what check-data does: every frame must decode
