"""lconv.butterfly: each step of the Monarch FFT and the permutation-free convolution checked against torch.fft."""
import math

import pytest
import torch

from lconv.butterfly import (butterfly_conv, default_sizes, dft_matrix, k_f_permuted, monarch_fft, monarch_ifft,
                             pack_pairs, permuted_order, twiddle, unpack_pairs)

SIZES = [(4, 4), (16, 16), (16, 32), (32, 64), (4, 8, 2), (16, 16, 16)]


def torch_conv(u, k, N):
    """First L entries of the N-point circular convolution of zero-padded u and k, by torch.fft (fp64 in, fp64 out)."""
    L = u.shape[-1]
    return torch.fft.irfft(torch.fft.rfft(u, n=N) * torch.fft.rfft(k, n=N), n=N)[..., :L]


@pytest.mark.parametrize("N", [2, 16, 32, 64])
def test_dft_matrix_is_torch_fft_and_inverts(N):
    F = dft_matrix(N)
    torch.testing.assert_close(F, torch.fft.fft(torch.eye(N, dtype=torch.complex128), dim=0))
    torch.testing.assert_close(dft_matrix(N, inverse=True) @ F, torch.eye(N, dtype=torch.complex128))


@pytest.mark.parametrize("N1,N2", [(4, 4), (4, 8), (16, 32)])
def test_twiddle_completes_cooley_tukey_factorisation(N1, N2):
    """(I_{N1} ⊗ F_{N2}) · diag(twiddle) · (F_{N1} ⊗ I_{N2}) is the DFT matrix with rows in permuted order."""
    N = N1 * N2
    I1, I2 = torch.eye(N1, dtype=torch.complex128), torch.eye(N2, dtype=torch.complex128)
    tw = twiddle(N1, N2)
    assert tw.shape == (N1, N2)
    torch.testing.assert_close(tw[1, 1], torch.tensor(complex(math.cos(2 * math.pi / N), -math.sin(2 * math.pi / N)),
                                                      dtype=torch.complex128))
    monarch = torch.kron(I1, dft_matrix(N2)) @ torch.diag(tw.reshape(-1)) @ torch.kron(dft_matrix(N1), I2)
    torch.testing.assert_close(monarch, dft_matrix(N)[permuted_order((N1, N2))])


def test_default_sizes():
    assert [default_sizes(N) for N in (256, 512, 1024, 2048, 4096)] == [(16, 16), (16, 32), (32, 32), (32, 64),
                                                                        (64, 64)]
    with pytest.raises(ValueError, match="power of two"):
        default_sizes(100)


@pytest.mark.parametrize("sizes", SIZES)
@pytest.mark.parametrize("norm", ["backward", "ortho"])
def test_monarch_fft_matches_torch_fft(sizes, norm):
    N = math.prod(sizes)
    x = torch.randn(2, 3, N, dtype=torch.complex128)
    torch.testing.assert_close(monarch_fft(x, sizes, norm=norm), torch.fft.fft(x, norm=norm))
    torch.testing.assert_close(monarch_ifft(x, sizes, norm=norm), torch.fft.ifft(x, norm=norm))
    Xp = monarch_fft(x, sizes, permuted=True, norm=norm)
    torch.testing.assert_close(Xp, torch.fft.fft(x, norm=norm)[..., permuted_order(sizes)])
    torch.testing.assert_close(monarch_ifft(Xp, sizes, permuted=True, norm=norm), x)  # permutations cancel


def test_monarch_fft_real_and_fp32_input():
    x = torch.randn(4, 256)
    X = monarch_fft(x, (16, 16))
    assert X.dtype == torch.complex64
    torch.testing.assert_close(X, torch.fft.fft(x), atol=1e-4, rtol=1e-4)


def test_monarch_fft_bad_sizes():
    with pytest.raises(ValueError, match="multiply to"):
        monarch_fft(torch.randn(256), (16, 8))
    with pytest.raises(ValueError, match="norm"):
        monarch_fft(torch.randn(256), (16, 16), norm="forward")


@pytest.mark.parametrize("B", [1, 4, 5])
def test_pack_pairs_roundtrip(B):
    u = torch.randn(B, 3, 7, dtype=torch.float64)
    z = pack_pairs(u)
    assert z.shape == ((B + 1) // 2, 3, 7)
    torch.testing.assert_close(z[0].real, u[0])
    torch.testing.assert_close(unpack_pairs(z, B), u)


def test_real_input_trick_two_convs_in_one():
    """conv(u_a + i·u_b, k) = conv(u_a, k) + i·conv(u_b, k) for real k: one complex FFT conv serves two rows."""
    N = 64
    u = torch.randn(2, 1, N, dtype=torch.float64)
    k = torch.randn(1, N, dtype=torch.float64)
    z = pack_pairs(u)[0]  # (1, N) complex
    y = torch.fft.ifft(torch.fft.fft(z) * torch.fft.fft(k))
    torch.testing.assert_close(unpack_pairs(y[None], 2), torch_conv(u, k, N))


@pytest.mark.parametrize("sizes", [(16, 16), (16, 32), (8, 8, 4)])
def test_permutation_free_conv(sizes):
    """Spectra multiplied in permuted order, then the permuted inverse: the circular convolution, no reordering."""
    N = math.prod(sizes)
    u = torch.randn(3, 2, N, dtype=torch.float64)
    k = torch.randn(2, N, dtype=torch.float64)
    k_f = k_f_permuted(k, N, sizes)
    torch.testing.assert_close(k_f, monarch_fft(k, sizes, permuted=True))
    y = monarch_ifft(monarch_fft(u, sizes, permuted=True) * k_f, sizes, permuted=True)
    torch.testing.assert_close(y.real, torch_conv(u, k, N))


@pytest.mark.parametrize("N,L,Lk", [(256, 127, 127), (256, 256, 256), (512, 255, 100), (1024, 1024, 1024),
                                    (4096, 2047, 2047), (64, 33, 33)])
@pytest.mark.parametrize("B", [2, 3])
def test_butterfly_conv_matches_fft_conv_fp64(N, L, Lk, B):
    u = torch.randn(B, 3, L, dtype=torch.float64)
    k = torch.randn(3, Lk, dtype=torch.float64)
    y = butterfly_conv(u, k, N)
    assert y.shape == (B, 3, L) and y.dtype == torch.float64
    torch.testing.assert_close(y, torch_conv(u, k, N), atol=1e-10, rtol=1e-10)


def test_butterfly_conv_causal_is_direct_convolution():
    u = torch.randn(2, 2, 31, dtype=torch.float64)
    k = torch.randn(2, 31, dtype=torch.float64)
    direct = torch.stack([sum(k[:, s] * u[..., t - s] for s in range(t + 1)) for t in range(31)], dim=-1)
    torch.testing.assert_close(butterfly_conv(u, k, 64), direct)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float16, torch.bfloat16])
def test_butterfly_conv_low_precision_returns_input_dtype(dtype):
    u = (torch.randn(2, 3, 128) * 0.02).to(dtype)
    k = torch.randn(3, 128)
    y = butterfly_conv(u, k, 256)
    assert y.dtype == dtype
    ref = torch_conv(u.double(), k.double(), 256)
    assert (y.double() - ref).abs().max() <= 2 * (ref.to(dtype).double() - ref).abs().max() + 1e-5


def test_butterfly_conv_gradcheck():
    u = torch.randn(3, 2, 9, dtype=torch.float64, requires_grad=True)
    k = torch.randn(2, 7, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda u, k: butterfly_conv(u, k, 16, sizes=(4, 4)), (u, k))


def test_butterfly_conv_bad_length():
    with pytest.raises(ValueError, match="≤ N"):
        butterfly_conv(torch.randn(1, 1, 300), torch.randn(1, 300), 256)
