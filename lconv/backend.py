"""The one door from lconv to the Triton kernels: `import lconv.kernels` happens here and nowhere else in lconv, lazily.

    from lconv import backend
    if backend.use_triton(u, N, layer.backend):              # backend: one of lconv.conv.BACKENDS
        y = backend.triton_conv(u, k, N)                    # u (B, H, L), k (C, H, Lk) → y (B, C, H, L)
        y = backend.triton_conv(u, k, N, dft1=d1, dft2=d2)  # learned Butterfly blocks (lconv.learned_butterfly)

The vocabulary is lconv.conv.BACKENDS ("auto", "torch", "triton") and the FFT size is lconv.conv.fft_size (both
re-exported here); "torch" never imports kernels, so lconv runs where Triton cannot. A layer that asks for "triton"
where kernels cannot be imported gets an ImportError saying to use "torch" or "auto".
"""
from __future__ import annotations

import torch

from lconv.conv import BACKENDS, fft_size  # noqa: F401  (re-exported: the one vocabulary, the one size rule)


def check_backend(backend, who: str) -> str:
    """`backend` if it is one of BACKENDS, else ValueError naming `who` and the choices."""
    if backend not in BACKENDS:
        raise ValueError(f"{who}: backend must be one of {BACKENDS}, got {backend!r}")
    return backend


def kernels_module(who: str = "backend='triton'"):
    """The `kernels` package (imported lazily, here only); ImportError naming the fix where it cannot be imported."""
    try:
        import lconv.kernels as kernels
    except Exception as exc:  # ImportError, or Triton failing to initialise
        raise ImportError(f"{who} needs `kernels` (Triton + a GPU, or TRITON_INTERPRET=1 on CPU); importing it failed "
                          f"with {type(exc).__name__}: {exc}. Use backend='torch' (or 'auto' to fall back "
                          "automatically).") from exc
    return kernels


def triton_available() -> bool:
    """Whether `kernels` imports on this machine."""
    try:
        kernels_module()
    except ImportError:
        return False
    return True


def use_triton(u: torch.Tensor, N: int, backend: str, *, learned: bool = False) -> bool:
    """Whether a causal conv of u at FFT size N runs on the Triton kernels: always for "triton", never for "torch";
    "auto" only for CUDA tensors whose N the kernels support (learned blocks: the fused sizes only)."""
    if backend == "torch":
        return False
    if backend == "triton":
        return True
    if not u.is_cuda or not triton_available():
        return False
    k = kernels_module()
    return N in (k.FUSED_N if learned else k.SUPPORTED_N) and u.dtype in (torch.float32, torch.float16,
                                                                         torch.bfloat16)


def triton_conv(u: torch.Tensor, k: torch.Tensor, N: int, *, dft1=None, dft2=None) -> torch.Tensor:
    """Causal conv by kernels.flash_butterfly_conv: u (B, H, L), k (C, H, Lk) → y (B, C, H, L) in u's dtype, no skip.

    The C kernel channels run as C·H rows; learned blocks dft1/dft2 (per channel: (H, ·, ·)) repeat for every kernel
    channel. N must be one of kernels.SUPPORTED_N (kernels.FUSED_N with learned blocks).
    """
    kernels = kernels_module()
    learned = dft1 is not None or dft2 is not None
    sizes = kernels.FUSED_N if learned else kernels.SUPPORTED_N
    if N not in sizes:
        raise ValueError(f"backend='triton': FFT size N={N} is not in kernels.{'FUSED_N' if learned else 'SUPPORTED_N'}"
                         f"={list(sizes)}; build the layer with a supported N (e.g. N=256) or use backend='torch'")
    B, H, L = u.shape
    C = k.shape[0]
    u_rep = u[:, None].expand(B, C, H, L).reshape(B, C * H, L)  # (B, C·H, L)
    k_rep = k.reshape(C * H, k.shape[-1]).float()  # (C·H, Lk)
    if learned and dft1.dim() == 3:  # per-channel blocks repeat for every kernel channel
        dft1 = dft1.repeat(C, 1, 1)  # (C·H, N1, N1)
        dft2 = dft2.repeat(C, 1, 1)  # (C·H, N2, N2)
    y = kernels.flash_butterfly_conv(u_rep.contiguous(), k_rep.contiguous(), N, dft1=dft1, dft2=dft2)  # (B, C·H, L)
    return y.reshape(B, C, H, L).to(u.dtype)  # (B, C, H, L)
