"""Sequential and permuted-sequential Fashion-MNIST (L = 784, d_input = 1), read offline through torchvision.

The Debian package `dataset-fashion-mnist` puts the four gzip IDX files in /usr/share/datasets/fashion-mnist/.
torchvision's FashionMNIST wants them uncompressed in <root>/FashionMNIST/raw/, so they are decompressed there once
(atomically). "smnist" reads pixels in raster order; "psmnist" in a fixed permutation drawn from the task seed
(override `perm_seed`). Validation is carved from the 60000 training images (split seed 0, independent of `seed`).
"""
from __future__ import annotations

import gzip
import os
import shutil
from pathlib import Path

import numpy as np

from lconv.data import Task, resolve_params
from lconv.data.cache import atomic_write
from lconv.data.datasets import ImageSequences, split_indices, take

DEBIAN_DIR = Path("/usr/share/datasets/fashion-mnist")
FILES = ("train-images-idx3-ubyte", "train-labels-idx1-ubyte", "t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte")

# n_train / n_test None = all; n_val is carved from the 60000 training images.
DEFAULTS = {
    "smoke": dict(n_train=256, n_val=128, n_test=128, perm_seed=None, source=None),
    "quick": dict(n_train=4000, n_val=1000, n_test=2000, perm_seed=None, source=None),
    "full": dict(n_train=None, n_val=5000, n_test=None, perm_seed=None, source=None),
}


def _sources(source) -> list[Path]:
    dirs = [source, os.environ.get("LCONV_FASHION_MNIST"), DEBIAN_DIR]
    return [Path(d).expanduser() for d in dirs if d]


def prepare_raw(root: Path, source=None) -> Path:
    """Make <root>/FashionMNIST/raw/ hold the four uncompressed IDX files; return root."""
    raw = Path(root) / "FashionMNIST" / "raw"
    for name in FILES:
        if (raw / name).exists():
            continue
        for d in _sources(source):
            if (d / f"{name}.gz").exists():
                with gzip.open(d / f"{name}.gz", "rb") as src:
                    atomic_write(raw / name, lambda f: shutil.copyfileobj(src, f, 1 << 20))
                break
            if (d / name).exists():
                atomic_write(raw / name, lambda f: f.write((d / name).read_bytes()))
                break
        else:
            raise FileNotFoundError(
                f"Fashion-MNIST file {name}(.gz) not found in {[str(d) for d in _sources(source)]} nor in {raw}. "
                "Install the Debian package: `make data` (or `sudo apt-get install dataset-fashion-mnist`), "
                "which puts the gzip IDX files in /usr/share/datasets/fashion-mnist/; or put the four "
                "*-idx?-ubyte.gz files from https://github.com/zalandoresearch/fashion-mnist in a folder named by "
                "$LCONV_FASHION_MNIST (or the `source=` override), or the uncompressed files in "
                "<root>/FashionMNIST/raw/ (root argument or $LCONV_DATA).")
    return Path(root)


def load_fashion_mnist(root: Path, source=None):
    """(train_images, train_labels, test_images, test_labels) as uint8 (N, 28, 28) / int64 (N,) tensors."""
    try:
        from torchvision.datasets import FashionMNIST
    except ImportError as e:
        raise ValueError("Fashion-MNIST is read through torchvision: pip install torchvision") from e
    root = prepare_raw(root, source)
    train = FashionMNIST(str(root), train=True, download=False)
    test = FashionMNIST(str(root), train=False, download=False)
    return train.data, train.targets, test.data, test.targets


def smnist_task(name, *, profile, seed, root, **overrides) -> Task:
    """Fashion-MNIST as (784, 1) pixel sequences, raster order ("smnist") or permuted ("psmnist")."""
    p = resolve_params(name, profile, DEFAULTS, overrides)
    x_train, y_train, x_test, y_test = load_fashion_mnist(root, p["source"])
    x_train = x_train.reshape(-1, 784, 1)  # (60000, 784, 1)
    x_test = x_test.reshape(-1, 784, 1)  # (10000, 784, 1)
    idx_train, idx_val = split_indices(len(x_train), p["n_val"], seed=0)
    idx_train = idx_train[take(len(idx_train), p["n_train"], seed=1)]
    idx_test = take(len(x_test), p["n_test"], seed=2)
    mean = x_train[idx_train].float().mean().item() / 255.0
    std = x_train[idx_train].float().std().item() / 255.0
    perm = None
    if name == "psmnist":
        perm_seed = seed if p["perm_seed"] is None else p["perm_seed"]
        perm = np.random.default_rng(perm_seed).permutation(784)
    split = lambda x, y, idx: ImageSequences(x[idx], y[idx], [mean], [std], perm)  # noqa: E731
    return Task(name, "classify", split(x_train, y_train, idx_train), split(x_train, y_train, idx_val),
                split(x_test, y_test, idx_test), seq_len=784, n_classes=10, d_input=1, seed=seed,
                info=dict(profile=profile, params=p, source="Fashion-MNIST via torchvision", mean=mean, std=std,
                          perm=perm))
