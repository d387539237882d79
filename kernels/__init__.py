"""kernels: FlashButterfly, the fused Butterfly FFT convolution, in Triton (falls back to PyTorch without Triton).

    from kernels import FlashButterflyConv
    conv = FlashButterflyConv(seqlen=2 * L, dtype=torch.float16)   # seqlen is the FFT size N
    y = conv(u, k)                                                  # u (B, H, L) fp16, k (H, L) fp32
    y = conv(u, k, pregate, postgate)                               # postgate ⊙ conv(pregate ⊙ u, k), fused
"""
from kernels import conv as _conv
from kernels.conv import (FUSED_N, HAS_TRITON, INTERPRET, FlashButterflyConv, check_inputs,  # noqa: F401
                          flash_butterfly_conv, supported_n)

__all__ = ["FlashButterflyConv", "flash_butterfly_conv", "check_inputs", "supported_n", "SUPPORTED_N", "FUSED_N",
           "HAS_TRITON", "INTERPRET"]


def __getattr__(name):  # SUPPORTED_N grows with kernels.three_pass, which is imported lazily
    if name == "SUPPORTED_N":
        return _conv.supported_n()
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
