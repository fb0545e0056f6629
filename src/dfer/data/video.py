"""Video decoding behind one small interface: decord (fast random access) with a PyAV fallback.

decord 0.6 is unmaintained and has known traps (workflow-conventions.md §6), so:
- frame counts come from what can be decoded: decord's ``len(vr)`` is cross-checked against the number of
  video packets PyAV demuxes (cheap, no decoding) and the smaller wins, because ``get_batch`` hangs forever
  when a container over-reports its frame count and an index reaches the end (decord #373);
- one ``VideoReader`` per call with ``num_threads=1`` (no shared readers across DataLoader workers, no
  background decode threads eating memory, decord #157/#208);
- every failure becomes a :class:`DataError` naming the file and the fix (usually: re-encode to H.264).
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Sequence

import numpy as np

from dfer.data.errors import DataError

BACKENDS = ("auto", "decord", "pyav")
REENCODE_FIX = ("re-encode it to constant-frame-rate H.264, e.g. "
                "`ffmpeg -i IN -c:v libx264 -pix_fmt yuv420p -r 25 OUT.mp4`, or remove it from the split file")


def _check_file(path: Path) -> None:
    if not path.exists():
        raise DataError(path, "video file not found", "check the dataset root/`videos` entry in params.yaml")
    if not path.is_file():
        raise DataError(path, "is not a file (expected a video)", "point `videos` at the folder of video files")
    if path.stat().st_size == 0:
        raise DataError(path, "video file is empty (0 bytes)", "copy the file again from the dataset release")


def _check_backend(backend: str) -> None:
    if backend not in BACKENDS:
        raise ValueError(f"unknown video backend {backend!r}; use one of {BACKENDS}")


# --------------------------------------------------------------------------------------------- PyAV
def _pyav_packet_count(path: Path) -> int:
    """Number of video packets with data (= frames for the codecs in the FER datasets), demux only."""
    import av

    with av.open(str(path)) as container:
        if not container.streams.video:
            raise DataError(path, "has no video stream", REENCODE_FIX)
        stream = container.streams.video[0]
        return sum(1 for packet in container.demux(stream) if packet.size > 0)


def _pyav_read(path: Path, indices: Sequence[int] | None) -> np.ndarray:
    import av

    with av.open(str(path)) as container:
        if not container.streams.video:
            raise DataError(path, "has no video stream", REENCODE_FIX)
        stream = container.streams.video[0]
        wanted = None if indices is None else set(int(i) for i in indices)
        last = None if indices is None else max(wanted)
        frames: dict[int, np.ndarray] = {}
        for i, frame in enumerate(container.decode(stream)):
            if wanted is None or i in wanted:
                frames[i] = frame.to_ndarray(format="rgb24")
            if last is not None and i >= last:
                break
    if indices is None:
        if not frames:
            raise DataError(path, "no decodable video frames", REENCODE_FIX)
        return np.stack([frames[i] for i in range(len(frames))])
    missing = sorted(wanted - set(frames))
    if missing:
        raise DataError(path, f"frame {missing[0]} requested but only {len(frames)} frames decode", REENCODE_FIX)
    return np.stack([frames[int(i)] for i in indices])


# ------------------------------------------------------------------------------------------- decord
def _decord_reader(path: Path):
    import decord

    decord.logging.set_level(decord.logging.QUIET)  # FFmpeg's own messages: our DataError says it better
    return decord.VideoReader(str(path), ctx=decord.cpu(0), num_threads=1)


def _decord_count(path: Path) -> int:
    reader = _decord_reader(path)
    n = len(reader)
    del reader
    try:  # guard against containers that over-report their frame count (decord #373)
        n = min(n, _pyav_packet_count(path))
    except Exception:  # PyAV missing or unable to demux: decord's count is all we have
        pass
    return n


def _decord_read(path: Path, indices: Sequence[int] | None, n_frames: int | None = None) -> np.ndarray:
    n = n_frames if n_frames is not None else _decord_count(path)
    if n <= 0:
        raise DataError(path, "no decodable video frames", REENCODE_FIX)
    idx = list(range(n)) if indices is None else [int(i) for i in indices]
    bad = [i for i in idx if i < 0 or i >= n]
    if bad:
        raise DataError(path, f"frame index {bad[0]} out of range: the video has {n} decodable frames",
                        "sample indices from count_frames(path)")
    reader = _decord_reader(path)
    try:
        frames = reader.get_batch(idx).asnumpy()
    finally:
        del reader
    return frames


# ------------------------------------------------------------------------------------------- public
def count_frames(path: str | os.PathLike, backend: str = "auto") -> int:
    """Number of decodable frames of a video (decord count guarded by PyAV's packet count)."""
    _check_backend(backend)
    path = Path(path)
    _check_file(path)
    errors = []
    for name in (["decord", "pyav"] if backend == "auto" else [backend]):
        try:
            n = _decord_count(path) if name == "decord" else _pyav_packet_count(path)
        except DataError:
            raise
        except Exception as exc:  # decord/PyAV errors have no common base class
            errors.append(f"{name}: {type(exc).__name__}: {exc}".strip())
            continue
        if n <= 0:
            raise DataError(path, "video has no frames", REENCODE_FIX)
        return n
    raise DataError(path, "corrupt or undecodable video: cannot open it (" + "; ".join(errors) + ")",
                    REENCODE_FIX)


def read_frames(path: str | os.PathLike, indices: Sequence[int] | None = None,
                backend: str = "auto", n_frames: int | None = None) -> np.ndarray:
    """Decode frames ``indices`` (all when None; repeats allowed) as ``uint8[T,H,W,3]`` RGB.

    ``backend="auto"`` tries decord and falls back to PyAV when decord cannot open or decode the file.
    ``n_frames``: the file's ``count_frames`` when already known (saves re-counting).
    """
    _check_backend(backend)
    path = Path(path)
    _check_file(path)
    if indices is not None and len(indices) == 0:
        raise ValueError("read_frames: indices is empty")
    errors = []
    for name in (["decord", "pyav"] if backend == "auto" else [backend]):
        try:
            frames = (_decord_read(path, indices, n_frames) if name == "decord"
                      else _pyav_read(path, indices))
        except DataError as exc:
            if backend != "auto" or name == "pyav":
                raise
            errors.append(f"{name}: {exc.message}")
            continue
        except Exception as exc:
            errors.append(f"{name}: {type(exc).__name__}: {exc}".strip())
            continue
        if frames.ndim != 4 or frames.shape[-1] != 3 or frames.shape[0] == 0:
            raise DataError(path, f"decoded frames have shape {frames.shape}, expected [T,H,W,3]", REENCODE_FIX)
        return np.ascontiguousarray(frames, dtype=np.uint8)
    raise DataError(path, "corrupt or undecodable video (" + "; ".join(errors) + ")", REENCODE_FIX)


def write_video(path: str | os.PathLike, frames: np.ndarray, fps: int = 25, codec: str = "libx264") -> Path:
    """Write ``uint8[T,H,W,3]`` RGB frames as an H.264 mp4 (yuv420p; H and W must be even)."""
    import av

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    t, h, w, _ = frames.shape
    with av.open(str(path), "w") as container:
        stream = container.add_stream(codec, rate=fps)
        stream.width, stream.height, stream.pix_fmt = w, h, "yuv420p"
        for frame in frames:
            for packet in stream.encode(av.VideoFrame.from_ndarray(np.ascontiguousarray(frame), format="rgb24")):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    return path
