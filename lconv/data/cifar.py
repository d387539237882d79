"""Sequential CIFAR-10 (sCIFAR): 32×32 images read pixel by pixel, L = 1024, d_input = 3 (or 1 for "cifar_gray").

Read through torchvision's CIFAR10 (download=False) from <root>/cifar-10-batches-py/ (the python pickle batches
data_batch_1..5, test_batch, batches.meta). Files are checked for presence; pass verify_md5=True to also check
torchvision's MD5 sums. Validation is carved from the 50000 training images (split seed 0).
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from lconv.data import Task, resolve_params
from lconv.data.datasets import ImageSequences, split_indices, take

URL = "https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz"
FILES = ("data_batch_1", "data_batch_2", "data_batch_3", "data_batch_4", "data_batch_5", "test_batch",
         "batches.meta")
GRAY = np.array([0.299, 0.587, 0.114])  # ITU-R 601 luma

DEFAULTS = {
    "smoke": dict(n_train=256, n_val=128, n_test=128, verify_md5=False),
    "quick": dict(n_train=5000, n_val=1000, n_test=2000, verify_md5=False),
    "full": dict(n_train=None, n_val=5000, n_test=None, verify_md5=False),
}


def _missing_message(folder: Path) -> str:
    return (f"CIFAR-10 not found in {folder}: download {URL} (on a machine with internet), extract it so that "
            f"{folder}/data_batch_1 … test_batch, batches.meta exist (`tar xzf cifar-10-python.tar.gz -C "
            f"{folder.parent}`), or point the root argument / $LCONV_DATA at the folder holding "
            "cifar-10-batches-py/. Nothing is downloaded here.")


def load_cifar10(root: Path, verify_md5: bool = False):
    """(train_images uint8 (50000, 32, 32, 3), train_labels, test_images, test_labels) via torchvision."""
    try:
        from torchvision.datasets import CIFAR10
    except ImportError as e:
        raise ValueError("CIFAR-10 is read through torchvision: pip install torchvision") from e
    folder = Path(root) / CIFAR10.base_folder
    missing = [f for f in FILES if not (folder / f).exists()]
    if missing:
        raise FileNotFoundError(_missing_message(folder) + f" Missing: {missing}")
    cls = CIFAR10
    if not verify_md5:
        class _PresentCIFAR10(CIFAR10):  # same reader, files checked for presence only (md5 None)
            train_list = [[name, None] for name, _ in CIFAR10.train_list]
            test_list = [[name, None] for name, _ in CIFAR10.test_list]
            meta = {**CIFAR10.meta, "md5": None}
        cls = _PresentCIFAR10
    try:
        train = cls(str(root), train=True, download=False)
        test = cls(str(root), train=False, download=False)
    except RuntimeError as e:  # md5 mismatch
        raise ValueError(f"CIFAR-10 files in {folder} failed torchvision's check ({e}); re-extract {URL}") from e
    return (np.asarray(train.data), np.asarray(train.targets, np.int64), np.asarray(test.data),
            np.asarray(test.targets, np.int64))


def cifar_task(name, *, profile, seed, root, **overrides) -> Task:
    """sCIFAR: (1024, 3) normalised pixel sequences in raster order ((1024, 1) for cifar_gray), 10 classes."""
    p = resolve_params(name, profile, DEFAULTS, overrides)
    x_train, y_train, x_test, y_test = load_cifar10(root, p["verify_md5"])
    if name == "cifar_gray":
        to_gray = lambda x: np.rint(x.astype(np.float32) @ GRAY).astype(np.uint8)[..., None]  # noqa: E731
        x_train, x_test = to_gray(x_train), to_gray(x_test)  # (N, 32, 32, 1)
    C = x_train.shape[-1]
    x_train, x_test = x_train.reshape(len(x_train), 1024, C), x_test.reshape(len(x_test), 1024, C)  # (N, L, C)
    idx_train, idx_val = split_indices(len(x_train), min(p["n_val"], len(x_train) // 2), seed=0)
    idx_train = idx_train[take(len(idx_train), p["n_train"], seed=1)]
    idx_test = take(len(x_test), p["n_test"], seed=2)
    pixels = x_train[idx_train].reshape(-1, C) / 255.0
    mean, std = pixels.mean(0), pixels.std(0)
    split = lambda x, y, idx: ImageSequences(x[idx], y[idx], mean, std)  # noqa: E731
    return Task(name, "classify", split(x_train, y_train, idx_train), split(x_train, y_train, idx_val),
                split(x_test, y_test, idx_test), seq_len=1024, n_classes=10, d_input=C, seed=seed,
                info=dict(profile=profile, params=p, source=str(Path(root) / "cifar-10-batches-py"),
                          mean=mean.tolist(), std=std.tolist()))
