"""scikit-learn's bundled 8×8 digits read pixel by pixel (L = 64): the smallest real task, for smoke runs."""
from __future__ import annotations

import numpy as np

from lconv.data import Task, resolve_params
from lconv.data.datasets import ImageSequences

# 1797 images in all; splits are carved deterministically (split seed 0), not from the task seed.
DEFAULTS = {
    "smoke": dict(n_train=400, n_val=100, n_test=100),
    "quick": dict(n_train=1197, n_val=300, n_test=300),
    "full": dict(n_train=1197, n_val=300, n_test=300),
}


def digits_task(name, *, profile, seed, root, **overrides) -> Task:
    """Digits as (64, 1) sequences of pixel intensities, 10 classes."""
    try:
        from sklearn.datasets import load_digits
    except ImportError as e:  # pragma: no cover - sklearn is a declared extra
        raise ValueError("the digits task needs scikit-learn: pip install scikit-learn") from e
    p = resolve_params(name, profile, DEFAULTS, overrides)
    d = load_digits()
    images = (d.images.reshape(-1, 64, 1) * (255.0 / 16.0)).round().astype(np.uint8)  # (1797, 64, 1)
    labels = d.target.astype(np.int64)
    need = p["n_train"] + p["n_val"] + p["n_test"]
    if need > len(images):
        raise ValueError(f"digits has {len(images)} images; n_train+n_val+n_test={need} is too many")
    perm = np.random.default_rng(0).permutation(len(images))
    idx_test = perm[:p["n_test"]]
    idx_val = perm[p["n_test"]:p["n_test"] + p["n_val"]]
    idx_train = perm[p["n_test"] + p["n_val"]:need]
    mean, std = images[idx_train].mean() / 255.0, images[idx_train].std() / 255.0
    split = lambda idx: ImageSequences(images[idx], labels[idx], [mean], [std])  # noqa: E731
    return Task(name, "classify", split(idx_train), split(idx_val), split(idx_test), seq_len=64, n_classes=10,
                d_input=1, seed=seed, info=dict(profile=profile, params=p, source="sklearn.datasets.load_digits"))
