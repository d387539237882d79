"""kernels: FlashButterfly, the fused Butterfly FFT convolution, in Triton (falls back to PyTorch without Triton).

    from kernels import FlashButterflyConv
    conv = FlashButterflyConv(seqlen=2 * L, dtype=torch.float16)   # seqlen is the FFT size N
    y = conv(u, k)                                                  # u (B, H, L) fp16, k (H, L) fp32
"""
from kernels.conv import (HAS_TRITON, INTERPRET, SUPPORTED_N, FlashButterflyConv, check_inputs,  # noqa: F401
                          flash_butterfly_conv)

__all__ = ["FlashButterflyConv", "flash_butterfly_conv", "check_inputs", "SUPPORTED_N", "HAS_TRITON", "INTERPRET"]
