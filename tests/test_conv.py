"""fft_conv against the O(L²) reference (and numpy), the bidirectional convention, gradients and input checks."""
import numpy as np
import pytest
import torch

from lconv.conv import bidirectional_kernel, direct_conv, fft_conv, fft_size


def flat_kernel(*shape):
    """A kernel that does not decay: every tap, the last included, has magnitude ≥ 0.5."""
    k = torch.randn(*shape, dtype=torch.float64)
    return torch.sign(k) * (0.5 + k.abs())


@pytest.mark.parametrize("L", [1, 2, 7, 16, 33, 64])
@pytest.mark.parametrize("causal", [True, False])
@pytest.mark.parametrize("channels", [None, 3])
def test_fft_conv_matches_direct_fp64(L, causal, channels):
    H = 4
    u = torch.randn(2, H, L, dtype=torch.float64)
    for Lk in sorted({1, (L + 1) // 2, L}):
        K = Lk if causal else 2 * Lk - 1
        k = flat_kernel(H, K) if channels is None else flat_kernel(channels, H, K)
        y = fft_conv(u, k, causal=causal)
        ref = direct_conv(u, k, causal=causal)
        assert y.shape == ref.shape == ((2, H, L) if channels is None else (2, channels, H, L))
        torch.testing.assert_close(y, ref, atol=1e-10, rtol=0)


def test_direct_conv_matches_numpy():
    L, H = 11, 3
    u = torch.randn(2, H, L, dtype=torch.float64)
    k = flat_kernel(H, L)
    y = direct_conv(u, k)
    kc = flat_kernel(H, 2 * L - 1)
    yb = direct_conv(u, kc, causal=False)
    for b in range(2):
        for h in range(H):
            full = np.convolve(u[b, h].numpy(), k[h].numpy())  # linear convolution, length 2L − 1
            np.testing.assert_allclose(y[b, h].numpy(), full[:L], atol=1e-12)
            full = np.convolve(u[b, h].numpy(), kc[h].numpy())  # centre tap at index L − 1 is lag 0
            np.testing.assert_allclose(yb[b, h].numpy(), full[L - 1:2 * L - 1], atol=1e-12)


def test_no_wraparound_last_tap():
    L = 9  # odd on purpose
    u = torch.zeros(1, 1, L, dtype=torch.float64)
    u[..., 0] = 1.0
    k = torch.zeros(1, L, dtype=torch.float64)
    k[0, L - 1] = 1.0  # only the last tap: u[0] must land on y[L−1] and nowhere else
    y = fft_conv(u, k)
    expected = torch.zeros(1, 1, L, dtype=torch.float64)
    expected[..., L - 1] = 1.0
    torch.testing.assert_close(y, expected, atol=1e-12, rtol=0)
    u2 = torch.zeros_like(u)
    u2[..., L - 1] = 1.0  # the last input may not wrap onto early outputs
    assert fft_conv(u2, k)[..., : L - 1].abs().max() < 1e-12
    assert fft_size(L, L) >= 2 * L - 1


def test_bidirectional_kernel_matches_official_layout():
    """Our centred kernel equals the official code's: k0 padded right, k1 flipped into the second half, n = 2L."""
    B, C, H, L = 2, 2, 3, 10
    u = torch.randn(B, H, L, dtype=torch.float64)
    k0, k1 = flat_kernel(C, H, L), flat_kernel(C, H, L)
    k_off = torch.nn.functional.pad(k0, (0, L)) + torch.nn.functional.pad(k1.flip(-1), (L, 0))  # (C, H, 2L)
    y_off = torch.fft.irfft(torch.fft.rfft(u, n=2 * L)[:, None] * torch.fft.rfft(k_off, n=2 * L), n=2 * L)[..., :L]
    y = fft_conv(u, bidirectional_kernel(k0, k1), causal=False)
    torch.testing.assert_close(y, y_off, atol=1e-10, rtol=0)


def test_skip_D_and_dtypes():
    u = torch.randn(2, 3, 8)
    k = torch.randn(2, 3, 8)
    D = torch.randn(2, 3)
    y = fft_conv(u, k, D=D)
    torch.testing.assert_close(y, fft_conv(u, k) + u[:, None] * D[..., None])
    assert y.dtype == torch.float32
    y16 = fft_conv(u.half(), k)
    assert y16.dtype == torch.float16
    torch.testing.assert_close(y16.float(), fft_conv(u.half().float(), k), atol=2e-3, rtol=2e-3)
    k2 = torch.randn(3, 8)
    torch.testing.assert_close(direct_conv(u, k2, D=D[0]), fft_conv(u, k2, D=D[0]), atol=1e-5, rtol=1e-5)


def test_single_channel_kernel_shaped_1_H_L_is_rejected_with_the_fix():
    """The peer library's common mistake: k (1, H, L) for one channel. One channel is (H, L); C ≥ 2 is (C, H, L)."""
    u = torch.randn(2, 3, 8, dtype=torch.float64)
    k = torch.randn(3, 8, dtype=torch.float64)
    for conv in (fft_conv, direct_conv):
        with pytest.raises(ValueError, match=r"k has shape \(1, 3, 8\).*k.squeeze\(0\)"):
            conv(u, k[None])
    y = fft_conv(u, torch.stack([k, 2 * k]))  # two channels: (B, 2, H, L)
    torch.testing.assert_close(y[:, 1], 2 * fft_conv(u, k))


@pytest.mark.parametrize("causal", [True, False])
def test_fft_conv_gradcheck(causal):
    L = 7
    u = torch.randn(2, 2, L, dtype=torch.float64, requires_grad=True)
    k = torch.randn(2, 2, L if causal else 2 * L - 1, dtype=torch.float64, requires_grad=True)
    D = torch.randn(2, 2, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda u, k, D: fft_conv(u, k, causal=causal, D=D), (u, k, D))


def _raises(match, u, k, **kw):
    with pytest.raises(ValueError, match=match):
        fft_conv(u, k, **kw)
    with pytest.raises(ValueError, match=match):
        direct_conv(u, k, **{key: v for key, v in kw.items() if key != "check_finite"})


def test_errors_name_the_fix():
    u = torch.randn(2, 4, 8)
    _raises(r"pass k as \(H, L\)", u, torch.randn(1, 8))  # one filter for 4 channels
    _raises(r"pass k as \(H, L\) or \(C, H, L\) with the same H", u, torch.randn(3, 8))
    _raises(r"transpose\(0, 1\)", u, torch.randn(4, 2, 8))  # (H, C, L) mix-up
    # issue 14: u as models hold it, (B, L, H), with k (H, L) or (C, H, L)
    _raises(r"u is probably transposed.*\(B, L, H\).*u.transpose\(1, 2\)", u.transpose(1, 2), torch.randn(4, 8))
    _raises(r"u is probably transposed.*u.transpose\(1, 2\)", u.transpose(1, 2), torch.randn(3, 4, 8))
    _raises(r"u is probably transposed", torch.randn(2, 300, 16), torch.randn(16, 300))  # L > H as well as L < H
    _raises(r"crop the kernel", u, torch.randn(4, 9))
    _raises(r"odd length .*bidirectional_kernel\(k_fwd, k_bwd\)", u, torch.randn(4, 8), causal=False)
    _raises(r"crop it to the centre", u, torch.randn(4, 17), causal=False)
    _raises(r"u must be \(B, H, L\).*u\[None\]", u[0], torch.randn(4, 8))
    _raises(r"k must be \(H, Lk\) or \(C, H, Lk\)", u, torch.randn(8))
    _raises(r"k must be \(H, Lk\) or \(C, H, Lk\)", u, torch.randn(1, 1, 4, 8))
    _raises(r"u has dtype torch.int64.*u.float\(\)", torch.ones(2, 4, 8, dtype=torch.long), torch.randn(4, 8))
    _raises(r"k has dtype torch.complex64.*complex", u, torch.randn(4, 8, dtype=torch.cfloat))
    _raises(r"k.to\(u.device\)", u, torch.randn(4, 8, device="meta"))
    _raises(r"D.to\(u.device\)", u, torch.randn(4, 8), D=torch.randn(4, device="meta"))
    _raises(r"pass D as \(H,\)", u, torch.randn(4, 8), D=torch.randn(5))
    bad = torch.randn(4, 8)
    bad[1, 3] = float("nan")
    with pytest.raises(ValueError, match=r"k contains NaN or Inf"):
        fft_conv(u, bad)
    bad_u = u.clone()
    bad_u[0, 0, 0] = float("inf")
    with pytest.raises(ValueError, match=r"u contains NaN or Inf"):
        fft_conv(bad_u, torch.randn(4, 8))
    assert not torch.isfinite(fft_conv(bad_u, torch.randn(4, 8), check_finite=False)).all()
