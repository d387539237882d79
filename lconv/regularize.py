r"""Kernel regularisers of the paper, applied to the stored kernel K on every forward pass.

Squash (soft thresholding) makes the kernel sparse in time: squash(k, λ) = sign(k)·relu(|k| − λ). Its gradient is
1 where |k| > λ and 0 elsewhere, and the kernel has no weight decay, so entries that start below λ never train:
with init randn·0.002 the trainable share is P(|z| > λ/0.002) ≈ 62 / 32 / 13 % for λ = 0.001 / 0.002 / 0.003.
Smooth averages neighbouring taps (AvgPool1d(w, stride 1, padding w//2), the official code's w = 7) and so damps
high frequencies; `smooth_freq` instead convolves the kernel's spectrum with a Gaussian exp(−½(i − w//2)²).
"""
import math

import torch
import torch.nn.functional as F


def _check_kernel(k, who):
    """Raise unless k is a real floating tensor with at least one (time) dimension."""
    if not isinstance(k, torch.Tensor):
        raise ValueError(f"{who}: k must be a torch.Tensor, got {type(k).__name__}")
    if not k.is_floating_point():
        raise ValueError(f"{who}: k has dtype {k.dtype}; pass a real floating tensor (k.float())")
    if k.ndim < 1 or k.shape[-1] < 1:
        raise ValueError(f"{who}: k must have a non-empty last (time) dimension, got shape {tuple(k.shape)}")


def _check_window(window, who):
    """Raise unless window is an odd int ≥ 1 (an even window would shift the kernel by half a tap)."""
    if not isinstance(window, int) or isinstance(window, bool) or window < 1 or window % 2 == 0:
        raise ValueError(f"{who}: window must be an odd int ≥ 1 so the average is centred, got {window!r}; "
                         f"use {window + 1 if isinstance(window, int) and window > 0 else 7} instead")


def squash(k, lam):
    """Soft threshold sign(k)·relu(|k| − lam): zeroes small taps, shrinks the rest by lam."""
    _check_kernel(k, "squash")
    if isinstance(lam, torch.Tensor):
        bad = lam.numel() != 1 or not torch.isfinite(lam).all() or (lam < 0).any()
    else:
        bad = not isinstance(lam, (int, float)) or not math.isfinite(lam) or lam < 0
    if bad:
        raise ValueError(f"squash: lam must be a finite scalar ≥ 0 on the kernel's scale (≈ 0.001–0.003 for "
                         f"init randn·0.002), got {lam!r}")
    return torch.sign(k) * F.relu(k.abs() - lam)


def smooth(k, window=7):
    """Moving average over time: AvgPool1d(window, stride 1, padding window//2) along the last dim, same length."""
    _check_kernel(k, "smooth")
    _check_window(window, "smooth")
    if window == 1:
        return k
    shape = k.shape
    y = F.avg_pool1d(k.reshape(-1, 1, shape[-1]), window, stride=1, padding=window // 2)  # (…, 1, L)
    return y.reshape(shape)  # (..., L)


def gaussian_window(window, dtype=torch.float32, device=None):
    """Weights exp(−½(i − window//2)²), i = 0…window−1, normalised to sum 1."""
    i = torch.arange(window, dtype=dtype, device=device)
    w = torch.exp(-0.5 * (i - window // 2) ** 2)
    return w / w.sum()


def smooth_freq(k, window=5):
    """Smooth the kernel's spectrum: rfft → convolve real and imaginary parts with a Gaussian → irfft, same length.

    The frequency axis is zero-padded by window//2 on each side; the Gaussian is normalised to sum 1.
    """
    _check_kernel(k, "smooth_freq")
    _check_window(window, "smooth_freq")
    if window == 1:
        return k
    shape, L = k.shape, k.shape[-1]
    dtype = torch.float64 if k.dtype == torch.float64 else torch.float32
    k_f = torch.fft.rfft(k.to(dtype), n=L)  # (..., L//2 + 1) complex
    parts = torch.view_as_real(k_f).reshape(-1, k_f.shape[-1], 2).transpose(1, 2)  # (M, 2, L//2 + 1)
    parts = parts.reshape(-1, 1, k_f.shape[-1])  # (2M, 1, L//2 + 1)
    w = gaussian_window(window, dtype, k.device).view(1, 1, window)  # (1, 1, window)
    parts = F.conv1d(parts, w, padding=window // 2)  # (2M, 1, L//2 + 1)
    parts = parts.reshape(-1, 2, k_f.shape[-1]).transpose(1, 2).contiguous()  # (M, L//2 + 1, 2)
    k_f = torch.view_as_complex(parts).reshape(*shape[:-1], -1)  # (..., L//2 + 1)
    return torch.fft.irfft(k_f, n=L).to(k.dtype)  # (..., L)


def kernel_dropout(k, p, training):
    """Dropout on the kernel taps (inverted scaling), active only in training."""
    if not (isinstance(p, (int, float)) and 0.0 <= p < 1.0):
        raise ValueError(f"kernel_dropout: p must be a float in [0, 1), got {p!r}")
    if p == 0.0 or not training:
        return k
    return F.dropout(k, p, training=True)
