"""Synthetic mini-benchmark in the real datasets' on-disk formats (`dfer synth`).

Public API:
- ``generate(out, datasets, seed, settings, progress=True) -> summary``: write datasets (settings: a
  params.yaml ``synth`` section);
- ``render_face(rng, size, expression, intensity, pose, ...) -> (rgb, box, landmarks68)``: one face image;
- ``render_clip(rng, emotion, n, size, framing, diff, ...) -> Rendered``: one clip with dynamics;
- ``CATALOGUE`` / ``EMOTION_DYNAMICS``: the expression catalogue and temporal profiles.
Design notes: ``expressions`` (what each paper component can find), ``faces`` (shape model, renderer),
``clips`` (framing, nuisance), ``writers`` (layouts and annotation formats), ``generic`` (non-face scenes:
the ``Generic`` image set that stands in for ImageNet in MAE pre-training).
"""
from dfer.data.synth.clips import DIFFICULTY, Rendered, difficulty, render_clip
from dfer.data.synth.expressions import CATALOGUE, EMOTION_DYNAMICS
from dfer.data.synth.faces import NUM_POINTS, face_box, render_face
from dfer.data.synth.generate import DATASETS, generate, resolve_settings

__all__ = ["generate", "resolve_settings", "render_face", "render_clip", "difficulty", "face_box", "Rendered",
           "CATALOGUE", "EMOTION_DYNAMICS", "DIFFICULTY", "DATASETS", "NUM_POINTS"]
