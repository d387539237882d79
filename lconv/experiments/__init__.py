r"""The experiments of the notebooks, one module per notebook, on one shared spine (this file).

    from lconv.experiments import settings, compare, long_conv_variant     # the spine
    from lconv.experiments.squash_smooth import SQUASH_SMOOTH, squash_smooth_variants, accuracy_verdict   # 02
    cfg = settings(SQUASH_SMOOTH, "quick")
    run = compare(get_task("smnist", profile="quick"), squash_smooth_variants(**cfg["kernel"]),
                  **cfg["tasks"]["smnist"]["train"], seed=0, device="cpu", ckpt_dir="build/checkpoints/02_squash_smooth")
    run.table          # one row per variant: accuracies, kernel sparsity / smoothness, trainable share, time

    long_convs         notebook 01: LONG_CONVS, example_kernel, time_convs, loglog_slope, the roughness verdict
    squash_smooth      notebook 02: SQUASH_SMOOTH, the variants, chance level, the accuracy / smoothness / init verdicts
    flashbutterfly     notebook 03: FLASHBUTTERFLY (the FFT sizes checked against fp64)
    learned_butterfly  notebook 04: LEARNED_BUTTERFLY, compare_fixed_learned, the gain verdict
    language_modeling  notebook 05 (and 06): SETTINGS, VARIANTS, matched models, train_lm, tokens, statements

One settings schema: every table maps a profile (lconv.data.PROFILES: "smoke" runs in seconds for the tests, "quick"
fits a 2-core CPU in minutes, "full" is the paper's setting for a GPU) to a plain dict whose sections are
`task` (an lconv.data name), `overrides` (get_task keyword arguments), `train` (compare()'s: width, depth and the
optimiser), `kernel` (the long-conv kernel: lam, kernel_lr, smooth_window, channels, ...; the kernel learning rate
is spelled `kernel_lr` everywhere) and the experiment's own sections (timing, tasks, butterfly, model, sample, ...).
`settings(TABLE, profile)` returns a deep copy; a notebook's `parameters` cell may override `lam` and `steps`.

`compare` trains one SequenceClassifier per `Variant` with everything else equal (width, depth, steps, learning
rates, seed, data order) and checkpoints each run (`fit`), so a re-run skips finished runs and resumes interrupted
ones. Verdict sentences are functions of the measured numbers in the per-notebook modules, tested like the rest:
notebooks print them and hold no if/else of their own.
"""
from __future__ import annotations

import copy
import dataclasses
import hashlib
import json
import time
from pathlib import Path

import numpy as np

from lconv.inspect import kernel_metrics, learned_kernels, trainable_fraction
from lconv.models import build_model, count_params
from lconv.results import pick_device
from lconv.train import evaluate, train


# ---------------------------------------------------------------- settings

def scaled_steps(train: dict, steps: int | None) -> dict:
    """`train` with `steps` optimiser steps: warm-up scaled in proportion, evaluation at most every `steps`."""
    train = dict(train)
    if steps is None:
        return train
    if not isinstance(steps, int) or steps < 1:
        raise ValueError(f"steps must be a positive int, got {steps!r}")
    train["warmup"] = min(steps, round(train.get("warmup", 0) * steps / train["steps"]))
    if train.get("eval_every"):
        train["eval_every"] = min(train["eval_every"], steps)
    train["steps"] = steps
    return train


def settings(table, profile, *, lam=None, steps=None):
    """The entry of a per-profile settings table for `profile`, as a deep copy; lam / steps (a notebook's
    `parameters` cell) override the Squash λ of every kernel section and the steps of every train section (warm-up
    scaled, scaled_steps); None keeps the profile's."""
    if profile not in table:
        raise ValueError(f"profile must be one of {tuple(table)}, got {profile!r}")
    cfg = copy.deepcopy(table[profile])
    sections = [cfg] + list(cfg.get("tasks", {}).values())
    for sec in sections:
        if steps is not None and "train" in sec:
            sec["train"] = scaled_steps(sec["train"], steps)
        if lam is not None and ("kernel" in sec and (sec is cfg or "lam" in sec["kernel"])):
            sec["kernel"]["lam"] = lam
    return cfg


# ---------------------------------------------------------------- variants and models

@dataclasses.dataclass
class Variant:
    """One model to compare: a display name, the mixer (lconv.mixers names) and the mixer's keyword arguments."""

    name: str
    mixer: str = "longconv"
    kwargs: dict = dataclasses.field(default_factory=dict)


def long_conv_variant(name, *, lam=0.0, smooth_window=None, kernel_dropout=0.0, kernel_lr=1e-3, channels=1,
                      bidirectional=False, init="random"):
    """A long-conv Variant; every kernel option is spelled out so that equal settings give equal run keys."""
    return Variant(name, "longconv", dict(lam=lam, smooth_window=smooth_window, kernel_dropout=kernel_dropout,
                                          lr=kernel_lr, channels=channels, bidirectional=bidirectional, init=init))


# ---------------------------------------------------------------- the comparison

@dataclasses.dataclass
class Comparison:
    """What compare() returns: the metrics table, the kernels before/after training, histories and models."""

    table: "object"  # pandas.DataFrame, one row per variant
    kernels: dict  # variant name → {"init": (n_layers, C, H, L), "trained": (n_layers, C, H, L)}
    histories: dict  # variant name → lconv.train history
    models: dict  # variant name → trained model (on the CPU, eval mode)


def checkpoint_dir(results_dir, notebook):
    """Where a notebook's runs are checkpointed: <results_dir>/../checkpoints/<notebook>."""
    return Path(results_dir).resolve().parent / "checkpoints" / notebook


def run_key(task, variant, train_cfg):
    """A short hash of everything that determines a run: runs with equal settings share one checkpoint."""
    blob = json.dumps({"task": task.name, "profile": task.info.get("profile"), "params": task.info.get("params"),
                       "n": [len(task.train), len(task.val), len(task.test)], "mixer": variant.mixer,
                       "kwargs": variant.kwargs, "train": train_cfg}, sort_keys=True, default=str)
    return hashlib.sha1(blob.encode()).hexdigest()[:10]


def train_accuracy(model, task, batch_size, device, max_examples=4000):
    """Accuracy on (at most `max_examples` of) the training set, in a fixed order, without dropout: with the test
    accuracy it gives the train–test (generalisation) gap."""
    from torch.utils.data import DataLoader, Subset

    data = task.train if len(task.train) <= max_examples else Subset(task.train, range(max_examples))
    return evaluate(model, DataLoader(data, batch_size=batch_size), "classify", device)["accuracy"]


def fit(model, task, variant, train_cfg, *, test_loader, device, ckpt_dir=None, prefix="run", eval_every=None,
        eval_batches=None, time_limit_s=None, log=False):
    """Train `model` with `train_cfg` (checkpointed at ckpt_dir/<task>/<prefix>-<run key>.pt), then test it.

    Returns (row, history): the row holds what every comparison reports (accuracies, final train loss, params,
    steps, steps_done, complete, times, whether the run was loaded from its checkpoint); the model is left on the
    CPU in eval mode. time_limit_s (lconv.train's): a run it cuts short is not tested (test_accuracy NaN,
    complete False); calling again with the same ckpt_dir resumes it. train_accuracy: on up to 4000 training
    examples after training (train_accuracy).
    """
    ckpt = None
    if ckpt_dir is not None:
        ckpt = Path(ckpt_dir) / task.name / f"{prefix}-{run_key(task, variant, train_cfg)}.pt"
    resumed = ckpt is not None and ckpt.exists()
    t0 = time.perf_counter()
    history = train(model, task, steps=train_cfg["steps"], lr=train_cfg["lr"], batch_size=train_cfg["batch_size"],
                    weight_decay=train_cfg["weight_decay"], warmup=train_cfg["warmup"], seed=train_cfg["seed"],
                    eval_every=eval_every, eval_batches=eval_batches, device=device, ckpt_path=ckpt,
                    time_limit_s=time_limit_s, log=log)
    wall = time.perf_counter() - t0
    done = len(history["train_loss"])
    complete = done == train_cfg["steps"]
    test = evaluate(model, test_loader, "classify", device) if complete else {"accuracy": float("nan"), "n": 0}
    train_acc = train_accuracy(model, task, test_loader.batch_size, device) if complete else float("nan")
    model.to("cpu").eval()
    tail = history["train_loss"][-max(1, train_cfg["steps"] // 10):]
    row = {"task": task.name, "variant": variant.name,
           "val_accuracy": history["val_accuracy"][-1] if history["val_accuracy"] else float("nan"),
           "test_accuracy": test["accuracy"], "n_test": test["n"], "train_accuracy": train_acc,
           "final_train_loss": float(np.mean(tail)),
           "params": count_params(model), "steps": train_cfg["steps"], "steps_done": done, "complete": complete,
           "train_time_s": history["train_time_s"], "wall_s": wall, "resumed": resumed}
    return row, history


def compare(task, variants, *, d_model, n_layers, steps, lr, batch_size, seed=0, device="auto", ckpt_dir=None,
            weight_decay=0.0, warmup=0, eval_every=None, eval_batches=None, prenorm=False, dropout=0.0,
            pool="mean", time_limit_s=None, log=False):
    """Train one classifier per variant on `task` with everything else equal; return a Comparison.

    Each run is checkpointed at `ckpt_dir/<task>/<mixer>-<hash of its settings>.pt` (lconv.train's ckpt_path):
    a finished run is loaded instead of retrained, an interrupted one resumes, and two variants with identical
    settings (e.g. the same λ in a sweep) share one run. time_limit_s caps the wall time of the whole call: a run
    still going when it is spent stops at a checkpoint with complete=False, and later variants are not started
    (their rows are missing); the same call again resumes. Table columns: task, variant, mixer, val_accuracy,
    test_accuracy, train_accuracy, final_train_loss, sparsity, total_variation, high_freq_energy, spectral_tv (of the trained
    kernels, all layers), the same four at init (…_init), trainable_fraction (after training) and trainable_fraction_init,
    params, steps, steps_done, complete, train_time_s, wall_s, resumed.
    """
    import pandas as pd

    if not variants:
        raise ValueError("compare: pass at least one Variant")
    names = [v.name for v in variants]
    if len(set(names)) != len(names):
        raise ValueError(f"compare: variant names must be unique, got {names}")
    dev = pick_device(device)
    train_cfg = dict(d_model=d_model, n_layers=n_layers, steps=steps, lr=lr, batch_size=batch_size, seed=seed,
                     weight_decay=weight_decay, warmup=warmup, prenorm=prenorm, dropout=dropout, pool=pool)
    _, _, test_loader = task.loaders(batch_size)
    rows, kernels, histories, models = [], {}, {}, {}
    deadline = None if time_limit_s is None else time.perf_counter() + time_limit_s
    for variant in variants:
        left = None if deadline is None else deadline - time.perf_counter()
        if left is not None and left <= 0:
            break
        model = build_model(task, variant, d_model=d_model, n_layers=n_layers, prenorm=prenorm, dropout=dropout,
                            pool=pool, seed=seed)
        k0 = learned_kernels(model)  # (n_layers, C, H, L)
        frac0 = trainable_fraction(model)
        row, history = fit(model, task, variant, train_cfg, test_loader=test_loader, device=dev, ckpt_dir=ckpt_dir,
                           prefix=variant.mixer, eval_every=eval_every, eval_batches=eval_batches,
                           time_limit_s=left, log=log)
        k = learned_kernels(model)  # (n_layers, C, H, L)
        row.update(mixer=variant.mixer, **kernel_metrics(k), **{f"{m}_init": v for m, v in kernel_metrics(k0).items()},
                   trainable_fraction=trainable_fraction(model), trainable_fraction_init=frac0)
        rows.append(row)
        kernels[variant.name] = {"init": k0, "trained": k}
        histories[variant.name] = history
        models[variant.name] = model
        if log:
            took = "loaded" if row["resumed"] else f"{row['wall_s']:.0f} s"
            print(f"{task.name:>14} | {variant.name:<18} test acc {row['test_accuracy']:.3f}  "
                  f"sparsity {row['sparsity']:.2f}  TV {row['total_variation']:.2f}  "
                  f"high-freq {row['high_freq_energy']:.2f}  ({took})", flush=True)
    return Comparison(pd.DataFrame(rows), kernels, histories, models)


