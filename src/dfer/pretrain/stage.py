"""`dfer pretrain-mae --init NAME`: MAE pre-training of the ViT encoder that an SFER/S2D model starts from.

Makes the named init of params.yaml ``model.inits`` (``mae_imagenet1k``, ``mae_affectnet``) from unlabelled
images, with the facebookresearch/mae recipe (``dfer.pretrain.mae``, ``dfer.pretrain.engine``): settings in
params.yaml ``pretrain:`` (base = the paper-scale recipe, the synthetic preset = a tiny model and a CPU
budget), with ``pretrain.inits.<NAME>`` naming the image sources and any per-init override.

Image sources (``pretrain.inits.<NAME>.sources``, a list; labels are never read):
  ``{dataset: AffectNet-8, split: train}``  an image dataset of ``data.datasets``, read by its adapter;
  ``{images: PATH}``                      a folder (every .jpg/.jpeg/.png/.bmp/.webp below it) or a list file
                                          (one path per line, relative to the list's folder), e.g. the
                                          synthetic ``results/synth/Generic/images.txt`` or ImageNet's train/.

Augmentation (MAE): RandomResizedCrop to the model's input size (scale 0.2-1.0, ratio 3/4-4/3, bicubic), random
horizontal flip, ImageNet normalisation. Learning rate ``blr * effective_batch / 256``; warm-up + cosine per
step; AdamW (0.9, 0.95), weight decay 0.05. The effective batch is reached by gradient accumulation
(``effective_batch / batch_size`` steps; one process: this stage does not run DDP).

Dual-modal inits (UniLearn, ``model`` a UniLearn model): the encoder is pre-trained on the image sources and on
``video_sources`` (``{videos: PATH}``: a folder, every video file below it, e.g. VoxCeleb2's ``dev/mp4``, or a list
file) with :mod:`dfer.pretrain.dual_mae`: images repeated to one 2x16x16 tubelet, ``dual.image_mask_ratio`` /
``dual.video_mask_ratio`` of the tokens masked, ``dual.num_frames`` frames every ``dual.sampling_rate`` per
clip at ``dual.input_size`` px (the fine-tuning run's ``data`` settings; one RandomResizedCrop + flip per clip). Each batch is all images or all clips, the batches of an
epoch in a seeded random order. Either list may be empty (Table 2 of UniLearn: image-only, video-only). Its
``model.pt`` holds S4D's layout (``encoder.*`` keys) and loads with ``format: unilearn``.

Outputs (``--out``, default ``pretrain.out`` = ``results/pretrain/<NAME>``): ``model.pt``
(``{"model": MAE state dict, "meta": {...}}``; loads with ``load_pretrained(model, path, format="mae")``),
``metrics.jsonl`` (one line per epoch), ``reconstructions.png`` (original / masked / reconstruction /
reconstruction with the visible patches pasted back / normalised target and prediction of the masked
patches), ``done.json`` last. They are staged and moved in place
only when the run has finished. ``<out>/resume/checkpoint.pt`` is written atomically at every epoch end and on
SIGTERM/SIGUSR1 (at the next optimizer step, exit status 75); running the same command again continues from it
(bitwise on CPU with ``num_workers: 0``). A finished run with the same settings returns at once.
"""
from __future__ import annotations

import math
import os
import shutil
import sys
import time
from pathlib import Path

import cv2
import numpy as np
import torch
from torch.utils.data import Dataset

from dfer.cli import add_params_args, add_quiet_arg, command_parser, stage_params
from dfer.config import ConfigError, config_hash, deep_merge
from dfer.data.datasets import DecodedFrames
from dfer.engine import resume as ck
from dfer.io import atomic_path, write_json, write_jsonl

EXIT_PREEMPTED = 75
IMAGE_EXTS = (".jpg", ".jpeg", ".png", ".bmp", ".webp")
def init_settings(params: dict, init: str) -> dict:
    """The explicit settings of one init: params.yaml ``pretrain`` (every key; without ``inits``/``out``) <-
    ``pretrain.inits.<init>``, dataset sources completed with their ``data.datasets`` entry, ``seed`` from the top
    level when null."""
    section = params["pretrain"]
    if init not in section["inits"]:
        raise ConfigError(f"pretrain.inits has no {init!r}; known: {sorted(section['inits'])}")
    base = {k: v for k, v in section.items() if k not in ("inits", "out")}
    s = deep_merge(base, section["inits"][init])
    if s["seed"] is None:  # null: the top-level params seed
        s["seed"] = int(params["seed"])
    s["init"] = init
    datasets = params["data"]["datasets"]
    sources = []
    for src in s["sources"]:
        src = dict(src)
        if "dataset" in src:
            name = src["dataset"]
            if name not in datasets:
                raise ConfigError(f"pretrain.inits.{init}.sources: dataset {name!r} is not in data.datasets "
                                  f"({sorted(datasets)})")
            src.setdefault("split", "train")
            src["entry"] = {**datasets[name], "frame_order": params["data"]["frame_order"]}
        sources.append(src)
    s["sources"] = sources
    s["video_sources"] = [dict(v) for v in s["video_sources"]]
    if not sources and not s["video_sources"]:
        raise ConfigError(f"pretrain.inits.{init}: no sources and no video_sources; name at least one")
    if s["video_sources"] and not is_dual(s["model"]):
        raise ConfigError(f"pretrain.inits.{init}: video_sources need a video encoder (a UniLearn model), "
                          f"not {s['model']}")
    return s


def is_dual(model_name: str) -> bool:
    """A UniLearn model's encoder is pre-trained by the dual-modal (image + video) MAE."""
    return model_name.startswith("unilearn")


def mae_kwargs(settings: dict) -> dict:
    """``mae_for`` overrides from the settings (decoder size, mask ratio, norm_pix_loss)."""
    kw = {"mask_ratio": float(settings["mask_ratio"]), "norm_pix_loss": bool(settings["norm_pix_loss"])}
    dec = settings["decoder"]
    for key, name in (("embed_dim", "decoder_embed_dim"), ("depth", "decoder_depth"),
                      ("num_heads", "decoder_num_heads")):
        if dec.get(key) is not None:
            kw[name] = int(dec[key])
    return kw


def accumulation(settings: dict, world_size: int = 1) -> int:
    batch = int(settings["batch_size"]) * world_size
    eff = int(settings["effective_batch"])
    if eff % batch:
        raise ConfigError(f"pretrain.effective_batch={eff} is not a multiple of batch_size x processes = {batch}")
    return eff // batch


# ---- images and videos ------------------------------------------------------------------------------
SOURCE_HINTS = {"image": "for the synthetic Generic set run `dfer synth --datasets Generic`",
                "video": "VoxCeleb2: its dev/mp4 folder; synthetic: `dfer synth --datasets VoxCeleb2`"}


def _list_files(spec: str, base: Path, kind: str) -> list:
    """``Sample`` records (label -1) of every ``kind`` ("image" | "video") file below a folder (recursively) or
    listed in a list file (one path per line, relative to the list's folder; ``#`` comments)."""
    from dfer.data.annotations import VIDEO_EXTS, Sample

    exts = IMAGE_EXTS if kind == "image" else VIDEO_EXTS
    p = Path(spec)
    p = p if p.is_absolute() else base / p
    if p.is_dir():
        files = sorted(f for f in p.rglob("*") if f.suffix.lower() in exts and f.is_file())
        where = [str(f.relative_to(p)) for f in files]
    elif p.is_file():
        lines = [(i, ln.strip()) for i, ln in enumerate(p.read_text().splitlines(), 1)]
        lines = [(i, ln) for i, ln in lines if ln and not ln.startswith("#")]
        files = [Path(ln) if Path(ln).is_absolute() else p.parent / ln for _, ln in lines]
        where = [f"{p}:{i}" for i, _ in lines]
    else:
        raise ConfigError(f"{p}: {kind} folder or list file not found (pretrain source {{{kind}s: {spec}}}); "
                          f"{SOURCE_HINTS[kind]}")
    if not files:
        raise ConfigError(f"{p}: no {kind} files ({', '.join(exts)}) below it")
    return [Sample(id=str(f), label=-1, path=f, kind=kind, dataset=f"{kind}s", source=w)
            for f, w in zip(files, where)]


def image_samples(sources: list[dict], base: Path | None = None) -> list:
    """Every image of the sources (``Sample`` records, labels ignored), in a fixed order."""
    from dfer.data.annotations import VIDEO_DATASETS, load_dataset_entry

    base = Path(base) if base is not None else _project_base()
    out = []
    for src in sources:
        if "dataset" in src:
            if src["dataset"] in VIDEO_DATASETS:
                raise ConfigError(f"pretrain source {src['dataset']} is a video dataset; MAE pre-training reads "
                                  "image datasets (AffectNet-7/8, RAF-DB, FERPlus) or {images: ...}")
            out += load_dataset_entry(src["dataset"], src["entry"], src["split"], base=base)
        elif "video_frames" in src:   # videos read as images: one frame of each (random in training)
            out += _list_files(src["video_frames"], base, "video")
        else:
            out += _list_files(src["images"], base, "image")
    return out


def video_samples(sources: list[dict], base: Path | None = None) -> list:
    """Every video of ``{videos: PATH}`` sources (a folder, recursively, or a list file), in a fixed order."""
    base = Path(base) if base is not None else _project_base()
    return [v for src in sources for v in _list_files(src["videos"], base, "video")]


def _project_base() -> Path:
    from dfer.engine.runconfig import project_base

    return project_base()


class MAEImages(Dataset):
    """Unlabelled images -> ``{"video": float[3, S, S], "index": i}``: MAE's RandomResizedCrop(scale, ratio,
    bicubic) on the full image, horizontal flip, ImageNet normalisation (``train=True``); the whole image resized
    to ``S x S`` otherwise (reconstruction figure)."""

    def __init__(self, samples, input_size: int, scale=(0.2, 1.0), ratio=(3 / 4, 4 / 3), hflip: bool = True,
                 train: bool = True):
        self.samples = list(samples)
        self.size, self.scale, self.ratio = int(input_size), tuple(scale), tuple(ratio)
        self.hflip, self.train = bool(hflip), bool(train)
        self.decoded = DecodedFrames() if self.train else None

    def __len__(self) -> int:
        return len(self.samples)

    def __getitem__(self, index: int) -> dict:
        from dfer.data.clips import open_clip, read_image
        from dfer.data.transforms import random_resized_crop_params, to_normalized_tensor

        sample = self.samples[index]
        # Drawn from torch's RNG (seeded per epoch and per DataLoader worker, saved for resumption).
        rng = np.random.default_rng(int(torch.randint(0, 2**62, (1,)).item())) if self.train else None
        if sample.kind == "video":   # a {video_frames: ...} source: one frame of the clip as the image
            clip = open_clip(sample)
            frame = int(rng.integers(len(clip))) if rng is not None else len(clip) // 2
            img = clip.get([frame])[0]
        elif self.decoded is not None and self.decoded.active:
            img = self.decoded.image(sample, None)     # read-only below: crops are views, resize copies
        else:
            img = read_image(sample)
        if self.train:
            top, left, ch, cw = random_resized_crop_params(img.shape[0], img.shape[1], rng, self.scale, self.ratio)
            img = img[top:top + ch, left:left + cw]
            flip = self.hflip and rng.random() < 0.5
        else:
            flip = False
        interp = cv2.INTER_CUBIC if min(img.shape[:2]) < self.size else cv2.INTER_AREA
        img = cv2.resize(np.ascontiguousarray(img), (self.size, self.size), interpolation=interp)
        if flip:
            img = img[:, ::-1]
        return {"video": to_normalized_tensor(img[None])[0], "index": index}


class MAEClips(Dataset):
    """Unlabelled videos -> ``{"video": float[3, T, S, S], "index": i}``: ``num_frames`` frames every
    ``sampling_rate`` (the fine-tuning sampler's training clip), one RandomResizedCrop and flip for the clip."""

    def __init__(self, samples, input_size: int, num_frames: int, sampling_rate: int, scale=(0.2, 1.0),
                 ratio=(3 / 4, 4 / 3), hflip: bool = True):
        self.samples = list(samples)
        self.size, self.num_frames, self.sampling_rate = int(input_size), int(num_frames), int(sampling_rate)
        self.scale, self.ratio, self.hflip = tuple(scale), tuple(ratio), bool(hflip)

    def __len__(self) -> int:
        return len(self.samples)

    def __getitem__(self, index: int) -> dict:
        from dfer.data.clips import open_clip
        from dfer.data.sampling import train_indices
        from dfer.data.transforms import random_resized_crop_params, to_normalized_tensor

        rng = np.random.default_rng(int(torch.randint(0, 2**62, (1,)).item()))
        clip = open_clip(self.samples[index])
        frames = clip.get(train_indices(len(clip), self.num_frames, self.sampling_rate, rng))
        top, left, ch, cw = random_resized_crop_params(frames.shape[1], frames.shape[2], rng, self.scale, self.ratio)
        flip = self.hflip and rng.random() < 0.5
        out = []
        for img in frames[:, top:top + ch, left:left + cw]:
            interp = cv2.INTER_CUBIC if min(img.shape[:2]) < self.size else cv2.INTER_AREA
            img = cv2.resize(np.ascontiguousarray(img), (self.size, self.size), interpolation=interp)
            out.append(img[:, ::-1] if flip else img)
        return {"video": to_normalized_tensor(np.stack(out)).permute(1, 0, 2, 3), "index": index}


class ModalityBatches(torch.utils.data.Sampler):
    """Batches of one modality each over ``ConcatDataset([images, clips])``: each modality shuffled from
    ``(seed, epoch)``, cut into whole batches, the batches of both in a seeded random order; ``skip`` drops the
    first batches (mid-epoch resume)."""

    def __init__(self, n_images: int, n_clips: int, batch_size: int, seed: int):
        self.n_images, self.n_clips, self.batch, self.seed = int(n_images), int(n_clips), int(batch_size), int(seed)
        self.epoch, self.skip = 0, 0
        self.steps = self.n_images // self.batch + self.n_clips // self.batch

    def set_epoch(self, epoch: int, skip: int = 0) -> None:
        self.epoch, self.skip = int(epoch), int(skip)

    def batches(self) -> list[list[int]]:
        g = torch.Generator().manual_seed(self.seed * 100_003 + self.epoch)
        out = []
        for offset, n in ((0, self.n_images), (self.n_images, self.n_clips)):
            order = (torch.randperm(n, generator=g) + offset).tolist()
            out += [order[i * self.batch:(i + 1) * self.batch] for i in range(n // self.batch)]
        return [out[i] for i in torch.randperm(len(out), generator=g).tolist()]

    def __iter__(self):
        return iter(self.batches()[self.skip:])

    def __len__(self) -> int:
        return max(self.steps - self.skip, 0)


# ---- reconstructions figure -------------------------------------------------------------------------
def _to_uint8(x: torch.Tensor) -> np.ndarray:
    from dfer.data.transforms import IMAGENET_MEAN, IMAGENET_STD

    mean = torch.tensor(IMAGENET_MEAN).view(3, 1, 1)
    std = torch.tensor(IMAGENET_STD).view(3, 1, 1)
    return (((x.float().cpu() * std + mean).clamp(0, 1) * 255).round().byte().permute(1, 2, 0).numpy())


@torch.no_grad()
def reconstructions(model, imgs: torch.Tensor, seed: int = 0) -> tuple[np.ndarray, list[str], float]:
    """``(grid uint8 [rows*S, cols*S, 3] RGB, column titles, MAE loss on these images)``. Columns: original |
    masked | reconstruction | reconstruction + visible; with ``norm_pix_loss`` the predicted (normalised) patches
    are shown with each patch's own pixel mean/std (as MAE's visualisation), and two more columns show what the
    loss compares on the masked patches: the per-patch normalised target and the prediction (0 = grey,
    +-2 std = full range)."""
    model.eval()
    g = torch.Generator(device=imgs.device).manual_seed(seed)
    loss, pred, mask = model(imgs, generator=g)
    target = model.patchify(imgs)
    rec_patches = pred
    if model.norm_pix_loss:
        mean = target.mean(dim=-1, keepdim=True)
        var = target.var(dim=-1, keepdim=True)
        rec_patches = pred * (var + 1e-6) ** 0.5 + mean
    rec = model.unpatchify(rec_patches)
    keep = mask.unsqueeze(-1)
    m = model.unpatchify(keep.expand_as(target))                  # 1 on masked pixels
    masked = imgs * (1 - m)                                       # normalised 0 = ImageNet mean grey
    pasted = imgs * (1 - m) + rec * m
    columns = [(imgs, "original"), (masked, f"masked {model.mask_ratio:.0%}"), (rec, "reconstruction"),
               (pasted, "rec. + visible")]
    tiles = [[_to_uint8(t[i]) for t, _ in columns] for i in range(imgs.shape[0])]
    if model.norm_pix_loss:
        from dfer.pretrain.mae import normalize_patches

        for patches, title in ((normalize_patches(target), "target (norm.)"), (pred, "prediction (norm.)")):
            img = model.unpatchify(patches * keep)                # visible patches: 0 = grey
            shown = ((0.5 + img / 4).clamp(0, 1) * 255).round().byte().permute(0, 2, 3, 1).cpu().numpy()
            for i in range(imgs.shape[0]):
                tiles[i].append(shown[i])
            columns.append((None, title))
    grid = np.concatenate([np.concatenate(row, axis=1) for row in tiles], axis=0)
    return grid, [title for _, title in columns], float(loss)


def write_reconstructions(path: Path, grid: np.ndarray, titles: list[str], loss: float,
                          norm_pix: bool = True) -> None:
    cols = len(titles)
    scale = max(1, int(math.ceil(96 / (grid.shape[1] / cols))))
    big = cv2.resize(grid, (grid.shape[1] * scale, grid.shape[0] * scale), interpolation=cv2.INTER_NEAREST)
    header = np.full((22, big.shape[1], 3), 255, np.uint8)
    w = big.shape[1] // cols
    for j, title in enumerate(titles):
        cv2.putText(header, title, (j * w + 4, 15), cv2.FONT_HERSHEY_SIMPLEX, 0.4, (0, 0, 0), 1, cv2.LINE_AA)
    footer = np.full((34, big.shape[1], 3), 255, np.uint8)
    lines = [f"MAE loss on these images: {loss:.4f} (mean squared error of the masked normalised patches)"
             if norm_pix else f"MAE loss on these images: {loss:.4f}"]
    if norm_pix:
        lines.append("reconstruction: predicted normalised patches shown with their true mean/std")
    for i, text in enumerate(lines):
        cv2.putText(footer, text, (4, 13 + 15 * i), cv2.FONT_HERSHEY_SIMPLEX, 0.38, (0, 0, 0), 1, cv2.LINE_AA)
    ok, buf = cv2.imencode(".png", np.concatenate([header, big, footer])[..., ::-1])
    if not ok:
        raise OSError(f"{path}: could not encode PNG")
    with atomic_path(path) as tmp:
        Path(tmp).write_bytes(buf.tobytes())


# ---- the stage --------------------------------------------------------------------------------------
def finished(out: Path, h: str) -> bool:
    return ck.finished(out, "settings_hash", h, "a finished pre-training with settings",
                       "pass another --out, --force, or delete the folder")


def pretrain_mae(settings: dict, out: Path, *, device: str | None = None, show: bool = True,
                 force: bool = False, base: Path | None = None) -> dict:
    """Pre-train the MAE for ``settings["model"]`` on ``settings["sources"]`` and write the outputs to ``out``.

    ``settings``: the resolved per-init settings (:func:`init_settings`). Returns the ``done.json`` record;
    ``{"stopped": True, ...}`` when a SIGTERM/SIGUSR1 stopped it (resume checkpoint saved).
    """
    from dfer.engine.loop import EpochSampler, Precision, make_loader
    from dfer.engine.train import StopFlag, epoch_seed, set_determinism
    from dfer.pretrain.engine import Schedule, absolute_lr, build_optimizer, train_one_epoch
    from dfer.pretrain.dual_mae import dual_mae_for
    from dfer.pretrain.mae import MaskedAutoencoderViT, mae_config

    out = Path(out)
    h = config_hash(settings)
    if not force and finished(out, h):
        print(f"{out}: already finished (settings {h}); nothing to do")
        import json

        return json.loads((out / "done.json").read_text())
    dev = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
    set_determinism(True, dev)
    seed = int(settings["seed"] or 0)
    resume_file = ck.resume_path(out)
    if force and resume_file.parent.exists():
        shutil.rmtree(resume_file.parent)

    samples = image_samples(settings["sources"], base)
    if settings["max_images"]:
        keep = np.random.default_rng(seed).permutation(len(samples))[: int(settings["max_images"])]
        samples = [samples[i] for i in sorted(keep)]
    dual = is_dual(settings["model"])
    clips = video_samples(settings["video_sources"], base) if dual else []
    batch = int(settings["batch_size"])
    if max(len(samples), len(clips)) < batch:
        raise ConfigError(f"pretrain: {len(samples)} images and {len(clips)} videos but batch_size {batch}; lower "
                          "pretrain.batch_size")

    ck.seed_everything(epoch_seed(seed, 0, -1))
    aug = settings["augment"]
    if dual:
        model = dual_mae_for(settings["model"], **dual_kwargs(settings)).to(dev)
        size = model.encoder.patch_embed.img_size
        cfg = {"img_size": size, "mask_ratio": dict(model.mask_ratio), "norm_pix_loss": model.norm_pix_loss,
               **dual_kwargs(settings)}
        ds = torch.utils.data.ConcatDataset([
            MAEImages(samples, size, scale=aug["scale"], ratio=aug["ratio"], hflip=aug["hflip"]),
            MAEClips(clips, size, settings["dual"]["num_frames"], settings["dual"]["sampling_rate"],
                     scale=aug["scale"], ratio=aug["ratio"], hflip=aug["hflip"])])
        sampler = ModalityBatches(len(samples), len(clips), batch, seed)
        steps = sampler.steps
        masking = f"mask {model.mask_ratio['image']:.0%} of an image, {model.mask_ratio['video']:.0%} of a clip"
        encoder_keys = set(model.encoder_state_dict())
    else:
        cfg = mae_config(settings["model"], **mae_kwargs(settings))
        model = MaskedAutoencoderViT(**cfg).to(dev)
        ds = MAEImages(samples, cfg["img_size"], scale=aug["scale"], ratio=aug["ratio"], hflip=aug["hflip"])
        steps = len(samples) // batch                      # drop_last, as MAE
        sampler = EpochSampler([0] * len(samples), seed, batch)
        masking = f"mask {cfg['mask_ratio']:.0%}"
        encoder_keys = set(model.encoder_keys())
    accum = accumulation(settings)
    eff = batch * accum
    epochs = int(settings["epochs"])
    lr = absolute_lr(float(settings["blr"]), eff)
    schedule = Schedule(lr, float(settings["min_lr"]), float(settings["warmup_epochs"]), epochs, steps,
                        accum)
    optimizer = build_optimizer(model, lr, float(settings["weight_decay"]), tuple(settings["betas"]))
    precision = Precision.from_config(settings, dev)
    scaler = torch.amp.GradScaler("cuda") if precision.needs_scaler else None
    n_params = sum(p.numel() for p in model.parameters())
    n_enc = sum(v.numel() for k, v in model.state_dict().items() if k in encoder_keys)
    data = f"{len(samples)} images" + (f" + {len(clips)} videos" if dual else "")
    print(f"pretrain-mae {settings['init']} ({h}): {'dual-modal ' if dual else ''}MAE for {settings['model']} "
          f"({n_enc / 1e6:.2f} M encoder, {n_params / 1e6:.2f} M total), {data} at {cfg['img_size']} px, "
          f"{masking}, {epochs} epochs x {steps} steps, batch {batch} x accum {accum} = {eff}, "
          f"lr {lr:.3g} (blr {settings['blr']}), device {dev}", flush=True)

    start_epoch, start_step, history, partial, state = 0, 0, [], None, ck.load_resume(resume_file)
    if state is not None and state.get("settings_hash") != h:
        print(f"warning: {resume_file} belongs to settings {state.get('settings_hash')}, not {h}; starting over")
        state = None
    if state is not None:
        model.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        if scaler is not None and state.get("scaler"):
            scaler.load_state_dict(state["scaler"])
        start_epoch, start_step = int(state["epoch"]), int(state["step"])
        history, partial = state.get("history", []), state.get("partial")
        where = f"epoch {start_epoch + 1} step {start_step}" if start_step else f"epoch {start_epoch + 1}"
        print(f"resuming from {resume_file} at {where}", flush=True)

    def save_state(epoch: int, step: int, part: dict | None) -> None:
        ck.save_resume(resume_file, {
            "settings_hash": h, "epoch": epoch, "step": step, "model": model.state_dict(),
            "optimizer": optimizer.state_dict(), "scaler": scaler.state_dict() if scaler else None,
            "rng": ck.rng_state(), "history": history, "partial": part})
        write_jsonl(resume_file.parent / "metrics.jsonl", history)

    stop = StopFlag().install()
    t_run = time.perf_counter()
    try:
        for epoch in range(start_epoch, epochs):
            step0 = start_step if epoch == start_epoch else 0
            if step0 and state is not None:
                ck.set_rng_state(state["rng"])
            else:
                ck.seed_everything(epoch_seed(seed, 0, epoch))
            if dual:
                sampler.set_epoch(epoch, skip=step0)
                loader = _batch_loader(ds, sampler, int(settings["num_workers"]), epoch_seed(seed, 0, epoch), dev)
            else:
                sampler.set_epoch(epoch, skip=step0 * batch)
                loader = make_loader(ds, batch, sampler, int(settings["num_workers"]),
                                     epoch_seed(seed, 0, epoch), True, dev)
            r = train_one_epoch(model, loader, optimizer, epoch, schedule, dev, precision, scaler,
                                start_step=step0, show=show, stop_requested=stop)
            if partial and step0:
                for k in ("loss_sum", "steps", "images", "seconds"):
                    r[k] += partial[k]
            partial = None
            if r["stopped"]:
                save_state(epoch, r["step"], {k: r[k] for k in ("loss_sum", "steps", "images", "seconds")})
                print(f"stopped by signal {stop.signum} at epoch {epoch + 1} step {r['step']}; checkpoint saved to "
                      f"{resume_file}; run the same command again to continue", file=sys.stderr)
                return {"stopped": True, "epoch": epoch, "step": r["step"]}
            row = {"epoch": epoch + 1, "loss": r["loss_sum"] / max(r["steps"], 1),
                   "lr": schedule.lr_for(epoch, steps - 1), "seconds": round(r["seconds"], 3),
                   "images_per_s": round(r["images"] / r["seconds"], 2) if r["seconds"] else None}
            history.append(row)
            print(f"epoch {epoch + 1}/{epochs}  loss {row['loss']:.4f}  lr {row['lr']:.3g}  {row['seconds']:.1f} s",
                  flush=True)
            save_state(epoch + 1, 0, None)
            if stop():
                print(f"stopped by signal {stop.signum} after epoch {epoch + 1}; checkpoint saved to {resume_file}",
                      file=sys.stderr)
                return {"stopped": True, "epoch": epoch + 1, "step": 0}
    finally:
        stop.restore()
    return _finalize(model, settings, cfg, h, out, history, samples, dev, time.perf_counter() - t_run,
                     videos=len(clips))


def dual_kwargs(settings: dict) -> dict:
    """``dual_mae_for`` arguments from the settings (decoder size, mask ratios per modality, norm_pix_loss)."""
    dec, d = settings["decoder"], settings["dual"]
    return {"decoder_embed_dim": dec["embed_dim"], "decoder_depth": dec["depth"], "decoder_num_heads": dec["num_heads"],
            "image_mask_ratio": float(d["image_mask_ratio"]), "video_mask_ratio": float(d["video_mask_ratio"]),
            "norm_pix_loss": bool(settings["norm_pix_loss"]),
            # the encoder's input, as the fine-tuning run builds the model (data.input_size, data.num_frames)
            "img_size": int(d["input_size"]), "num_frames": int(d["num_frames"])}


def _batch_loader(ds, batch_sampler, num_workers: int, seed: int, dev: torch.device):
    from dfer.engine.loop import _seed_worker

    return torch.utils.data.DataLoader(ds, batch_sampler=batch_sampler, num_workers=num_workers,
                                       pin_memory=dev.type == "cuda", generator=torch.Generator().manual_seed(seed),
                                       worker_init_fn=_seed_worker if num_workers > 0 else None)


def _finalize(model, settings: dict, cfg: dict, h: str, out: Path, history: list[dict], samples: list,
              dev: torch.device, seconds: float, videos: int = 0) -> dict:
    """Write model.pt, metrics.jsonl and reconstructions.png into a staging folder, move them in place, then
    done.json; remove the resume folder."""
    from dfer.models.weights import save_checkpoint

    stage = ck.resume_path(out).parent / "final"
    if stage.exists():
        shutil.rmtree(stage)
    stage.mkdir(parents=True)
    dual = is_dual(settings["model"])
    k = 0 if dual else min(int(settings["reconstructions"]), len(samples))  # the figure shows image MAEs only
    rec_loss = None
    if k:
        view = MAEImages(samples[:k], cfg["img_size"], train=False)
        imgs = torch.stack([view[i]["video"] for i in range(k)]).to(dev)
        grid, titles, rec_loss = reconstructions(model, imgs, seed=int(settings["seed"] or 0))
        write_reconstructions(stage / "reconstructions.png", grid, titles, rec_loss, cfg["norm_pix_loss"])
    meta = {"format": "unilearn" if dual else "mae", "init": settings["init"], "target_model": settings["model"],
            "mae_config": cfg, "settings": settings, "settings_hash": h, "epochs": int(settings["epochs"]),
            "images": len(samples), "videos": videos,
            "final_loss": history[-1]["loss"] if history else None, "seconds": round(seconds, 1),
            "load_with": "dfer.models.unilearn.load_unilearn_pretrained(model, path)" if dual else
            "dfer.models.weights.load_pretrained(model, path, format='mae')"}
    save_checkpoint(model, stage / "model.pt", meta=meta)
    write_jsonl(stage / "metrics.jsonl", history)
    names = ["model.pt", "metrics.jsonl"] + (["reconstructions.png"] if k else [])
    out.mkdir(parents=True, exist_ok=True)
    for name in names:
        os.replace(stage / name, out / name)
    done = {"settings_hash": h, "init": settings["init"], "target_model": settings["model"],
            "epochs": int(settings["epochs"]), "images": len(samples), "videos": videos,
            "final_loss": meta["final_loss"], "reconstruction_loss": rec_loss,
            "seconds_per_epoch": round(float(np.mean([r["seconds"] for r in history])), 3) if history else None,
            "finished": time.strftime("%Y-%m-%dT%H:%M:%S"), "outputs": names}
    write_json(out / "done.json", done)
    shutil.rmtree(ck.resume_path(out).parent, ignore_errors=True)
    print(f"finished: final loss {done['final_loss']:.4f}; outputs in {out}")
    return done


# ---- CLI --------------------------------------------------------------------------------------------
def main(argv: list[str] | None = None) -> int:
    ap = command_parser("pretrain-mae", __doc__)
    ap.add_argument("--init", required=True, help="which init to make: a key of pretrain.inits "
                                                  "(mae_imagenet1k, mae_affectnet)")
    add_params_args(ap, set_help="params overrides, e.g. pretrain.epochs=2")
    ap.add_argument("--out", default=None, help="output folder (default: params pretrain.out)")
    ap.add_argument("--device", default=None, help="cpu | cuda | cuda:N (default: cuda when available)")
    ap.add_argument("--force", action="store_true", help="start over even if finished / a resume checkpoint exists")
    add_quiet_arg(ap)
    args = ap.parse_args(argv)
    params, base = stage_params(args)
    settings = init_settings(params, args.init)
    out = Path(args.out or str(params["pretrain"]["out"]).format(init=args.init))
    out = out if out.is_absolute() else base / out
    done = pretrain_mae(settings, out, device=args.device, show=not args.quiet, force=args.force, base=base)
    return EXIT_PREEMPTED if done.get("stopped") else 0


if __name__ == "__main__":
    sys.exit(main())
