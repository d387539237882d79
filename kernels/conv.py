"""FlashButterflyConv: the public API around the fused Triton kernels (input checks, dispatch, autograd).

Mirrors flash-fft-conv's `FlashFFTConv(seqlen, dtype)` so users can swap: `seqlen` is the FFT size N, u is (B, H, L)
in fp32/fp16/bf16, k is (H, Lk) fp32; L = N/2 gives a causal linear convolution, L = N a circular one.

Dispatch: CUDA tensors run the compiled Triton kernels; CPU tensors run the same kernels through the Triton
interpreter when TRITON_INTERPRET=1 was set before `kernels` was imported, otherwise (or without Triton) the PyTorch
reference of the same algorithm, `lconv.butterfly.butterfly_conv`.
"""
from __future__ import annotations

import math
import warnings

import torch
from torch import nn

from lconv import butterfly

try:
    from kernels import flash_butterfly as _fb

    HAS_TRITON = True
    INTERPRET = type(_fb.flash_butterfly_fwd_kernel).__name__ == "InterpretedFunction"  # decided at import
except ImportError:  # no triton on this machine: the reference runs everywhere
    _fb, HAS_TRITON, INTERPRET = None, False, False

SUPPORTED_N = (256, 512, 1024, 2048, 4096)
U_DTYPES = (torch.float32, torch.float16, torch.bfloat16)
BACKENDS = ("auto", "triton", "reference")


# ---------------------------------------------------------------------------------------------------------------
# Input checks: every bad input raises ValueError naming the fix, before anything is launched.
# ---------------------------------------------------------------------------------------------------------------

def check_seqlen(N) -> int:
    """N must be one of SUPPORTED_N (the FFT size, not the input length)."""
    if not isinstance(N, int) or N not in SUPPORTED_N:
        raise ValueError(f"FFT size N={N!r} is not supported; supported N (the FFT size, ≥ 2·L for a causal "
                         f"convolution): {list(SUPPORTED_N)}")
    return N


def check_inputs(u: torch.Tensor, k: torch.Tensor, N: int) -> None:
    """Validate u (B, H, L), k (H, Lk) and N for flash_butterfly_conv; raise ValueError naming the fix."""
    check_seqlen(N)
    if not isinstance(u, torch.Tensor) or not isinstance(k, torch.Tensor):
        raise ValueError("u and k must be torch tensors: u (B, H, L), k (H, L)")
    if u.dim() != 3:
        raise ValueError(f"u must be (B, H, L), got shape {tuple(u.shape)}")
    if k.dim() == 3 and k.shape[0] == 1:
        raise ValueError(f"k has shape {tuple(k.shape)}: squeeze the leading 1: pass k as (H, L) (k.squeeze(0))")
    if k.dim() != 2:
        raise ValueError(f"k must be (H, L), got shape {tuple(k.shape)}")
    B, H, L = u.shape
    if k.shape[0] != H:
        raise ValueError(f"k has {k.shape[0]} channels but u has H={H}: pass k as (H, L) = ({H}, L)")
    if L > N or k.shape[1] > N:
        raise ValueError(f"L={L} (u) and Lk={k.shape[1]} (k) must be ≤ the FFT size N={N}; pick N ≥ 2·L for a "
                         f"causal convolution (supported N: {list(SUPPORTED_N)})")
    if u.dtype not in U_DTYPES:
        raise ValueError(f"u has dtype {u.dtype}; cast it to torch.float32, torch.float16 or torch.bfloat16")
    if k.dtype != torch.float32:
        raise ValueError(f"k has dtype {k.dtype}; pass k as torch.float32 (k.float())")
    if u.device != k.device:
        raise ValueError(f"u is on {u.device} and k on {k.device}: move both to the same device (k.to(u.device))")
    if not u.is_contiguous():
        raise ValueError("u is not contiguous: call .contiguous() on it")
    if not k.is_contiguous():
        raise ValueError("k is not contiguous: call .contiguous() on it")


def _pick_backend(u: torch.Tensor, backend: str) -> str:
    """'triton' or 'reference' for this tensor's device (see the module docstring)."""
    if backend not in BACKENDS:
        raise ValueError(f"backend={backend!r}: use one of {BACKENDS}")
    can_triton = HAS_TRITON and (u.is_cuda or (u.device.type == "cpu" and INTERPRET))
    if backend == "triton" and not can_triton:
        raise ValueError("backend='triton' needs Triton and a CUDA tensor, or CPU tensors with TRITON_INTERPRET=1 "
                         "set before `import kernels`; use backend='reference' or 'auto' otherwise")
    if backend == "auto":
        if u.is_cuda and not HAS_TRITON:
            warnings.warn("Triton is not installed: FlashButterflyConv runs the PyTorch reference", stacklevel=3)
        return "triton" if can_triton else "reference"
    return backend


# ---------------------------------------------------------------------------------------------------------------
# Launch wrappers
# ---------------------------------------------------------------------------------------------------------------

_PLANS: dict = {}


def _plan(N: int, device: torch.device):
    """(dft1 (2, N1, N1), dft2 (2, N2, N2), tw (2, N1, N2)) fp32 re/im tables, unitary DFTs; cached per device."""
    key = (N, str(device))
    if key not in _PLANS:
        N1, N2 = butterfly.default_sizes(N)

        def planes(z):  # complex (a, b) → fp32 (2, a, b)
            return torch.stack([z.real, z.imag]).to(device=device, dtype=torch.float32).contiguous()

        _PLANS[key] = (planes(butterfly.dft_matrix(N1) / math.sqrt(N1)),
                       planes(butterfly.dft_matrix(N2) / math.sqrt(N2)),
                       planes(butterfly.twiddle(N1, N2)))
    return _PLANS[key]


def k_f_planes(k: torch.Tensor, N: int) -> torch.Tensor:
    """k (H, Lk) fp32 → k_f (H, 2, N) fp32: re/im planes of k's FFT in the kernel's permuted order."""
    k_f = butterfly.k_f_permuted(k, N)  # (H, N) complex64
    return torch.stack([k_f.real, k_f.imag], dim=1).contiguous()  # (H, 2, N)


def _dot_args(dtype: torch.dtype) -> dict:
    """tl.dot operands: the input dtype for fp16/bf16 (fp32 for bf16 under the interpreter, whose bf16 dot is
    wrong), fp32 with input_precision="ieee" (no TF32) for fp32; "tf32" is the default and is ignored for 16-bit."""
    dot_fp32 = dtype == torch.float32 or (dtype == torch.bfloat16 and INTERPRET)
    return {"DOT_FP32": dot_fp32, "PREC": "ieee" if dot_fp32 else "tf32"}


def _chunks(n_pairs: int, H: int, device: torch.device, pairs_per_prog: int | None):
    """(n_chunks, pairs_per_prog): split the batch pairs of each channel so the grid fills the GPU ~4 times."""
    if pairs_per_prog is None:
        if device.type == "cuda":
            target = 4 * torch.cuda.get_device_properties(device).multi_processor_count
            n_chunks = min(n_pairs, max(1, -(-target // H)))
        else:
            n_chunks = 1  # the interpreter runs programs one after another: fewer is cheaper
        pairs_per_prog = -(-n_pairs // n_chunks)
    pairs_per_prog = max(1, int(pairs_per_prog))
    return -(-n_pairs // pairs_per_prog), pairs_per_prog


def _launch_opts(N: int) -> dict:
    """num_warps by tile size (one (N1, N2) tile per program); no software pipelining (num_stages=1)."""
    return {"num_warps": 4 if N <= 512 else 8, "num_stages": 1}


def _fwd(u: torch.Tensor, k_f: torch.Tensor, N: int, pairs_per_prog: int | None = None) -> torch.Tensor:
    """y (B, H, L) in u's dtype from the fused forward kernel."""
    B, H, L = u.shape
    N1, N2 = butterfly.default_sizes(N)
    dft1, dft2, tw = _plan(N, u.device)
    y = torch.empty_like(u)  # (B, H, L)
    n_chunks, ppp = _chunks(-(-B // 2), H, u.device, pairs_per_prog)
    _fb.flash_butterfly_fwd_kernel[(H * n_chunks,)](
        u, y, k_f, dft1, dft2, tw,
        B, H, L, n_chunks, ppp,
        N1=N1, N2=N2, **_dot_args(u.dtype), **_launch_opts(N))
    return y


def _bwd(u: torch.Tensor, dy: torch.Tensor, k_f: torch.Tensor, N: int, Lk: int, need_du: bool = True,
         need_dk: bool = True, pairs_per_prog: int | None = None):
    """(du (B, H, L) in u's dtype or None, dk (H, Lk) fp32 or None) from the fused backward kernel."""
    B, H, L = u.shape
    N1, N2 = butterfly.default_sizes(N)
    dft1, dft2, tw = _plan(N, u.device)
    n_chunks, ppp = _chunks(-(-B // 2), H, u.device, pairs_per_prog)
    du = torch.empty_like(u) if need_du else u.new_empty(0)  # (B, H, L)
    dk_partial = (torch.empty(n_chunks, H, Lk, device=u.device, dtype=torch.float32) if need_dk  # (C, H, Lk)
                  else torch.empty(0, device=u.device, dtype=torch.float32))
    _fb.flash_butterfly_bwd_kernel[(H * n_chunks,)](
        u, dy, du, dk_partial, k_f, dft1, dft2, tw,
        B, H, L, Lk, n_chunks, ppp, math.sqrt(N),
        N1=N1, N2=N2, **_dot_args(u.dtype), COMPUTE_DU=need_du, COMPUTE_DK=need_dk,
        **_launch_opts(N))
    return (du if need_du else None), (dk_partial.sum(0) if need_dk else None)  # dk (H, Lk)


class FlashButterflyFn(torch.autograd.Function):
    """Fused forward and backward kernels wired into autograd: y = conv_N(u, k)."""

    @staticmethod
    def forward(ctx, u, k, N):
        k_f = k_f_planes(k, N)  # (H, 2, N) fp32, once per call
        ctx.save_for_backward(u, k_f)
        ctx.N, ctx.Lk = N, k.shape[-1]
        return _fwd(u, k_f, N)

    @staticmethod
    def backward(ctx, dy):
        u, k_f = ctx.saved_tensors
        dy = dy.to(u.dtype).contiguous()  # (B, H, L)
        du, dk = _bwd(u, dy, k_f, ctx.N, ctx.Lk, need_du=ctx.needs_input_grad[0], need_dk=ctx.needs_input_grad[1])
        return du, dk, None


# ---------------------------------------------------------------------------------------------------------------
# Public API
# ---------------------------------------------------------------------------------------------------------------

def flash_butterfly_conv(u: torch.Tensor, k: torch.Tensor, N: int, backend: str = "auto") -> torch.Tensor:
    """y (B, H, L) = first L entries of the N-point circular convolution of zero-padded u (B, H, L) and k (H, Lk).

    N is the FFT size (one of SUPPORTED_N): L, Lk ≤ N/2 gives the causal linear convolution y[t] = Σ_s k[s]·u[t−s],
    L = N the circular one. u fp32/fp16/bf16, k fp32; y has u's dtype; differentiable in u and k.
    backend: "auto" (Triton where it can run, see the module docstring), "triton", or "reference".
    """
    check_inputs(u, k, N)
    if _pick_backend(u, backend) == "reference" or u.numel() == 0 or k.numel() == 0:  # empty: nothing to launch
        return butterfly.butterfly_conv(u, k, N)
    return FlashButterflyFn.apply(u, k, N)


class FlashButterflyConv(nn.Module):
    """FFT convolution by the fused FlashButterfly kernel; `seqlen` is the FFT size N (not the input length L).

    Drop-in for flash-fft-conv's FlashFFTConv(seqlen, dtype): forward(u, k) with u (B, H, L) of `dtype` and
    k (H, L) fp32; L = seqlen/2 gives a causal linear convolution, L = seqlen a circular one.
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
        """y = postgate ⊙ conv(pregate ⊙ u, k); gates (B, H, L) like u, applied in PyTorch (not fused)."""
        if isinstance(u, torch.Tensor) and u.dtype != self.dtype:
            raise ValueError(f"u has dtype {u.dtype} but this module was built for {self.dtype}: cast u with "
                             f".to({self.dtype}) or build FlashButterflyConv(seqlen, dtype={u.dtype})")
        for name, gate in (("pregate", pregate), ("postgate", postgate)):
            if gate is not None and (gate.shape != u.shape or gate.device != u.device):
                raise ValueError(f"{name} must match u: shape {tuple(u.shape)} on {u.device}, got "
                                 f"{tuple(gate.shape)} on {gate.device}")
        if pregate is not None:
            u = (u * pregate).contiguous()
        y = flash_butterfly_conv(u, k, self.seqlen, backend=self.backend)
        return y if postgate is None else y * postgate

    def extra_repr(self) -> str:
        return f"seqlen={self.seqlen}, dtype={self.dtype}, backend={self.backend!r}"
