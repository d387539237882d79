"""lconv.backend: the one door to kernels/, the one backend vocabulary and the one FFT-size rule (lconv.conv)."""
import sys

import pytest
import torch

from lconv import backend
from lconv.conv import BACKENDS, fft_size


def test_fft_size_is_the_one_rule_of_every_path():
    assert fft_size(5, 5) == fft_size(5) == 16  # n ≥ L + Lk − 1, a power of two; Lk defaults to L
    assert [fft_size(L) for L in (2, 64, 100, 784)] == [4, 128, 256, 2048]  # = 2·next_pow2(L) (the layers' rule)
    assert fft_size(100, 1) == 128 and fft_size(1) == 1  # fft_conv's padding for a short kernel, as before
    assert fft_size(64, backend="triton") == fft_size(64, backend="auto") == 256  # the fused kernel's smallest N
    assert fft_size(3000, backend="triton") == 8192 and fft_size(4, minimum=16) == 16


def test_backend_vocabulary_and_errors():
    assert BACKENDS == backend.BACKENDS == ("auto", "torch", "triton")
    with pytest.raises(ValueError, match=r"LongConv: backend must be one of \('auto', 'torch', 'triton'\)"):
        backend.check_backend("reference", "LongConv")
    u = torch.randn(1, 2, 8)
    assert backend.use_triton(u, 256, "torch") is False and backend.use_triton(u, 256, "triton") is True
    assert backend.use_triton(u, 256, "auto") is False  # CPU tensors: "auto" keeps the PyTorch path


def test_a_missing_kernels_package_is_a_clear_import_error(monkeypatch):
    monkeypatch.setitem(sys.modules, "lconv.kernels", None)  # `import lconv.kernels` now fails
    assert backend.triton_available() is False
    with pytest.raises(ImportError, match=r"backend='torch'"):
        backend.kernels_module("LongConv(backend='triton')")


def test_triton_conv_equals_the_reference():
    kernels = pytest.importorskip("lconv.kernels")
    if not (kernels.INTERPRET or torch.cuda.is_available()):
        pytest.skip("needs the Triton interpreter or a GPU")
    u, k = torch.randn(2, 3, 100), torch.randn(2, 3, 100)  # k: (C, H, Lk)
    y = backend.triton_conv(u, k, 256)  # (B, C, H, L)
    ref = torch.stack([torch.fft.irfft(torch.fft.rfft(u, n=256) * torch.fft.rfft(k[c], n=256), n=256)[..., :100]
                       for c in range(2)], dim=1)
    torch.testing.assert_close(y, ref, atol=1e-4, rtol=1e-4)
    with pytest.raises(ValueError, match="FUSED_N"):
        backend.triton_conv(u, k, 8192, dft1=torch.eye(4, dtype=torch.complex64), dft2=torch.eye(4))
