"""kernels: FlashButterfly, the fused Butterfly FFT convolution, in Triton (falls back to PyTorch without Triton).

    from lconv.kernels import FlashButterflyConv
    conv = FlashButterflyConv(seqlen=2 * L, dtype=torch.float16)   # seqlen is the FFT size N
    y = conv(u, k)                                                  # u (B, H, L) fp16, k (H, L) fp32
    y = conv(u, k, pregate, postgate)                               # postgate ⊙ conv(pregate ⊙ u, k), fused

The floors, bottom to top (imports run one way, relative inside this package; from lconv only the reference maths,
lconv.butterfly and lconv.conv): launch.py (sizes, checks, tables, the checked launch) → flash_butterfly.py (fused
kernels, launchers, autograd) and three_pass.py (the same anatomy for N > 4096) → conv.py (the public face) →
io_model.py (bytes and FLOPs), accuracy.py, and the scripts bench.py, sweep.py (GPU timings), device_check.py (the
GPU session's one command: kernel tests, host µs, benchmark, targets) and probe.py (compiled registers, spills and
shared memory, no GPU).
"""

if __name__ != "lconv.kernels":  # the folder kernels/ is the package lconv.kernels (the symlink lconv/kernels)
    raise ImportError(f"this is lconv.kernels, imported here as {__name__!r} (the repository root is on sys.path): "
                      "import lconv.kernels instead; a top-level `kernels` is another distribution's name, and a "
                      "second copy would register the Triton operators twice")

from .conv import (FUSED_N, HAS_TRITON, INTERPRET, SUPPORTED_N, FlashButterflyConv, check_inputs,  # noqa: F401
                   flash_butterfly_conv, prepare, three_pass_conv)

__all__ = ["FlashButterflyConv", "flash_butterfly_conv", "three_pass_conv", "check_inputs", "prepare", "SUPPORTED_N",
           "FUSED_N", "HAS_TRITON", "INTERPRET"]
