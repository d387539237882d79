r"""The experiments of notebooks 01–02 (and 04), as plain functions the notebooks call: notebooks stay thin.

    from lconv.experiments import SQUASH_SMOOTH, settings, squash_smooth_variants, compare
    cfg = settings(SQUASH_SMOOTH, "quick")
    run = compare(get_task("smnist", profile="quick"), squash_smooth_variants(**cfg["kernel"]),
                  **cfg["tasks"]["smnist"], seed=0, device="cpu", ckpt_dir="build/checkpoints/02_squash_smooth")
    run.table          # one row per variant: accuracies, kernel sparsity / smoothness, trainable share, time
    run.kernels        # variant → {"init": k0, "trained": k}, the regularised kernels (n_layers, C, H, L)

`compare` trains one SequenceClassifier per `Variant` with everything else equal (width, depth, steps, learning
rates, seed, data order) and checkpoints each run, so a re-run skips finished runs and resumes interrupted ones.
`time_convs` / `loglog_slope` time lconv.direct_conv (O(L²)) against lconv.fft_conv (O(L log L)).

Per-profile sizes live in one dict per experiment (LONG_CONVS for notebook 01, SQUASH_SMOOTH for 02): "smoke" runs
in seconds (tests), "quick" fits a 2-core CPU in minutes, "full" is the paper's setting (LRA configs of
HazyResearch/safari `configs/experiment/lra/long-conv-lra-*.yaml`, sCIFAR from the standalone script), for a GPU.
"""
from __future__ import annotations

import copy
import dataclasses
import hashlib
import json
import math
import time
from pathlib import Path

import numpy as np
import torch

from lconv.conv import direct_conv, fft_conv
from lconv.inspect import high_freq_energy, sparsity, spectral_total_variation, total_variation
from lconv.layers import LongConvKernel, S4DKernel
from lconv.models import SequenceClassifier, count_params
from lconv.results import pick_device
from lconv.train import evaluate, train

PROFILE_NAMES = ("smoke", "quick", "full")

# ---------------------------------------------------------------- per-profile settings

# Notebook 01: direct vs FFT timing, then one plain (unregularised) long-conv model trained on a task.
# Quick-scale training settings that learn on a CPU in minutes: post-norm, lr 1e-2, kernel lr 2e-2 (the paper's
# 1e-3 is its full-scale setting, tuned for 100k+ steps).
LONG_CONVS = {
    "smoke": dict(
        timing=dict(lengths=(64, 128, 256, 512), B=1, H=8, repeats=3, fit_from=128),
        task="digits", overrides={},
        train=dict(d_model=16, n_layers=1, steps=150, lr=1e-2, batch_size=32, warmup=10, prenorm=False),
        kernel=dict(kernel_lr=2e-2, channels=1)),
    "quick": dict(
        timing=dict(lengths=(256, 512, 1024, 2048, 4096, 8192), B=2, H=32, repeats=5, fit_from=1024),
        task="smnist", overrides=dict(n_val=500, n_test=1000),
        train=dict(d_model=32, n_layers=2, steps=200, lr=1e-2, batch_size=32, warmup=20, prenorm=False),
        kernel=dict(kernel_lr=2e-2, channels=1)),
    "full": dict(  # the standalone sCIFAR script's model (PAPER.md), without Squash
        timing=dict(lengths=(1024, 2048, 4096, 8192, 16384), B=2, H=64, repeats=5, fit_from=2048),
        task="cifar", overrides={},
        train=dict(d_model=256, n_layers=6, steps=270_000, lr=1e-2, batch_size=50, warmup=1000, weight_decay=0.05,
                   prenorm=False, dropout=0.1, eval_every=5000),
        kernel=dict(kernel_lr=1e-3, channels=2)),
}

# Notebook 02: no regularisation / + Squash / + Smooth / + both / S4D on several tasks, a λ sweep, random vs decay
# init. Per task: "train" feeds compare(), "overrides" feeds get_task(), "kernel" (optional) updates the profile's
# "kernel" options, which feed squash_smooth_variants / lam_sweep_variants / init_variants.
_QUICK = dict(d_model=32, n_layers=2, lr=1e-2, batch_size=32, prenorm=False)
SQUASH_SMOOTH = {
    "smoke": dict(
        kernel=dict(lam=0.002, kernel_lr=2e-2, smooth_window=7, channels=1, s4d_lr=1e-2),
        tasks={"digits": dict(train=dict(d_model=16, n_layers=1, steps=100, lr=1e-2, batch_size=32, warmup=10,
                                         prenorm=False), overrides={})},
        sweep=dict(task="digits", lams=(0.0, 0.002, 0.004)),
        init=dict(task="digits"),
        lra_tasks=()),
    "quick": dict(
        kernel=dict(lam=0.002, kernel_lr=2e-2, smooth_window=7, channels=1, s4d_lr=1e-2),
        tasks={
            "smnist": dict(train=dict(_QUICK, steps=250, warmup=25), overrides=dict(n_val=500, n_test=2000)),
            "listops": dict(train=dict(_QUICK, steps=800, warmup=80),
                            overrides=dict(n_train=8000, min_len=50, max_len=250, seq_len=256, n_val=250,
                                           n_test=1000)),
            # Pathfinder-32 stays at chance on a CPU budget (400 steps, with or without bidirectional kernels,
            # pre-norm and last-token pooling: the model memorises 2000 images but does not generalise), so it
            # gets a token 40 steps: its kernels still show what Squash and Smooth do, its accuracy says nothing.
            "pathfinder32": dict(train=dict(_QUICK, steps=40, warmup=4),
                                 overrides=dict(n_train=1000, n_val=200, n_test=200)),
        },
        sweep=dict(task="smnist", lams=(0.0, 0.001, 0.002, 0.004)),
        init=dict(task="smnist"),
        lra_tasks=()),
    "full": dict(  # safari configs/experiment/lra/long-conv-lra-*.yaml (their norm is BatchNorm; LayerNorm here)
        kernel=dict(lam=0.002, kernel_lr=1e-3, smooth_window=7, channels=2, s4d_lr=1e-3, kernel_dropout=0.2),
        tasks={
            "lra_listops": dict(train=dict(d_model=128, n_layers=8, steps=80_000, warmup=10_000, lr=1e-2,
                                           weight_decay=0.05, batch_size=50, prenorm=False, eval_every=2000),
                                kernel=dict(lam=0.002, kernel_lr=5e-4, kernel_dropout=0.2), overrides={}),
            "lra_imdb": dict(train=dict(d_model=256, n_layers=6, steps=50_000, warmup=5000, lr=1e-2,
                                        weight_decay=0.05, batch_size=16, prenorm=True, eval_every=2000),
                             kernel=dict(lam=0.003, kernel_lr=1e-3, kernel_dropout=0.2), overrides={}),
            "lra_aan": dict(train=dict(d_model=256, n_layers=6, steps=50_000, warmup=2500, lr=1e-2,
                                       weight_decay=0.05, batch_size=32, prenorm=True, eval_every=2000),
                            kernel=dict(lam=0.004, kernel_lr=1e-4, kernel_dropout=0.1), overrides={}),
            "cifar_gray": dict(train=dict(d_model=512, n_layers=6, steps=200_000, warmup=1000, lr=1e-2,
                                          weight_decay=0.05, batch_size=50, prenorm=False, dropout=0.1,
                                          eval_every=5000),
                               kernel=dict(lam=0.003, kernel_lr=1e-3, kernel_dropout=0.2), overrides={}),
            "lra_pathfinder": dict(train=dict(d_model=256, n_layers=6, steps=500_000, warmup=2500, lr=4e-3,
                                              weight_decay=0.03, batch_size=64, prenorm=True, pool="last",
                                              eval_every=10_000),
                                   kernel=dict(lam=0.001, kernel_lr=1e-3, kernel_dropout=0.3, bidirectional=True),
                                   overrides={}),
            "lra_path128": dict(train=dict(d_model=256, n_layers=6, steps=500_000, warmup=10_000, lr=5e-4,
                                           weight_decay=0.05, batch_size=16, prenorm=True, eval_every=10_000),
                                kernel=dict(lam=0.001, kernel_lr=5e-4, kernel_dropout=0.3, bidirectional=True),
                                overrides={}),
            # sequential CIFAR (colour), the standalone script (PAPER.md): 300 epochs of 45k images at batch 50
            "cifar": dict(train=dict(d_model=256, n_layers=6, steps=270_000, warmup=1000, lr=1e-2,
                                     weight_decay=0.05, batch_size=50, prenorm=False, dropout=0.1, eval_every=5000),
                          kernel=dict(lam=0.001, kernel_lr=1e-3, kernel_dropout=0.2), overrides={}),
        },
        sweep=dict(task="cifar", lams=(0.0, 0.001, 0.002, 0.003)),
        init=dict(task="cifar"),
        # the six LRA tasks the paper averages (ListOps, Text, Retrieval, Image, Pathfinder, Path-X)
        lra_tasks=("lra_listops", "lra_imdb", "lra_aan", "cifar_gray", "lra_pathfinder", "lra_path128")),
}


def settings(table, profile):
    """The entry of a per-profile settings dict (LONG_CONVS, SQUASH_SMOOTH) for `profile`, as a deep copy."""
    if profile not in table:
        raise ValueError(f"profile must be one of {tuple(table)}, got {profile!r}")
    return copy.deepcopy(table[profile])


def task_settings(cfg, name):
    """(train kwargs for compare, get_task overrides, kernel options) of task `name` in a SQUASH_SMOOTH entry."""
    if name not in cfg["tasks"]:
        raise ValueError(f"task {name!r} is not in this profile; choose one of {sorted(cfg['tasks'])}")
    spec = cfg["tasks"][name]
    return dict(spec["train"]), dict(spec.get("overrides", {})), {**cfg["kernel"], **spec.get("kernel", {})}


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


def squash_smooth_variants(lam=0.002, kernel_lr=1e-3, smooth_window=7, channels=1, s4d_lr=None,
                           kernel_dropout=0.0, bidirectional=False, d_state=64, init="random"):
    """The five models of the paper's first claim: long conv with no regularisation, + Squash, + Smooth, + both, S4D.

    Everything but the regulariser is shared. "long conv" has no kernel regularisation at all (λ = 0, no smoothing,
    no kernel dropout); the others use `kernel_dropout` as the paper's configs do.
    """
    if not lam > 0:
        raise ValueError(f"squash_smooth_variants: lam must be > 0 for the Squash variants, got {lam!r}")
    shared = dict(kernel_lr=kernel_lr, channels=channels, bidirectional=bidirectional, init=init)
    return [
        long_conv_variant("long conv", **shared),
        long_conv_variant("+ Squash", lam=lam, kernel_dropout=kernel_dropout, **shared),
        long_conv_variant("+ Smooth", smooth_window=smooth_window, kernel_dropout=kernel_dropout, **shared),
        long_conv_variant("+ Squash + Smooth", lam=lam, smooth_window=smooth_window, kernel_dropout=kernel_dropout,
                          **shared),
        Variant("S4D", "s4d", dict(channels=channels, bidirectional=bidirectional, d_state=d_state,
                                   lr=kernel_lr if s4d_lr is None else s4d_lr)),
    ]


def lam_sweep_variants(lams, *, kernel_lr=1e-3, channels=1, kernel_dropout=0.0, bidirectional=False,
                       init="random", **_ignored):
    """Long conv + Squash at each λ (λ = 0: no regularisation, as the "long conv" variant), named "λ = …"."""
    shared = dict(kernel_lr=kernel_lr, channels=channels, bidirectional=bidirectional, init=init)
    return [long_conv_variant(f"λ = {lam:g}", lam=lam, kernel_dropout=kernel_dropout if lam > 0 else 0.0, **shared)
            for lam in lams]


def init_variants(*, lam=0.002, kernel_lr=1e-3, channels=1, kernel_dropout=0.0, bidirectional=False, **_ignored):
    """Long conv + Squash from the two initialisations: random (randn·0.002) and exponential decay."""
    shared = dict(lam=lam, kernel_lr=kernel_lr, channels=channels, bidirectional=bidirectional,
                  kernel_dropout=kernel_dropout)
    return [long_conv_variant("random init", init="random", **shared),
            long_conv_variant("decay init", init="decay", **shared)]


def build_model(task, variant, *, d_model, n_layers, prenorm=False, dropout=0.0, pool="mean", seed=0):
    """A SequenceClassifier for `task` with `variant`'s mixer, its parameters drawn from `seed`."""
    if task.kind != "classify":
        raise ValueError(f"build_model: task {task.name!r} is a {task.kind!r} task; compare() trains classifiers")
    torch.manual_seed(seed)
    return SequenceClassifier(d_input=task.d_input, vocab_size=task.vocab_size, n_classes=task.n_classes,
                              d_model=d_model, n_layers=n_layers, l_max=task.seq_len, mixer=variant.mixer,
                              prenorm=prenorm, dropout=dropout, pool=pool, **variant.kwargs)


def kernel_modules(model):
    """The model's convolution-kernel modules (LongConvKernel, S4DKernel), in layer order."""
    return [m for m in model.modules() if isinstance(m, (LongConvKernel, S4DKernel))]


@torch.no_grad()
def learned_kernels(model):
    """The regularised kernels every layer applies at evaluation (no dropout): (n_layers, C, H, L) on the CPU."""
    mods = kernel_modules(model)
    if not mods:
        raise ValueError("learned_kernels: the model has no LongConvKernel/S4DKernel (is its mixer a long conv?)")
    states = [m.training for m in mods]
    try:
        for m in mods:
            m.eval()
        return torch.stack([m().detach().float().cpu() for m in mods])  # (n_layers, C, H, L)
    finally:
        for m, s in zip(mods, states):
            m.train(s)


def trainable_fraction(model):
    """Share of stored long-kernel entries above λ (Squash gives the others zero gradient); NaN without Squash.

    With Smooth before Squash the zero-gradient mask is on smooth(K), not K, so there the share is indicative only.
    """
    mods = [m for m in kernel_modules(model) if isinstance(m, LongConvKernel)]
    if not mods or all(m.lam == 0 for m in mods):
        return float("nan")
    n = sum(m.raw.numel() for m in mods)
    return sum(m.trainable_fraction() * m.raw.numel() for m in mods) / n


def kernel_metrics(k, cutoff=0.5):
    """Sparsity (share of exact zeros); smoothness in time: total variation (≈ 1.4 white noise, → 0 smooth) and
    high-frequency share; smoothness in frequency: spectral total variation (≈ 0.46 white noise, → 0 smooth)."""
    return {"sparsity": sparsity(k), "total_variation": total_variation(k),
            "high_freq_energy": high_freq_energy(k, cutoff), "spectral_tv": spectral_total_variation(k)}


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
    examples after training (lconv.experiments.train_accuracy).
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
    dev = pick_device(device) if isinstance(device, str) else torch.device(device)
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


# ---------------------------------------------------------------- kernels to look at

def example_kernel(L=256, seed=0, noise=0.002):
    """A kernel like a learned one: a decaying oscillation plus white noise at the init scale (randn·noise), (L,)."""
    g = torch.Generator().manual_seed(seed)
    t = torch.arange(L, dtype=torch.float32)
    clean = 0.01 * torch.exp(-t / (L / 8)) * torch.cos(2 * math.pi * t / (L / 6))
    return clean + noise * torch.randn(L, generator=g)  # (L,)


# ---------------------------------------------------------------- direct vs FFT timing

def _best_time(fn, repeats):
    """Fastest wall time of fn() over `repeats` calls after one warm-up call (the minimum: least disturbed by
    other processes on a shared machine)."""
    fn()
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return float(min(times))


def time_convs(lengths, *, B=1, H=8, repeats=3, seed=0, methods=None, max_seconds=None, threads=1):
    """Best-of-`repeats` CPU time of each convolution method at each length L (u (B, H, L), k (H, L)): a DataFrame.

    methods: name → fn(u, k) (default lconv.direct_conv and lconv.fft_conv). A method whose call exceeds
    `max_seconds` is not timed at longer lengths. `threads` pins torch's intra-op threads while timing (restored
    after). Columns: L, method, seconds.
    """
    import pandas as pd

    methods = methods or {"direct": direct_conv, "fft": fft_conv}
    lengths = sorted(int(L) for L in lengths)
    if not lengths or lengths[0] < 2:
        raise ValueError(f"time_convs: lengths must be integers ≥ 2, got {lengths}")
    g = torch.Generator().manual_seed(seed)
    rows, stopped = [], set()
    old_threads = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        for L in lengths:
            u = torch.randn(B, H, L, generator=g)  # (B, H, L)
            k = torch.randn(H, L, generator=g) * 0.002  # (H, L)
            for name, fn in methods.items():
                if name in stopped:
                    continue
                sec = _best_time(lambda: fn(u, k), repeats)
                rows.append({"L": L, "method": name, "seconds": sec})
                if max_seconds is not None and sec > max_seconds:
                    stopped.add(name)
    finally:
        torch.set_num_threads(old_threads)
    return pd.DataFrame(rows)


def loglog_slope(L, seconds):
    """Slope of log(seconds) against log(L) by least squares (numpy.polyfit): ≈ 2 for O(L²), ≈ 1 for O(L log L)."""
    L, seconds = np.asarray(L, dtype=float), np.asarray(seconds, dtype=float)
    if L.shape != seconds.shape or L.size < 2 or (L <= 0).any() or (seconds <= 0).any():
        raise ValueError("loglog_slope: need ≥ 2 positive (L, seconds) pairs of equal length")
    return float(np.polyfit(np.log(L), np.log(seconds), 1)[0])


# ---------------------------------------------------------------- reading the numbers

def chance_level(task):
    """Accuracy of always predicting the most frequent test label."""
    ys = torch.tensor([int(task.test[i][1]) for i in range(len(task.test))])
    return torch.bincount(ys).max().item() / len(ys)


def accuracy_verdict(table, chance, base="long conv", other="+ Squash", margin=None):
    """One sentence per task, chosen from the measured test accuracies: did `other` beat `base` by > margin?

    table: compare() rows (any number of tasks); chance: task name → chance accuracy. margin=None: two standard
    errors of the difference of two accuracies on the task's test set, 2·sqrt(2·p(1 − p)/n_test) (one seed each,
    so this is a floor on the noise), or 0.02 when the table has no n_test column. A variant counts as having
    learned only if its validation accuracy (when the table has one) clears chance + margin as well as its test
    accuracy: a test score above chance with validation at chance is noise, not learning.
    """
    lines = []
    for task, rows in table.groupby("task", sort=False):
        acc = dict(zip(rows["variant"], rows["test_accuracy"]))
        if base not in acc or other not in acc:
            raise ValueError(f"accuracy_verdict: table for {task!r} lacks {base!r} or {other!r}")
        a, b, c = acc[base], acc[other], chance[task]
        m = margin
        if m is None:
            n = rows["n_test"].iloc[0] if "n_test" in rows else None
            p = (a + b) / 2
            m = 2 * math.sqrt(2 * p * (1 - p) / n) if n else 0.02
        held_out = rows[["test_accuracy", "val_accuracy"]] if "val_accuracy" in rows else rows[["test_accuracy"]]
        best = held_out.min(axis=1).max()  # min skips a missing validation score
        if best < c + m:
            on = "validation and test" if "val_accuracy" in rows else "test"
            lines.append(f"{task}: no variant learned beyond chance ({c:.1%}; best {best:.1%} on {on}) in this "
                         f"budget, so this task says nothing about the gap at this scale.")
        elif b - a > m:
            lines.append(f"{task}: {other} beats {base} by {100 * (b - a):.1f} points ({b:.1%} vs {a:.1%}): "
                         f"the paper's direction.")
        elif a - b > m:
            lines.append(f"{task}: {base} beats {other} by {100 * (a - b):.1f} points ({a:.1%} vs {b:.1%}): "
                         f"the opposite of the paper's gap.")
        else:
            lines.append(f"{task}: no accuracy gap at this scale ({other} {b:.1%} vs {base} {a:.1%}, within "
                         f"{100 * m:.1f} points, two standard errors on {task}'s test set).")
    return "\n".join(lines)


def smoothness_verdict(table, base="long conv", others=("+ Squash", "+ Smooth", "+ Squash + Smooth")):
    """One sentence per task and variant, from the trained kernels' total variation: smoother than `base` or not?"""
    lines = []
    for task, rows in table.groupby("task", sort=False):
        tv = dict(zip(rows["variant"], rows["total_variation"]))
        for o in others:
            if o not in tv:
                continue
            word = "smoother" if tv[o] < tv[base] else "rougher"
            lines.append(f"{task}: {o} kernels are {word} than {base}'s (total variation {tv[o]:.2f} vs "
                         f"{tv[base]:.2f}).")
    return "\n".join(lines)
