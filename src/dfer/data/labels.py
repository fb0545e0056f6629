"""Class lists and label orders of every dataset, in every annotation format we read.

The *model order* of a dataset (``CLASSES[name]``) is the order the official S2D code trains in; every
adapter returns labels as indices into it. Other formats (official DFEW 1-based labels, MAE-DFER's
orders, AffectNet expression codes, RAF-DB 1-based codes, FERPlus vote columns) are mapped on read.
Sources and the formats they come from: docs/datasets.md.
"""
from __future__ import annotations

# Model order per dataset (index = label the model predicts).
CLASSES: dict[str, list[str]] = {
    # S2D csv: official DFEW label - 1.
    "DFEW": ["Happy", "Sad", "Neutral", "Angry", "Surprise", "Disgust", "Fear"],
    # S2D Annotation/label_index.txt: alphabetical.
    "FERV39K": ["Angry", "Disgust", "Fear", "Happy", "Neutral", "Sad", "Surprise"],
    # S2D id_to_calss.txt: alphabetical.
    "MAFW": ["Anger", "Anxiety", "Contempt", "Disappointment", "Disgust", "Fear", "Happiness",
             "Helplessness", "Neutral", "Sadness", "Surprise"],
    # AffectNet expression codes 0..6 (7 classes) / 0..7 (8 classes, with contempt).
    "AffectNet-7": ["Neutral", "Happy", "Sad", "Surprise", "Fear", "Disgust", "Anger"],
    "AffectNet-8": ["Neutral", "Happy", "Sad", "Surprise", "Fear", "Disgust", "Anger", "Contempt"],
    # RAF-DB basic list_patition_label.txt codes 1..7, minus one.
    "RAF-DB": ["Surprise", "Fear", "Disgust", "Happiness", "Sadness", "Anger", "Neutral"],
    # AFEW 7.0 (EmotiW): the emotion folder names of Train/ and Val/, alphabetical.
    "AFEW": ["Angry", "Disgust", "Fear", "Happy", "Neutral", "Sad", "Surprise"],
    # FERPlus fer2013new.csv vote columns, in file order (unknown/NF are not classes).
    "FERPlus": ["Neutral", "Happiness", "Surprise", "Sadness", "Anger", "Disgust", "Fear", "Contempt"],
}

# MAE-DFER label orders (sunlicai/MAE-DFER preprocess/*.py); DFEW equals the S2D order.
MAE_DFER_CLASSES: dict[str, list[str]] = {
    "DFEW": CLASSES["DFEW"],
    "FERV39K": ["Happy", "Sad", "Neutral", "Angry", "Surprise", "Disgust", "Fear"],
    "MAFW": ["anger", "disgust", "fear", "happiness", "neutral", "sadness", "surprise", "contempt",
             "anxiety", "helplessness", "disappointment"],
}

# Official MAFW split files name the class in lower case (``03747.mp4 anger``).
MAFW_OFFICIAL_NAMES = ["anger", "anxiety", "contempt", "disappointment", "disgust", "fear", "happiness",
                       "helplessness", "neutral", "sadness", "surprise"]

# Synonyms -> one canonical emotion name, so label spaces of different datasets can be matched
# (cross-dataset evaluation, Table I; the synthetic generator's expression catalogue).
_CANONICAL = {
    "happy": "happiness", "happiness": "happiness",
    "sad": "sadness", "sadness": "sadness",
    "angry": "anger", "anger": "anger",
    "neutral": "neutral", "surprise": "surprise", "disgust": "disgust", "fear": "fear",
    "contempt": "contempt", "anxiety": "anxiety", "helplessness": "helplessness",
    "disappointment": "disappointment",
}


def canonical(name: str) -> str:
    """Canonical lower-case emotion name for any spelling used by a dataset."""
    key = name.strip().lower()
    if key not in _CANONICAL:
        raise KeyError(f"unknown emotion name {name!r}; known: {sorted(set(_CANONICAL))}")
    return _CANONICAL[key]


def classes(dataset: str) -> list[str]:
    """Model-order class names of a dataset (``DFEW``, ``MAFW``, ``AffectNet-7`` ...)."""
    if dataset not in CLASSES:
        raise KeyError(f"unknown dataset {dataset!r}; known: {sorted(CLASSES)}")
    return CLASSES[dataset]


def index_of(dataset: str, name: str) -> int:
    """Model-order index of an emotion (any spelling) in a dataset; KeyError names the dataset."""
    target = canonical(name)
    for i, c in enumerate(classes(dataset)):
        if canonical(c) == target:
            return i
    raise KeyError(f"emotion {name!r} is not a class of {dataset} ({classes(dataset)})")


def order_map(src: list[str], dst_dataset: str) -> dict[int, int]:
    """Map indices of a list of class names ``src`` to the model order of ``dst_dataset``."""
    return {i: index_of(dst_dataset, n) for i, n in enumerate(src)}


def shared_classes(a: str, b: str) -> list[str]:
    """Canonical emotions two datasets share (cross-dataset evaluation is restricted to these)."""
    cb = {canonical(c) for c in classes(b)}
    return [canonical(c) for c in classes(a) if canonical(c) in cb]
