"""Torch datasets for video clips (DFER) and still images (SFER), with the paper's sampling protocol.

Items are dicts: ``video`` float[3,T,H,W] ImageNet-normalised (T=1 for images), ``label`` (model-order
index), ``index`` (index of the sample in ``samples``), ``view`` (test view number), and ``lmk``
float[T,C,14,14] read from the landmark-feature cache when one is given and the frames are not moved by
augmentation (otherwise the engine computes landmark features on the fly).
"""
from __future__ import annotations

import os
from collections import Counter
from pathlib import Path
from typing import Sequence

import numpy as np
import torch
from torch.utils.data import Dataset, WeightedRandomSampler

from dfer.data.annotations import VIDEO_DATASETS, Sample, cache_name, load_dataset_entry
from dfer.data.clips import open_clip, read_image
from dfer.data.errors import DataError
from dfer.data.sampling import dynamic_indices, interpolated_indices, test_clips, train_indices
from dfer.data.transforms import ClipAugment, resize_frames, spatial_crops, to_normalized_tensor

MODES = ("train", "test")
# dense: the official S2D window; interpolate: the whole video resampled to num_frames (NR-DFERNet's TI);
# dynamic: NR-DFERNet's U segments x V frames (DS)
SAMPLERS = ("dense", "interpolate", "dynamic")
FEATURE_FIX = "run `dfer extract-features` for this dataset (or set data.features: null)"


def _item_rng() -> np.random.Generator:
    # Drawn from torch's RNG: seeded per DataLoader worker and epoch, advancing in the main process.
    return np.random.default_rng(int(torch.randint(0, 2**62, (1,)).item()))


class _FeatureCache:
    """``<dir>/<clip id with / -> __>.npy``: float16 [T_all, C, 14, 14] landmark features per frame."""

    def __init__(self, directory: str | os.PathLike):
        self.dir = Path(directory)

    def path(self, sample: Sample) -> Path:
        return self.dir / f"{cache_name(sample.id)}.npy"

    def get(self, sample: Sample, indices: Sequence[int]) -> torch.Tensor:
        path = self.path(sample)
        if not path.is_file():
            raise DataError(path, f"no cached landmark features for {sample.id}", FEATURE_FIX)
        try:
            feats = np.load(path, mmap_mode="r")
        except (ValueError, OSError) as exc:
            raise DataError(path, f"corrupt feature cache file ({exc})", "delete it and " + FEATURE_FIX) from exc
        if feats.ndim == 3:  # an image stored without its T axis
            feats = feats[None]
        if feats.ndim != 4 or max(indices) >= feats.shape[0]:
            raise DataError(path, f"cached features have shape {tuple(feats.shape)}, frame {max(indices)} "
                            "needed", "the clip changed since the cache was written: delete it and " + FEATURE_FIX)
        return torch.from_numpy(np.ascontiguousarray(feats[np.asarray(indices)], dtype=np.float32))


FRAME_CACHE_ENV = "DFER_FRAME_CACHE_MB"
DEFAULT_FRAME_CACHE_MB = 1024


class DecodedFrames:
    """Decoded, resized training frames kept across epochs, up to a memory budget (``DFER_FRAME_CACHE_MB``,
    default 1024 per dataset; 0 turns it off).

    A training run decoded the same JPEGs every epoch: about half of its data-loading CPU (60 % for 224-px frames
    read at 112 px, ``benchmarks/bench_decode.py``), 8-10 % of a synthetic training run's wall time.
    Decoding and resizing are deterministic, so a kept frame equals a freshly decoded one and no result changes
    (``tests/test_datasets.py``).
    Only the main process keeps frames: DataLoader workers (``num_workers > 0``, the paper preset) are re-created
    every epoch and would each hold a copy. Frames past the budget are decoded as before, never evicted."""

    def __init__(self):
        self.budget = int(float(os.environ.get(FRAME_CACHE_ENV, DEFAULT_FRAME_CACHE_MB)) * 2 ** 20)
        self.used = 0
        self.frames: dict[tuple[str, object], np.ndarray] = {}
        self.lengths: dict[str, int] = {}

    @property
    def active(self) -> bool:
        return self.budget > 0 and torch.utils.data.get_worker_info() is None

    def keep(self, key: tuple[str, object], frame: np.ndarray) -> None:
        if self.used + frame.nbytes <= self.budget:
            frame.flags.writeable = False          # a kept frame is shared by every later epoch
            self.frames[key] = frame
            self.used += frame.nbytes

    def clip_frames(self, sample: Sample, pick, size: tuple[int, int]) -> tuple[np.ndarray, np.ndarray]:
        """``(uint8[T,H,W,3] frames, indices)`` of a frame-folder clip, ``indices = pick(number of frames)``;
        the folder is listed once and only frames not kept yet are decoded."""
        path = str(sample.path)
        clip = None
        if path not in self.lengths:
            clip = open_clip(sample)
            self.lengths[path] = len(clip)
        indices = pick(self.lengths[path])
        missing = [i for i in dict.fromkeys(int(i) for i in indices) if (path, i) not in self.frames]
        decoded = {}
        if missing:
            clip = open_clip(sample) if clip is None else clip
            decoded = dict(zip(missing, clip.get(missing, size=size)))
            for i, frame in decoded.items():
                self.keep((path, i), frame)
        frames = np.stack([decoded[i] if i in decoded else self.frames[(path, i)] for i in map(int, indices)])
        return frames, indices

    def image(self, sample: Sample, size: tuple[int, int]) -> np.ndarray:
        key = (str(sample.path), sample.id)
        if key not in self.frames:
            frame = read_image(sample, size)
            self.keep(key, frame)
            return frame
        return self.frames[key]


class VideoClipDataset(Dataset):
    """Clips of ``num_frames`` frames; ``mode="test"`` expands each sample into temporal x spatial views.

    ``augment``: the run config's ``train.augment`` dict (hflip, random_resized_crop, rand_augment,
    random_erasing; mixup/cutmix are batch ops for the engine), used in train mode only.
    ``resize``: ``square`` (the official loader: every frame to input_size x input_size) or ``short_side``.
    """

    def __init__(self, samples: Sequence[Sample], num_frames: int = 16, sampling_rate: int = 1,
                 input_size: int = 224, mode: str = "train", augment: dict | None = None,
                 test_views: dict | None = None, feature_cache: str | os.PathLike | None = None,
                 resize: str = "square", backend: str = "auto", sampler: str = "dense", segments: int = 8):
        if mode not in MODES:
            raise ValueError(f"mode must be one of {MODES}, got {mode!r}")
        self.samples = list(samples)
        self.num_frames, self.sampling_rate, self.input_size = num_frames, sampling_rate, input_size
        self.mode, self.resize, self.backend = mode, resize, backend
        if sampler not in SAMPLERS:
            raise ValueError(f"data.sampler must be one of {SAMPLERS}, got {sampler!r}")
        if sampler == "dynamic" and num_frames % segments:
            raise ValueError(f"dynamic sampling: num_frames {num_frames} is not segments ({segments}) x frames each")
        self.sampler, self.segments = sampler, int(segments)
        views = {"temporal": 2, "spatial": 2, **(test_views or {})}
        if sampler != "dense":  # one view spans the whole video
            views["temporal"] = 1
        self.n_temporal, self.n_spatial = (int(views["temporal"]), int(views["spatial"])) if mode == "test" \
            else (1, 1)
        # After the official square resize every spatial crop is the whole frame: the crops are identical, so
        # one is computed (the mean over identical views is the same number, at a fraction of the cost).
        self.requested_spatial = self.n_spatial
        if resize == "square":
            self.n_spatial = 1
        self.augment = ClipAugment.from_dict(input_size, augment if mode == "train" else None)
        self.features = _FeatureCache(feature_cache) if feature_cache else None
        self.decoded = DecodedFrames() if mode == "train" and resize == "square" else None

    @property
    def uses_feature_cache(self) -> bool:
        """Cached features match the frames only when augmentation does not move them."""
        return self.features is not None and not self.augment.geometric and self.resize == "square"

    @property
    def views_per_sample(self) -> int:
        return self.n_temporal * self.n_spatial

    @property
    def labels(self) -> list[int]:
        return [s.label for s in self.samples]

    def __len__(self) -> int:
        return len(self.samples) * self.views_per_sample

    def view_of(self, index: int) -> tuple[int, int, int]:
        """Item index -> (sample index, temporal view, spatial view)."""
        sample_index, view = divmod(index, self.views_per_sample)
        return sample_index, view // self.n_spatial, view % self.n_spatial

    def frame_indices(self, n_frames: int, temporal_view: int = 0) -> np.ndarray:
        if self.mode != "train":
            return test_clips(n_frames, self.num_frames, self.sampler, self.n_temporal, self.sampling_rate,
                              self.segments)[temporal_view]
        if self.sampler == "dynamic":
            return dynamic_indices(n_frames, self.segments, self.num_frames // self.segments, _item_rng())
        if self.sampler == "interpolate":
            return interpolated_indices(n_frames, self.num_frames)
        return train_indices(n_frames, self.num_frames, self.sampling_rate, _item_rng())

    def __getitem__(self, index: int) -> dict:
        sample_index, t_view, s_view = self.view_of(index)
        sample = self.samples[sample_index]
        size = (self.input_size, self.input_size) if self.resize == "square" else None
        if self.decoded is not None and self.decoded.active and sample.kind == "frames":
            frames, indices = self.decoded.clip_frames(sample, lambda n: self.frame_indices(n, t_view), size)
        else:
            clip = open_clip(sample, backend=self.backend)
            indices = self.frame_indices(len(clip), t_view)
            frames = clip.get(indices, size=size)
        if self.mode == "train":
            if self.resize != "square":
                frames = spatial_crops(resize_frames(frames, self.input_size, self.resize), self.input_size, 1)[0]
            video = self.augment(frames, _item_rng())
        else:
            frames = resize_frames(frames, self.input_size, self.resize)
            frames = spatial_crops(frames, self.input_size, self.n_spatial)[s_view]
            video = to_normalized_tensor(frames).permute(1, 0, 2, 3).contiguous()
        item = {"video": video, "label": sample.label, "index": sample_index,
                "view": t_view * self.n_spatial + s_view}
        if self.uses_feature_cache:
            item["lmk"] = self.features.get(sample, indices)
        return item


class ImageDataset(Dataset):
    """Still images (SFER) with the same item dict as ``VideoClipDataset`` and T=1."""

    def __init__(self, samples: Sequence[Sample], input_size: int = 224, mode: str = "train",
                 augment: dict | None = None, feature_cache: str | os.PathLike | None = None):
        if mode not in MODES:
            raise ValueError(f"mode must be one of {MODES}, got {mode!r}")
        self.samples = list(samples)
        self.input_size, self.mode = input_size, mode
        self.augment = ClipAugment.from_dict(input_size, augment if mode == "train" else None)
        self.features = _FeatureCache(feature_cache) if feature_cache else None
        self.views_per_sample = 1
        self.decoded = DecodedFrames() if mode == "train" else None

    @property
    def uses_feature_cache(self) -> bool:
        return self.features is not None and not self.augment.geometric

    @property
    def labels(self) -> list[int]:
        return [s.label for s in self.samples]

    def __len__(self) -> int:
        return len(self.samples)

    def __getitem__(self, index: int) -> dict:
        sample = self.samples[index]
        size = (self.input_size, self.input_size)
        if self.decoded is not None and self.decoded.active:
            frames = self.decoded.image(sample, size)[None].copy()     # kept read-only; augmentation may write
        else:
            frames = read_image(sample, size)[None]
        if self.mode == "train":
            video = self.augment(frames, _item_rng())
        else:
            video = to_normalized_tensor(frames).permute(1, 0, 2, 3).contiguous()
        item = {"video": video, "label": sample.label, "index": index, "view": 0}
        if self.uses_feature_cache:
            item["lmk"] = self.features.get(sample, [0])
        return item


def balanced_sampler(labels: Sequence[int], num_samples: int | None = None,
                     generator: torch.Generator | None = None) -> WeightedRandomSampler:
    """Class-balanced oversampling (S2D's ``--use_bds`` ImbalancedDatasetSampler): weight 1/class count."""
    counts = Counter(int(y) for y in labels)
    if not counts:
        raise ValueError("balanced_sampler: no labels")
    weights = torch.tensor([1.0 / counts[int(y)] for y in labels], dtype=torch.double)
    return WeightedRandomSampler(weights, num_samples or len(weights), replacement=True, generator=generator)


def run_dataset(data: dict, dataset: str, split: str, fold: int | None, mode: str, augment: dict | None = None,
                base: str | os.PathLike | None = None) -> Dataset:
    """The dataset of one split as a run config's ``data`` section describes it (the dataset entry, sampling,
    test views, landmark feature cache); ``augment`` (the run's ``train.augment``) in train mode. Relative
    roots and the feature cache are taken from ``base`` (the project root)."""
    samples = load_dataset_entry(dataset, data, split, fold, base=base)
    features = data["features"]
    if features and base is not None and not os.path.isabs(features):
        features = str(Path(base) / features)
    augment = augment if mode == "train" else None
    if dataset in VIDEO_DATASETS:
        return VideoClipDataset(samples, num_frames=int(data["num_frames"]), sampling_rate=int(data["sampling_rate"]),
                                input_size=int(data["input_size"]), mode=mode, augment=augment,
                                test_views=data["test_views"], feature_cache=features, backend=data["video_backend"],
                                sampler=data["sampler"], segments=int(data["segments"]))
    return ImageDataset(samples, input_size=int(data["input_size"]), mode=mode, augment=augment,
                        feature_cache=features)


class JointDataset(Dataset):
    """UniLearn's joint fine-tuning set: the DFER clips (indices ``0..len(videos)-1``, ``task`` 0) then the SFER
    images (``task`` 1); a :class:`dfer.engine.loop.JointBatchSampler` keeps every batch to one of them."""

    VIDEO, IMAGE = 0, 1

    def __init__(self, videos: Dataset, images: Dataset):
        self.videos, self.images = videos, images

    @property
    def uses_feature_cache(self) -> bool:
        return bool(self.videos.uses_feature_cache)

    @property
    def labels(self) -> list[int]:
        return self.videos.labels

    def __len__(self) -> int:
        return len(self.videos) + len(self.images)

    def __getitem__(self, index: int) -> dict:
        if index < len(self.videos):
            return {**self.videos[index], "task": self.VIDEO}
        return {**self.images[index - len(self.videos)], "task": self.IMAGE}
