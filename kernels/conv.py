"""FlashButterflyConv: the public API around the fused Triton kernels (input checks, dispatch, autograd).

Mirrors flash-fft-conv's `FlashFFTConv(seqlen, dtype)` so users can swap: `seqlen` is the FFT size N, u is (B, H, L)
in fp32/fp16/bf16, k is (H, Lk) fp32; L = N/2 gives a causal linear convolution, L = N a circular one;
forward(u, k, pregate, postgate) = postgate ⊙ conv(pregate ⊙ u, k) with the gates fused into the kernel.
`flash_butterfly_conv(..., dft1=, dft2=)` runs u's forward transform with learned Butterfly blocks (learned kernels).

Dispatch: N ≤ 4096 (FUSED_N) runs the fused kernels of kernels/flash_butterfly.py; N = 8192 … 2^20 the three-pass
kernels of kernels/three_pass.py; SUPPORTED_N lists both. A call that records no gradient launches the kernels
directly (`forward_only`: no autograd node); one that does goes through an autograd Function (FlashButterflyFn,
ThreePassFn), and inside torch.compile the fused path, the fused path with learned blocks and the three-pass path are
the torch.library operators lconv::flash_butterfly_fwd, lconv::learned_butterfly_fwd and lconv::three_pass_fwd (one
opaque graph node each with its registered backward; in
eager mode their dispatch would cost ~30 µs more per call). This file is the public
face only: checks, tables and launches live in kernels/launch.py, the kernels and their autograd in the two files.
Each row of u is convolved on its own (no sample's values or size reach another's output), and fp16/bf16 rows are
scaled so that no intermediate overflows (kernels/flash_butterfly.py says what range is safe). Before its first launch
each compiled kernel configuration is checked against the GPU's shared memory per block (`launch`: ValueError naming
the GPU, N and the limit, not Triton's OutOfResources), and launches run with the tensors' GPU current (device guard).
CUDA tensors run the compiled Triton kernels; CPU tensors run the same kernels through the Triton interpreter when
TRITON_INTERPRET=1 was set before `kernels` was imported, otherwise (or without Triton) the PyTorch reference of the
same algorithm: `lconv.butterfly.real_butterfly_conv`, `lconv.butterfly.learned_butterfly_conv` for learned blocks,
`lconv.butterfly.three_pass_reference` for N > 4096. backend: one of lconv.conv.BACKENDS ("auto", "torch", "triton").
"""
from __future__ import annotations

import torch
from torch import nn

from lconv.butterfly import default_sizes, dft_matrix, learned_butterfly_conv, real_butterfly_conv, three_pass_reference

from .launch import (BACKENDS, FUSED_N, HAS_TRITON, INTERPRET, SUPPORTED_N, THREE_PASS_N, U_DTYPES,  # noqa: F401
                     check_inputs, check_inputs_three_pass, check_seqlen, pick_backend, prepare)

if HAS_TRITON:
    from . import flash_butterfly, three_pass
    from .flash_butterfly import FlashButterflyFn, flash_butterfly_op
    from .three_pass import ThreePassFn


def _records_graph(*tensors) -> bool:
    """Whether this call must go through autograd (or torch.compile's graph): otherwise the kernels are launched
    directly, without the autograd Function's or the operator's bookkeeping (the no-grad fast path)."""
    return torch.compiler.is_compiling() or (torch.is_grad_enabled() and any(
        t is not None and t.requires_grad for t in tensors))


def _reference(u, k, N, pregate, postgate, dft1, dft2):
    """The PyTorch path: lconv.butterfly.real_butterfly_conv (fixed FFT) or learned_butterfly_conv (learned blocks)."""
    v = u if pregate is None else u * pregate  # (B, H, L)
    if dft1 is None and dft2 is None:
        y = real_butterfly_conv(v, k, N)
    else:
        N1, N2 = default_sizes(N)
        dft1 = dft_matrix(N1, dtype=torch.complex64, device=u.device) if dft1 is None else dft1
        dft2 = dft_matrix(N2, dtype=torch.complex64, device=u.device) if dft2 is None else dft2
        y = learned_butterfly_conv(v, k, N, dft1, dft2).to(u.dtype)
    return y if postgate is None else y * postgate


# ---------------------------------------------------------------------------------------------------------------
# Public API
# ---------------------------------------------------------------------------------------------------------------

def flash_butterfly_conv(u: torch.Tensor, k: torch.Tensor, N: int, pregate: torch.Tensor | None = None,
                         postgate: torch.Tensor | None = None, *, dft1: torch.Tensor | None = None,
                         dft2: torch.Tensor | None = None, backend: str = "auto") -> torch.Tensor:
    """y (B, H, L) = postgate ⊙ (first L of the N-point circular convolution of zero-padded pregate ⊙ u and k).

    N is the FFT size (one of SUPPORTED_N): L, Lk ≤ N/2 gives the causal linear convolution y[t] = Σ_s k[s]·u[t−s],
    L = N the circular one. u fp32/fp16/bf16 (B, H, L), k fp32 (H, Lk); y has u's dtype; differentiable in all.
    Gates: both or neither, shaped like u, fused into the kernel's loads and stores.
    dft1 (N1, N1) / dft2 (N2, N2), complex, or per channel (H, ·, ·): learned forward blocks of u's transform,
    unnormalised (lconv.butterfly.dft_matrix at init, (N1, N2) = lconv.butterfly.default_sizes(N)); k's spectrum and
    the inverse stay exact and y = Re(F^{-1}(F_k ⊙ A(u)))[:L] row by row, which equals the plain conv at A = DFT.
    N > 4096 runs the three-pass kernels (no learned blocks there).
    Every row is computed on its own: a NaN, an Inf or a huge value in one sample leaves every other sample's y (and
    du) exactly as computed alone. fp16/bf16: no intermediate overflows, for any finite input; y is finite wherever
    its exact value fits the dtype (±inf where it does not, as PyTorch's fp32 result cast to the dtype would be).
    backend: "auto" (Triton where it can run, see the module docstring), "triton", or "torch" (the reference).
    """
    check_inputs(u, k, N, pregate, postgate, dft1, dft2)
    if N not in FUSED_N:  # N > 4096: the three-pass kernels (or their reference)
        return three_pass_conv(u, k, N, pregate, postgate, backend=backend)
    if pick_backend(u, backend) == "torch" or u.numel() == 0 or k.numel() == 0:  # empty: nothing to launch
        return _reference(u, k, N, pregate, postgate, dft1, dft2)
    if not _records_graph(u, k, pregate, postgate, dft1, dft2):  # inference: two launches, no autograd node
        return flash_butterfly.forward_only(u, k, N, pregate, postgate, dft1, dft2)
    if torch.compiler.is_compiling():  # the torch.library operators: one node each, nothing to trace into
        if dft1 is not None or dft2 is not None:  # lconv::learned_butterfly_fwd
            return flash_butterfly.learned_butterfly_traced(u, k, N, pregate, postgate, dft1, dft2)
        save_w = postgate is not None and postgate.requires_grad and torch.is_grad_enabled()  # w for dpostgate
        return flash_butterfly_op(u, k, pregate, postgate, N, save_w)[0]  # lconv::flash_butterfly_fwd: one node
    return FlashButterflyFn.apply(u, k, pregate, postgate, dft1, dft2, N)  # eager: ~30 µs less host time per call


def three_pass_conv(u: torch.Tensor, k: torch.Tensor, N: int, pregate: torch.Tensor | None = None,
                    postgate: torch.Tensor | None = None, backend: str = "auto") -> torch.Tensor:
    """y (B, H, L) = postgate ⊙ first L of the N-point circular convolution of zero-padded pregate ⊙ u and k (H, Lk).

    N (the FFT size, 8192 … 2^20) = N0·M: L, Lk ≤ N/2 gives the causal linear convolution, L = N the circular one.
    u and gates fp32/fp16/bf16 (same dtype), k fp32; y in u's dtype; differentiable in u, k and the gates (both
    gates or neither, as kernels.launch.check_inputs requires). backend: "auto" (Triton on CUDA, or on CPU under
    TRITON_INTERPRET=1), "triton", "torch" (lconv.butterfly.three_pass_reference).
    """
    check_inputs_three_pass(u, k, N, pregate, postgate)
    if pick_backend(u, backend, warn=False) == "torch" or u.numel() == 0 or k.numel() == 0:
        return three_pass_reference(u, k, N, pregate, postgate)
    if not _records_graph(u, k, pregate, postgate):
        return three_pass.forward_only(u, k, N, pregate, postgate)
    if torch.compiler.is_compiling():  # the torch.library operator lconv::three_pass_fwd: one graph node
        save_w = postgate is not None and postgate.requires_grad and torch.is_grad_enabled()  # w for dpostgate
        return three_pass.three_pass_op(u, k, pregate, postgate, N, save_w)[0]
    return ThreePassFn.apply(u, k, pregate, postgate, N)


class FlashButterflyConv(nn.Module):
    """FFT convolution by the fused FlashButterfly kernel; `seqlen` is the FFT size N (not the input length L).

    Drop-in for flash-fft-conv's FlashFFTConv(seqlen, dtype): forward(u, k, pregate=None, postgate=None) with
    u (B, H, L) of `dtype` and k (H, L) fp32; L = seqlen/2 gives a causal linear convolution, L = seqlen a circular one.
    """

    def __init__(self, seqlen: int, dtype: torch.dtype = torch.float16, backend: str = "auto"):
        super().__init__()
        self.seqlen = check_seqlen(seqlen)
        if dtype not in U_DTYPES:
            raise ValueError(f"dtype={dtype}: use torch.float16, torch.bfloat16 or torch.float32")
        if backend not in BACKENDS:
            raise ValueError(f"backend={backend!r}: use one of {BACKENDS}")
        self.dtype, self.backend = dtype, backend

    def forward(self, u: torch.Tensor, k: torch.Tensor, pregate: torch.Tensor | None = None,
                postgate: torch.Tensor | None = None) -> torch.Tensor:
        """y = postgate ⊙ conv(pregate ⊙ u, k); gates (both or neither) shaped like u, fused into the kernel."""
        if isinstance(u, torch.Tensor) and u.dtype != self.dtype:
            rebuild = (f" or build FlashButterflyConv(seqlen, dtype={u.dtype})" if u.dtype in U_DTYPES else
                       " (the kernels take float16, bfloat16 or float32)")
            raise ValueError(f"u has dtype {u.dtype} but this module was built for {self.dtype}: cast u with "
                             f".to({self.dtype}){rebuild}")
        return flash_butterfly_conv(u, k, self.seqlen, pregate, postgate, backend=self.backend)

    def extra_repr(self) -> str:
        return f"seqlen={self.seqlen}, dtype={self.dtype}, backend={self.backend!r}"
