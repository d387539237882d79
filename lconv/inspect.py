"""Kernel metrics and plots shared by the notebooks: is a learned kernel sparse in time and smooth in frequency?

All metrics take a kernel tensor whose last dimension is time, (L,), (H, L) or (C, H, L), and return one float
over every tap of every channel (computed in fp64 on the CPU, without gradients).
"""
import torch

from lconv.layers import LongConvKernel, S4DKernel


def _as_kernel(k, who):
    """Detached fp64 CPU copy of k with a non-empty last (time) dim."""
    if isinstance(k, torch.nn.Module):
        k = k()
    if not isinstance(k, torch.Tensor):
        k = torch.as_tensor(k)
    if k.ndim < 1 or k.shape[-1] < 2:
        raise ValueError(f"{who}: k needs a time dimension (last) of at least 2 taps, got shape {tuple(k.shape)}")
    if k.is_complex() or not (k.is_floating_point() or k.dtype in (torch.int32, torch.int64)):
        raise ValueError(f"{who}: k must be real, got dtype {k.dtype}")
    return k.detach().to("cpu", torch.float64)


def sparsity(k):
    """Fraction of taps that are exactly zero (what Squash produces)."""
    k = _as_kernel(k, "sparsity")
    return (k == 0).double().mean().item()


def total_variation(k):
    """Mean |k[t+1] − k[t]| divided by mean |k|: ≈ 0 for smooth kernels, ≈ 1.1 for white noise; 0 for k ≡ 0."""
    k = _as_kernel(k, "total_variation")
    scale = k.abs().mean()
    if scale == 0:
        return 0.0
    return ((k[..., 1:] - k[..., :-1]).abs().mean() / scale).item()


def spectrum(k):
    """Magnitude spectrum |rfft(k)| along time: (..., L) → (..., L//2 + 1), bin f at f/L cycles per step."""
    k = _as_kernel(k, "spectrum")
    return torch.fft.rfft(k, dim=-1).abs()  # (..., L//2 + 1)


def high_freq_energy(k, cutoff=0.5):
    """Share of spectral energy Σ|rfft(k)|² in bins above `cutoff`·Nyquist (≈ 1 − cutoff for white noise)."""
    if not 0.0 <= cutoff < 1.0:
        raise ValueError(f"high_freq_energy: cutoff is a fraction of Nyquist in [0, 1), got {cutoff!r}")
    k = _as_kernel(k, "high_freq_energy")
    L = k.shape[-1]
    power = torch.fft.rfft(k, dim=-1).abs() ** 2  # (..., L//2 + 1)
    power[..., 1:(L + 1) // 2] *= 2  # one-sided spectrum: bins other than DC and Nyquist count twice
    frac = torch.arange(power.shape[-1], dtype=torch.float64) / (L / 2)  # bin frequency / Nyquist
    total = power.sum()
    if total == 0:
        return 0.0
    return (power[..., frac > cutoff].sum() / total).item()


def spectral_total_variation(k):
    """Roughness of k's magnitude spectrum, the "smooth in frequency" of the paper's figure: mean |Δ|K(f)|| over
    mean |K(f)| of K = rfft(k, n=2L), the zero-padded spectrum a causal FFT convolution multiplies by. ≈ 0.46 for
    white noise (what randn init gives), lower when |K| varies slowly with f; 0 for k ≡ 0. Averaged over channels."""
    k = _as_kernel(k, "spectral_total_variation")
    L = k.shape[-1]
    mag = torch.fft.rfft(k.reshape(-1, L), n=2 * L, dim=-1).abs()  # (channels, L + 1)
    scale = mag.mean(-1)
    live = scale > 0  # all-zero channels (fully squashed) have no spectrum to be rough
    if not live.any():
        return 0.0
    return ((mag[live, 1:] - mag[live, :-1]).abs().mean(-1) / scale[live]).mean().item()


def plot_kernels(kernels, channels=(0,), ax=None, max_taps=None):
    """Plot each named kernel's time domain (left) and magnitude spectrum (right), one row per kernel.

    kernels: dict name → (H, L) or (C, H, L) tensor (C folds into H); channels: indices into H to draw;
    ax: optional (len(kernels), 2) array of axes. Returns the figure.
    """
    import matplotlib.pyplot as plt
    import numpy as np

    if not isinstance(kernels, dict) or not kernels:
        raise ValueError("plot_kernels: pass a non-empty dict {name: kernel tensor (H, L)}")
    n = len(kernels)
    if ax is None:
        fig, ax = plt.subplots(n, 2, figsize=(10, 2.6 * n), squeeze=False)
    else:
        ax = np.asarray(ax).reshape(n, 2)
        fig = ax[0, 0].figure
    for row, (name, k) in enumerate(kernels.items()):
        k = _as_kernel(k, "plot_kernels")
        k = k.reshape(-1, k.shape[-1])  # (C·H, L)
        mag = spectrum(k)  # (C·H, L//2 + 1)
        taps = k.shape[-1] if max_taps is None else min(max_taps, k.shape[-1])
        freqs = np.arange(mag.shape[-1]) / k.shape[-1]
        for h in channels:
            if not 0 <= h < k.shape[0]:
                raise ValueError(f"plot_kernels: channel {h} out of range for {name!r} with {k.shape[0]} channels")
            ax[row, 0].plot(k[h, :taps].numpy(), lw=0.8, label=f"h={h}")
            ax[row, 1].semilogy(freqs, mag[h].numpy() + 1e-12, lw=0.8, label=f"h={h}")
        ax[row, 0].set_title(f"{name}: time (sparsity {sparsity(k):.0%}, TV {total_variation(k):.2f})")
        ax[row, 1].set_title(f"{name}: |spectrum| (high-freq share {high_freq_energy(k):.0%})")
        ax[row, 0].set_xlabel("lag")
        ax[row, 1].set_xlabel("frequency (cycles / step)")
        if len(channels) > 1:
            ax[row, 0].legend(fontsize=7)
    fig.tight_layout()
    return fig


# ---------------------------------------------------------------- the kernels inside a model

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
