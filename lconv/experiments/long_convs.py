"""Notebook 01 (long convolutions): its settings, the direct-vs-FFT timing and the roughness verdict.

    from lconv.experiments import settings, compare, long_conv_variant
    from lconv.experiments.long_convs import LONG_CONVS, time_convs, loglog_slope, roughness_verdict

`time_convs` / `loglog_slope` time lconv.direct_conv (O(L²)) against lconv.fft_conv (O(L log L)); the model part of
the notebook is one plain (unregularised) long-conv model trained by lconv.experiments.compare.
"""
from __future__ import annotations

import math
import time

import numpy as np
import torch

from lconv.conv import direct_conv, fft_conv

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

def roughness_verdict(m0, m1, noise, steps):
    """Two sentences, chosen from the measured kernel metrics (kernel_metrics dicts at init m0, trained m1, and of
    white noise): are the trained, unregularised kernels noisy in time (total variation above half of white
    noise's), and did their spectrum become rougher than the random init's (spectral total variation)?"""
    if m1["total_variation"] > 0.5 * noise["total_variation"]:
        time_ = (f"As in the paper: the trained kernels are noisy — total variation {m1['total_variation']:.2f}, "
                 f"{m1['total_variation'] / noise['total_variation']:.0%} of white noise's, high-frequency share "
                 f"{m1['high_freq_energy']:.2f}.")
    else:
        time_ = (f"Not as in the paper, at this scale: training made the kernels smooth — total variation "
                 f"{m0['total_variation']:.2f} at init → {m1['total_variation']:.2f} after {steps} steps "
                 f"(white noise: {noise['total_variation']:.2f}), high-frequency share {m1['high_freq_energy']:.3f}. "
                 f"With mean pooling, the gradient of a kernel tap is nearly a running sum of the input over lags, "
                 f"smooth in the lag, and Adam moves every tap by ≈ lr per step, so after a few hundred steps that "
                 f"smooth update dwarfs the randn·0.002 init noise. The paper's figure shows kernels after full-scale "
                 f"training (10^5 steps at kernel lr 1e-3); whether they turn noisy there is what the full profile "
                 f"checks: `python -m lconv.workbook run --profile full --only 01` (or `make reproduce PROFILE=full`) "
                 f"on a GPU.")
    rough_f = m1["spectral_tv"] > m0["spectral_tv"]
    freq = (f"In frequency (spectral total variation, the paper's 'smooth in frequency'): {m0['spectral_tv']:.2f} at "
            f"init → {m1['spectral_tv']:.2f} trained (white noise {noise['spectral_tv']:.2f}): the spectrum became "
            + ("rougher than the random init's — noisy in frequency, as the paper says." if rough_f else
               "smoother than the random init's — not noisy in frequency at this scale either."))
    return time_ + "\n" + freq
