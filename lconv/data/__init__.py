"""Every task of the workbook behind one call: `get_task(name, profile=..., seed=..., root=...)` → `Task`.

    task = get_task("listops", profile="quick", seed=0)
    train, val, test = task.loaders(batch_size=32)

Profiles set the sizes: "smoke" is tiny (a few hundred short examples, seconds), "quick" fits a few minutes of
training on a 2-core CPU, "full" is the paper's size. Any size parameter of a task can be overridden by keyword
(e.g. `get_task("smnist", profile="quick", n_train=2000)`); an unknown keyword raises ValueError listing the known
ones. `root` (default: $LCONV_DATA, else ~/.cache/lconv) is where downloaded datasets are looked for and where
generated tasks and converted files are cached. Nothing here ever downloads.

Tasks (module):
    digits (digits)                    scikit-learn's 8×8 digits as sequences, L = 64
    smnist, psmnist (fashion_mnist)    sequential / permuted Fashion-MNIST, L = 784
    kjv (kjv)                          King James Bible language modelling, bytes or characters
    listops (listops)                  generated ListOps, LRA grammar
    pathfinder32/64, path128/256 (pathfinder)   generated Pathfinder / Path-X
    assoc_recall, induction (recall)   synthetic recall tasks for LM mixers
    cifar, cifar_gray (cifar)          sequential CIFAR-10, L = 1024
    lra_listops, lra_imdb, lra_aan, lra_pathfinder, lra_path128, lra_path256 (lra)   the LRA release files
    wikitext103 (wikitext)             WikiText-103 raw, bytes (or GPT-2 BPE with tiktoken)
"""
from __future__ import annotations

import importlib
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch.utils.data import DataLoader, Dataset

PROFILES = ("smoke", "quick", "full")
IGNORE_INDEX = -100  # targets that carry no loss (F.cross_entropy's default ignore_index)

# name → (module, builder function); modules are imported only when their task is asked for
TASKS = {
    "digits": ("digits", "digits_task"),
    "smnist": ("fashion_mnist", "smnist_task"),
    "psmnist": ("fashion_mnist", "smnist_task"),
    "kjv": ("kjv", "kjv_task"),
    "listops": ("listops", "listops_task"),
    "pathfinder32": ("pathfinder", "pathfinder_task"),
    "pathfinder64": ("pathfinder", "pathfinder_task"),
    "path128": ("pathfinder", "pathfinder_task"),
    "path256": ("pathfinder", "pathfinder_task"),
    "assoc_recall": ("recall", "assoc_recall_task"),
    "induction": ("recall", "induction_task"),
    "cifar": ("cifar", "cifar_task"),
    "cifar_gray": ("cifar", "cifar_task"),
    "lra_listops": ("lra", "lra_listops_task"),
    "lra_imdb": ("lra", "lra_imdb_task"),
    "lra_aan": ("lra", "lra_aan_task"),
    "lra_pathfinder": ("lra", "lra_pathfinder_task"),
    "lra_path128": ("lra", "lra_pathfinder_task"),
    "lra_path256": ("lra", "lra_pathfinder_task"),
    "wikitext103": ("wikitext", "wikitext_task"),
}


@dataclass
class Task:
    """A dataset split three ways plus what a model needs to know to consume it."""

    name: str
    kind: str  # "classify" | "lm"
    train: Dataset
    val: Dataset
    test: Dataset
    seq_len: int
    n_classes: int | None = None  # None for lm
    vocab_size: int | None = None  # None for continuous inputs
    d_input: int | None = None  # features per step for continuous inputs; None for tokens
    seed: int = 0
    info: dict = field(default_factory=dict)  # profile, parameters, source, pad_id, ...

    def loaders(self, batch_size: int, num_workers: int = 0):
        """(train, val, test) DataLoaders; train is shuffled by a generator seeded from `seed`."""
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        gen = torch.Generator().manual_seed(self.seed)
        kw = dict(batch_size=batch_size, num_workers=num_workers)
        return (DataLoader(self.train, shuffle=True, generator=gen, **kw),
                DataLoader(self.val, shuffle=False, **kw),
                DataLoader(self.test, shuffle=False, **kw))

    def __repr__(self) -> str:
        sizes = f"{len(self.train)}/{len(self.val)}/{len(self.test)}"
        return (f"Task({self.name!r}, kind={self.kind!r}, train/val/test={sizes}, seq_len={self.seq_len}, "
                f"n_classes={self.n_classes}, vocab_size={self.vocab_size}, d_input={self.d_input}, "
                f"profile={self.info.get('profile')!r})")


def data_root(root: str | os.PathLike | None = None) -> Path:
    """The data/cache root: `root` if given, else $LCONV_DATA, else ~/.cache/lconv."""
    if root is None:
        root = os.environ.get("LCONV_DATA") or Path.home() / ".cache" / "lconv"
    return Path(root).expanduser()


def resolve_params(name: str, profile: str, defaults: dict[str, dict], overrides: dict[str, Any]) -> dict:
    """The profile's defaults updated by `overrides`; unknown keys or profiles raise ValueError."""
    if profile not in PROFILES:
        raise ValueError(f"profile must be one of {PROFILES}, got {profile!r}")
    params = dict(defaults[profile])
    unknown = sorted(set(overrides) - set(params))
    if unknown:
        raise ValueError(f"task {name!r} has no parameter(s) {unknown}; known: {sorted(params)}")
    params.update(overrides)
    return params


def get_task(name: str, *, profile: str = "quick", seed: int = 0, root=None, **overrides) -> Task:
    """Build task `name` at `profile` size; `seed` fixes generated data and the training shuffle."""
    if name not in TASKS:
        raise ValueError(f"unknown task {name!r}; choose one of {sorted(TASKS)}")
    if profile not in PROFILES:
        raise ValueError(f"profile must be one of {PROFILES}, got {profile!r}")
    module, builder = TASKS[name]
    build = getattr(importlib.import_module(f"lconv.data.{module}"), builder)
    return build(name, profile=profile, seed=int(seed), root=data_root(root), **overrides)


__all__ = ["Task", "get_task", "TASKS", "PROFILES", "IGNORE_INDEX", "data_root", "resolve_params"]
