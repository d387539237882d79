"""Squash, smooth (time and frequency) and kernel dropout: values, gradients, the trainable fraction, bad input."""
import math

import numpy as np
import pytest
import torch

from lconv.regularize import gaussian_window, kernel_dropout, smooth, smooth_freq, squash


def test_squash_values():
    k = torch.tensor([-0.5, -0.1, -0.05, 0.0, 0.05, 0.1, 0.5])
    torch.testing.assert_close(squash(k, 0.1), torch.tensor([-0.4, 0.0, 0.0, 0.0, 0.0, 0.0, 0.4]))
    torch.testing.assert_close(squash(k, 0.0), k)


def test_squash_gradient_zero_below_lam():
    lam = 0.002
    k = (torch.randn(4, 64, dtype=torch.float64) * 0.002).requires_grad_()
    squash(k, lam).sum().backward()
    below = k.detach().abs() < lam
    assert below.any() and (~below).any()
    assert torch.equal(k.grad[below], torch.zeros_like(k.grad[below]))  # exactly zero: these never train
    assert torch.equal(k.grad[~below], torch.ones_like(k.grad[~below]))


def test_squash_gradcheck():
    k = torch.randn(3, 16, dtype=torch.float64)
    k = torch.where((k.abs() - 0.3).abs() < 0.05, k + 0.2 * torch.sign(k), k)  # keep away from the kink at |k| = λ
    assert torch.autograd.gradcheck(lambda k: squash(k, 0.3), (k.requires_grad_(),))


@pytest.mark.parametrize("lam, expected", [(0.001, 0.617), (0.002, 0.317), (0.003, 0.134)])
def test_trainable_fraction_at_init_scale(lam, expected):
    """With init randn·0.002, Squash at λ leaves P(|z| > λ/0.002) of the entries trainable (PAPER.md: 62/32/13 %)."""
    assert abs(expected - math.erfc(lam / 0.002 / math.sqrt(2))) < 1e-3  # the normal tail itself
    k = (torch.randn(200_000, dtype=torch.float64) * 0.002).requires_grad_()
    squash(k, lam).sum().backward()
    frac = (k.grad != 0).double().mean().item()
    assert abs(frac - expected) < 0.01


@pytest.mark.parametrize("lam", [-0.001, float("nan"), float("inf"), "0.1", torch.tensor([0.1, 0.2])])
def test_squash_rejects_bad_lam(lam):
    with pytest.raises(ValueError, match=r"lam must be a finite scalar ≥ 0"):
        squash(torch.randn(4, 8), lam)


def test_squash_rejects_integer_kernel():
    with pytest.raises(ValueError, match=r"k.float\(\)"):
        squash(torch.ones(4, 8, dtype=torch.long), 0.1)


def test_smooth_is_avgpool():
    k = torch.randn(2, 3, 20)
    ref = torch.nn.AvgPool1d(7, stride=1, padding=3)(k.reshape(6, 1, 20)).reshape(2, 3, 20)
    torch.testing.assert_close(smooth(k, 7), ref)
    direct = torch.stack([torch.nn.functional.pad(k, (3, 3))[..., t:t + 7].sum(-1) / 7 for t in range(20)], -1)
    torch.testing.assert_close(smooth(k, 7), direct)  # zero padding counts in the mean, as in AvgPool1d
    torch.testing.assert_close(smooth(k, 1), k)
    assert smooth(torch.randn(9), 3).shape == (9,)


@pytest.mark.parametrize("fn", [smooth, smooth_freq])
@pytest.mark.parametrize("window", [2, 6, 0, -3, 2.0])
def test_smoothing_rejects_even_or_bad_window(fn, window):
    with pytest.raises(ValueError, match=r"window must be an odd int ≥ 1"):
        fn(torch.randn(3, 16), window)


def test_smooth_gradcheck():
    k = torch.randn(2, 3, 12, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda k: smooth(k, 5), (k,))


def test_smooth_freq_matches_numpy():
    k = torch.randn(3, 21, dtype=torch.float64)  # odd L
    w = np.exp(-0.5 * (np.arange(5) - 2) ** 2)
    w /= w.sum()
    for h in range(3):
        k_f = np.fft.rfft(k[h].numpy())
        k_f = np.convolve(k_f.real, w, mode="same") + 1j * np.convolve(k_f.imag, w, mode="same")
        np.testing.assert_allclose(smooth_freq(k, 5)[h].numpy(), np.fft.irfft(k_f, n=21), atol=1e-12)
    torch.testing.assert_close(gaussian_window(5, torch.float64), torch.from_numpy(w))


def test_smooth_freq_smooths_the_spectrum():
    k = torch.randn(8, 256, dtype=torch.float64)
    y = smooth_freq(k, 7)
    assert y.shape == k.shape
    rough = lambda x: torch.fft.rfft(x).abs().diff(dim=-1).abs().mean()  # noqa: E731
    assert rough(y) < 0.5 * rough(k)
    torch.testing.assert_close(smooth_freq(k, 1), k)


def test_smooth_freq_gradcheck():
    k = torch.randn(2, 12, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda k: smooth_freq(k, 5), (k,))


def test_kernel_dropout():
    k = torch.randn(4, 1000)
    assert kernel_dropout(k, 0.2, training=False) is k
    y = kernel_dropout(k, 0.2, training=True)
    frac = (y == 0).float().mean().item()
    assert 0.17 < frac < 0.23
    torch.testing.assert_close(y[y != 0], k[y != 0] / 0.8)
    with pytest.raises(ValueError, match=r"p must be a float in \[0, 1\)"):
        kernel_dropout(k, 1.0, training=True)
