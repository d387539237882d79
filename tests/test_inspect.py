"""Kernel metrics on kernels whose answer is known, and the plot helper."""
import math

import pytest
import torch

from lconv.inspect import (high_freq_energy, plot_kernels, sparsity, spectral_total_variation, spectrum,
                           total_variation)
from lconv.regularize import smooth, squash


def test_sparsity_counts_exact_zeros():
    k = torch.randn(8, 512) * 0.002
    assert sparsity(k) == 0.0
    s = sparsity(squash(k, 0.002))
    assert abs(s - (1 - math.erfc(1 / math.sqrt(2)))) < 0.02  # P(|z| ≤ 1) ≈ 68 %
    assert sparsity(torch.zeros(3, 4)) == 1.0


def test_total_variation():
    t = torch.arange(1024, dtype=torch.float64)
    assert total_variation(torch.sin(2 * math.pi * t / 1024)) < 0.01
    assert total_variation(torch.ones(5, 16)) == 0.0
    assert total_variation(torch.zeros(5, 16)) == 0.0
    noise = torch.randn(16, 4096)
    assert abs(total_variation(noise) - 2 / math.sqrt(2)) < 0.03  # E|z1 − z2| / E|z| = √2·√(2/π) / √(2/π)
    assert total_variation(smooth(noise, 7)) < 0.5 * total_variation(noise)


def test_spectral_total_variation_is_smoothness_in_frequency():
    """White noise ≈ 0.46; a decaying kernel (energy near t = 0) has a smooth spectrum; two far-apart spikes (a
    sparse comb) make it oscillate; scale-free; all-zero channels are skipped."""
    noise = torch.randn(64, 2048)
    assert abs(spectral_total_variation(noise) - 0.46) < 0.02
    t = torch.arange(1024.0)
    decay = torch.exp(-t / 50)
    assert spectral_total_variation(decay) < 0.05
    comb = torch.zeros(1024)
    comb[0] = comb[700] = 1.0
    assert spectral_total_variation(comb) > spectral_total_variation(noise)
    assert spectral_total_variation(3.0 * noise) == pytest.approx(spectral_total_variation(noise))
    assert spectral_total_variation(torch.zeros(3, 64)) == 0.0
    assert spectral_total_variation(torch.stack([decay, torch.zeros(1024)])) == pytest.approx(
        spectral_total_variation(decay))


def test_high_freq_energy():
    L = 1024
    t = torch.arange(L, dtype=torch.float64)
    assert high_freq_energy(torch.sin(2 * math.pi * 10 * t / L)) < 1e-12  # 10 cycles: far below Nyquist/2
    assert high_freq_energy(torch.sin(2 * math.pi * 400 * t / L)) > 1 - 1e-12  # 400/512 of Nyquist
    noise = torch.randn(32, L)
    assert abs(high_freq_energy(noise, cutoff=0.5) - 0.5) < 0.02
    assert abs(high_freq_energy(noise, cutoff=0.75) - 0.25) < 0.02
    assert high_freq_energy(smooth(noise, 7)) < 0.1
    with pytest.raises(ValueError, match=r"cutoff is a fraction of Nyquist"):
        high_freq_energy(noise, cutoff=1.5)


def test_spectrum_shape_and_parseval():
    k = torch.randn(3, 17, dtype=torch.float64)
    mag = spectrum(k)
    assert mag.shape == (3, 9)
    power = mag ** 2
    power[..., 1:] *= 2  # odd L: no Nyquist bin
    torch.testing.assert_close(power.sum(-1) / 17, (k ** 2).sum(-1))


def test_metrics_reject_bad_input():
    with pytest.raises(ValueError, match=r"time dimension"):
        sparsity(torch.tensor(1.0))
    with pytest.raises(ValueError, match=r"must be real"):
        total_variation(torch.randn(4, 8, dtype=torch.cfloat))


def test_plot_kernels():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    kernels = {"raw": torch.randn(4, 64) * 0.002, "squash": squash(torch.randn(2, 4, 64) * 0.002, 0.002)}
    fig = plot_kernels(kernels, channels=(0, 3))
    assert len(fig.axes) == 4
    assert len(fig.axes[0].lines) == 2
    plt.close(fig)
    fig, ax = plt.subplots(2, 2)
    assert plot_kernels(kernels, ax=ax) is fig
    plt.close(fig)
    with pytest.raises(ValueError, match=r"channel 9 out of range"):
        plot_kernels(kernels, channels=(9,))
    plt.close("all")
