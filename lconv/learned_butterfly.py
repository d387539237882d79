r"""Learned Butterfly: the FFT's Butterfly blocks become parameters (the paper's third contribution, claim 9).

FlashButterfly computes the FFT of a length-N sequence as two rounds of small dense matrix multiplies (N = N1·N2,
`lconv.butterfly.default_sizes`), with the index maps n = N2·n1 + n2 (time) and f = f1 + N1·f2 (frequency):

    T(u)[f1 + N1·f2] = Σ_{n2} dft2[n2, f2] · twiddle[f1, n2] · Σ_{n1} dft1[f1, n1] · u[N2·n1 + n2]

i.e. view u as an (N1, N2) matrix A, then T(u) = ((dft1 @ A) ⊙ twiddle) @ dft2 (permuted order). With
dft1 = F_{N1} and dft2 = F_{N2} (the DFT matrices) T is the DFT; here they are free complex matrices, initialised to
the DFT (optionally plus a little noise) and trained with everything else. The matmuls are the same whatever numbers
the blocks hold, so learning them costs no FLOPs and no runtime: only 2·(N1² + N2²) real parameters per transform.

The learned convolution (what `learned_butterfly_conv` computes, and what the Triton kernel's `dft1`/`dft2` arguments
must compute): u's forward transform is learned, k's spectrum is the exact FFT, the inverse is the exact inverse FFT,
and the output is the real part (u and k are real; a learned T no longer maps real sequences to Hermitian spectra):

    y = Re( F^{-1}( T(u_pad) ⊙ F(k_pad) ) )[..., :L],      u_pad, k_pad: zero-padded to N.

At dft1 = F_{N1}, dft2 = F_{N2} this is exactly lconv.conv.fft_conv (causal for L, Lk ≤ N/2).

Orientation: dft1 multiplies from the left (dft1[f1, n1], output index first), dft2 from the right (dft2[n2, f2],
input index first), exactly where the fused kernel uses its F1 and F2 tables. Per-channel blocks are (H, N1, N1) and
(H, N2, N2): channel h uses dft1[h], dft2[h].

Real inputs and the kernel's pair packing: the fixed kernel puts two real rows into one complex sequence
(u_a + i·u_b), which works because the DFT of a real row is Hermitian and the whole pipeline maps real rows to real
rows. With learned blocks, G = F^{-1} diag(F k) T maps a real row to a complex one, so Re/Im of G(u_a + i·u_b) would
mix the two rows (Re G(u_a) − Im G(u_b)). The definition above transforms each row on its own; a fused kernel must do
the same for the forward transform (see `conv_flops` for what that costs against the packed fixed path).

Differences from the official code (HazyResearch/safari `block_fft.py`, PAPER.md): there, Cooley–Tukey recurses with
radix ≤ 16 and one DFT matrix per radix size (2, 4, 8, 16) is learned and reused at every level, and both u and k go
through (separate) learned transforms. Here we learn the two blocks (N1, N1), (N2, N2) of the two-factor split,
because those are the blocks FlashButterfly multiplies by (tensor-core tiles of 16–64): the learned model then runs
in the same fused kernel as the fixed one. k's spectrum stays exact, so the kernel's regularisation (Squash, Smooth)
keeps its meaning.
"""
from __future__ import annotations

import copy
import dataclasses
import inspect
import math

import torch
import torch.nn.functional as F
from torch import nn

from lconv.butterfly import default_sizes, dft_matrix, permuted_order, twiddle
from lconv.layers import LongConv, register_param

INITS = ("dft", "dft+noise")
BACKENDS = ("torch", "triton", "auto")


# ---------------------------------------------------------------- the reference maths

def _check_blocks(dft1, dft2, N, H):
    """Raise ValueError unless dft1, dft2 are complex (N1, N1)/(H, N1, N1) and (N2, N2)/(H, N2, N2)."""
    N1, N2 = default_sizes(N)
    for name, d, n in (("dft1", dft1, N1), ("dft2", dft2, N2)):
        if not isinstance(d, torch.Tensor) or not d.is_complex():
            got = d.dtype if isinstance(d, torch.Tensor) else type(d).__name__
            raise ValueError(f"{name} must be a complex tensor ({n}, {n}) or (H, {n}, {n}), got {got}; "
                             f"real (re, im) pairs: pass torch.view_as_complex({name})")
        if d.shape[-2:] != (n, n) or d.dim() not in (2, 3) or (d.dim() == 3 and H is not None and d.shape[0] != H):
            raise ValueError(f"{name} must be ({n}, {n}) or (H={H}, {n}, {n}) for N={N} = {N1}·{N2} "
                             f"(lconv.butterfly.default_sizes), got shape {tuple(d.shape)}")


def learned_transform(x: torch.Tensor, N: int, dft1: torch.Tensor, dft2: torch.Tensor,
                      permuted: bool = False) -> torch.Tensor:
    """T(x) over the last dim: complex (..., H, N) → (..., H, N), natural frequency order (or the kernel's permuted).

    T(x) = ((dft1 @ A) ⊙ twiddle) @ dft2 with A[n1, n2] = x[N2·n1 + n2]; the DFT when the blocks are DFT matrices.
    """
    N1, N2 = default_sizes(N)
    if x.shape[-1] != N:
        raise ValueError(f"learned_transform: last dim must be N={N}, got {tuple(x.shape)}; zero-pad x to N")
    _check_blocks(dft1, dft2, N, x.shape[-2] if x.dim() >= 2 else None)
    cdt = x.dtype if x.is_complex() else (torch.complex128 if x.dtype == torch.float64 else torch.complex64)
    x = x.to(cdt)
    A = x.reshape(*x.shape[:-1], N1, N2)  # (..., H, N1, N2)
    C = (dft1.to(cdt) @ A) * twiddle(N1, N2, dtype=cdt, device=x.device)  # (..., H, N1, N2): learned N1-point blocks
    Z = (C @ dft2.to(cdt)).reshape(x.shape)  # (..., H, N): position f1·N2 + f2 holds frequency f1 + N1·f2
    if permuted:
        return Z
    return Z[..., torch.argsort(permuted_order((N1, N2))).to(x.device)]  # (..., H, N) natural order


def learned_transform_matrix(N: int, dft1: torch.Tensor, dft2: torch.Tensor) -> torch.Tensor:
    """T as an explicit matrix M (N, N) or (H, N, N), natural order: T(x) = M @ x. Built entry by entry from the blocks.

    M[f1 + N1·f2, N2·n1 + n2] = dft2[n2, f2] · twiddle[f1, n2] · dft1[f1, n1] (the naive dense reference of the tests).
    """
    N1, N2 = default_sizes(N)
    _check_blocks(dft1, dft2, N, None)
    cdt = torch.promote_types(dft1.dtype, dft2.dtype)
    tw = twiddle(N1, N2, dtype=cdt, device=dft1.device)  # (N1, N2)
    M = torch.einsum("...ai,ab,...bc->...caib", dft1.to(cdt), tw, dft2.to(cdt))  # (..., f2, f1, n1, n2)
    return M.reshape(*M.shape[:-4], N, N)  # rows f2·N1 + f1 = f1 + N1·f2 (natural), columns N2·n1 + n2


def _check_conv_inputs(u, k, N):
    """Raise ValueError unless u (B, H, L) real, k (H, Lk) or (C, H, Lk) real, L, Lk ≤ N, same device."""
    if not isinstance(N, int):
        raise ValueError(f"N must be an int (the FFT size, a power of two ≥ 4), got {N!r}")
    default_sizes(N)  # ValueError unless N is a power of two ≥ 4
    if not isinstance(u, torch.Tensor) or u.dim() != 3 or not u.is_floating_point():
        raise ValueError(f"u must be a real floating tensor (B, H, L), got "
                         f"{tuple(u.shape) if isinstance(u, torch.Tensor) else type(u).__name__}")
    if not isinstance(k, torch.Tensor) or k.dim() not in (2, 3) or not k.is_floating_point():
        raise ValueError("k must be a real floating tensor (H, Lk) or (C, H, Lk)")
    if k.shape[-2] != u.shape[1]:
        raise ValueError(f"k has {k.shape[-2]} channels but u has H={u.shape[1]}: pass k as (H, Lk) or (C, H, Lk)")
    if u.shape[-1] > N or k.shape[-1] > N:
        raise ValueError(f"L={u.shape[-1]} and Lk={k.shape[-1]} must be ≤ N={N}; pick N ≥ L + Lk (a power of two) "
                         "for a causal convolution without wrap-around")
    if u.device != k.device:
        raise ValueError(f"u is on {u.device} and k on {k.device}: move both to the same device")


def learned_butterfly_conv(u: torch.Tensor, k: torch.Tensor, N: int, dft1: torch.Tensor,
                           dft2: torch.Tensor) -> torch.Tensor:
    """y = Re(ifft(T(u) ⊙ fft(k)))[..., :L] with T the learned Butterfly transform (module docstring), the reference.

    u (B, H, L); k (H, Lk) → y (B, H, L), or k (C, H, Lk) → y (B, C, H, L). N is the FFT size (power of two ≥ 4;
    L, Lk ≤ N/2 gives the causal linear convolution at DFT blocks). dft1 complex (N1, N1) or (H, N1, N1), dft2
    (N2, N2) or (H, N2, N2), unnormalised (== lconv.butterfly.dft_matrix at init). Computes in fp32 (fp64 for fp64
    u); returns u's dtype; differentiable in u, k, dft1, dft2.
    """
    _check_conv_inputs(u, k, N)
    _check_blocks(dft1, dft2, N, u.shape[1])
    if dft1.device != u.device or dft2.device != u.device:
        raise ValueError(f"dft1/dft2 are on {dft1.device}/{dft2.device} but u on {u.device}: move them to u's device")
    rdt = torch.float64 if u.dtype == torch.float64 else torch.float32
    cdt = torch.complex128 if rdt == torch.float64 else torch.complex64
    B, H, L = u.shape
    N1, N2 = default_sizes(N)
    # learned_transform(u_pad), specialised to a real, zero-padded input: only the first ⌈L/N2⌉ rows of A are
    # nonzero and real, so the first stage is two real matmuls over those rows
    rows = -(-L // N2)
    A = F.pad(u.to(rdt), (0, rows * N2 - L)).reshape(B, H, rows, N2)  # (B, H, rows, N2) real
    dft1 = dft1.to(cdt)[..., :rows]  # (…, N1, rows)
    C = torch.complex(dft1.real @ A, dft1.imag @ A) * twiddle(N1, N2, dtype=cdt, device=u.device)  # (B, H, N1, N2)
    Z = (C @ dft2.to(cdt)).reshape(B, H, N)  # (B, H, N) permuted order f1·N2 + f2
    Z = Z[..., torch.argsort(permuted_order((N1, N2))).to(u.device)]  # (B, H, N) natural order
    k_f = torch.fft.fft(k.to(rdt), n=N)  # (H, N) or (C, H, N): exact spectrum of k
    Y = Z * k_f if k.dim() == 2 else Z[:, None] * k_f  # (B, H, N) or (B, C, H, N)
    return torch.fft.ifft(Y, n=N).real[..., :L].to(u.dtype)  # (B, [C,] H, L): exact inverse, real part


# ---------------------------------------------------------------- the Triton path (kernels, ENGINEER A)

def triton_supports_learned() -> bool:
    """Whether kernels.flash_butterfly_conv accepts dft1/dft2 (the fused learned-Butterfly path) on this install."""
    try:
        from kernels import flash_butterfly_conv
    except Exception:  # no Triton, or Triton failing to initialise
        return False
    params = inspect.signature(flash_butterfly_conv).parameters
    return "dft1" in params and "dft2" in params


def _triton_conv(u, k, N, dft1, dft2):
    """The fused kernel: u (B, H, L), k (C, H, L) → (B, C, H, L); channels go through as C·H rows."""
    if not triton_supports_learned():
        raise ValueError("backend='triton' needs kernels.flash_butterfly_conv(..., dft1=, dft2=) (Triton, and a "
                         "kernels version with learned blocks); use backend='torch' (the reference) or 'auto'")
    from kernels import SUPPORTED_N, flash_butterfly_conv

    if N not in SUPPORTED_N:
        raise ValueError(f"backend='triton': FFT size N={N} is not in kernels.SUPPORTED_N={list(SUPPORTED_N)}; "
                         "build the layer with a supported N (e.g. N=256) or use backend='torch'")
    B, H, L = u.shape
    C = k.shape[0]
    u_rep = u[:, None].expand(B, C, H, L).reshape(B, C * H, L)  # (B, C·H, L)
    k_rep = k.reshape(C * H, k.shape[-1]).float()  # (C·H, Lk)
    if dft1.dim() == 3:  # per-channel blocks repeat for every kernel channel
        dft1 = dft1.repeat(C, 1, 1)  # (C·H, N1, N1)
        dft2 = dft2.repeat(C, 1, 1)  # (C·H, N2, N2)
    y = flash_butterfly_conv(u_rep.contiguous(), k_rep.contiguous(), N, dft1=dft1, dft2=dft2)  # (B, C·H, L)
    return y.reshape(B, C, H, L)  # (B, C, H, L)


# ---------------------------------------------------------------- the module holding the blocks

class LearnedButterfly(nn.Module):
    """The learned blocks dft1 (N1, N1) and dft2 (N2, N2) (or one pair per channel), stored as real (re, im) pairs."""

    def __init__(self, N, channels=None, init="dft", noise=0.01, lr=1e-3, dtype=None):
        super().__init__()
        self.N1, self.N2 = default_sizes(N)  # ValueError for N not a power of two ≥ 4
        if channels is not None and (not isinstance(channels, int) or channels < 1):
            raise ValueError(f"LearnedButterfly: channels must be None (shared blocks) or a positive int (one "
                             f"pair of blocks per channel, H), got {channels!r}")
        if init not in INITS:
            raise ValueError(f"LearnedButterfly: init must be one of {INITS}, got {init!r}")
        if not (isinstance(noise, (int, float)) and math.isfinite(noise) and noise >= 0):
            raise ValueError(f"LearnedButterfly: noise must be a finite float ≥ 0 (e.g. 0.01), got {noise!r}")
        self.N, self.channels, self.init, self.noise = N, channels, init, float(noise)
        lead = () if channels is None else (channels,)
        dtype = dtype or torch.get_default_dtype()
        register_param(self, "dft1", torch.zeros(*lead, self.N1, self.N1, 2, dtype=dtype), lr=lr, weight_decay=0.0)
        register_param(self, "dft2", torch.zeros(*lead, self.N2, self.N2, 2, dtype=dtype), lr=lr, weight_decay=0.0)
        self.reset_parameters()

    @torch.no_grad()
    def reset_parameters(self, init=None):
        """Write the DFT blocks (computed in fp64, then cast to the parameters' dtype), plus noise for 'dft+noise'."""
        init = init or self.init
        if init not in INITS:
            raise ValueError(f"LearnedButterfly: init must be one of {INITS}, got {init!r}")
        for p, n in ((self.dft1, self.N1), (self.dft2, self.N2)):
            p.copy_(torch.view_as_real(dft_matrix(n, device=p.device)).to(p.dtype).expand_as(p))  # (.., n, n, 2)
            if init == "dft+noise":
                p.add_(self.noise * torch.randn_like(p))

    def blocks(self):
        """(dft1, dft2) as complex tensors, differentiable views of the stored pairs."""
        return torch.view_as_complex(self.dft1), torch.view_as_complex(self.dft2)

    def forward(self, x, permuted=False):
        """T(x): (..., H, N) → complex (..., H, N), natural frequency order (see learned_transform)."""
        return learned_transform(x, self.N, *self.blocks(), permuted=permuted)

    def conv(self, u, k, backend="torch"):
        """y = learned_butterfly_conv(u, k): u (B, H, L), k (C, H, Lk) → (B, C, H, L) (k (H, Lk) → (B, H, L))."""
        if backend not in BACKENDS:
            raise ValueError(f"LearnedButterfly.conv: backend must be one of {BACKENDS}, got {backend!r}")
        dft1, dft2 = self.blocks()
        if backend == "auto":  # the fused kernel takes learned blocks for N ≤ 4096 (one pass on chip)
            backend = "triton" if u.is_cuda and self.N <= 4096 and triton_supports_learned() else "torch"
        if backend == "triton":
            _check_conv_inputs(u, k, self.N)
            _check_blocks(dft1, dft2, self.N, u.shape[1])
            y = _triton_conv(u, k if k.dim() == 3 else k[None], self.N, dft1, dft2)  # (B, C, H, L)
            return (y if k.dim() == 3 else y[:, 0]).to(u.dtype)
        return learned_butterfly_conv(u, k, self.N, dft1, dft2)

    @torch.no_grad()
    def matrix(self):
        """The learned transform as a dense matrix (N, N) or (H, N, N), natural order (for pictures)."""
        return learned_transform_matrix(self.N, *self.blocks())

    @torch.no_grad()
    def distance_from_dft(self, n_probes=8):
        """Relative distance from the DFT: ‖block − DFT‖_F/‖DFT‖_F per block (RMS over channels), and for the whole
        transform ‖T(x) − FFT(x)‖/‖FFT(x)‖ over random probes x (seeded; no N×N matrix is formed)."""
        out = {}
        for name, d, n in (("dft1", self.blocks()[0], self.N1), ("dft2", self.blocks()[1], self.N2)):
            ref = dft_matrix(n, dtype=torch.complex128, device=d.device)
            out[name] = ((d.to(torch.complex128) - ref).norm() / (ref.norm() * math.sqrt(d.numel() / n ** 2))).item()
        g = torch.Generator().manual_seed(0)
        H = self.channels or 1
        x = torch.randn(n_probes, H, self.N, generator=g, dtype=torch.float64).to(self.dft1.device)  # (P, H, N)
        dft1, dft2 = (b.to(torch.complex128) for b in self.blocks())
        Tx = learned_transform(x, self.N, dft1, dft2)  # (P, H, N)
        ref = torch.fft.fft(x)  # (P, H, N)
        out["transform"] = ((Tx - ref).norm() / ref.norm()).item()
        return out

    @torch.no_grad()
    def tone_response(self, channel=0):
        """R = T·F^{-1} (N, N), natural order: column f0 is what T makes of the pure tone exp(2πi·f0·n/N)/N.

        R is the identity for the DFT; off-diagonal entries show how much a learned T leaks one frequency into others.
        """
        N = self.N
        dft1, dft2 = (b.to(torch.complex128) for b in self.blocks())
        if self.channels is not None:
            dft1, dft2 = dft1[channel], dft2[channel]
        tones = dft_matrix(N, inverse=True, device=dft1.device)  # (N, N): row f0 is the tone of frequency f0
        return learned_transform(tones, N, dft1, dft2).T  # (N, N): R[f, f0]

    def extra_repr(self):
        return (f"N={self.N} = {self.N1}·{self.N2}, channels={self.channels}, init={self.init!r}, "
                f"noise={self.noise}")


def butterfly_params(N, channels=None):
    """Real parameters the learned blocks add per transform: 2·(N1² + N2²), times H for per-channel blocks."""
    N1, N2 = default_sizes(N)
    return 2 * (N1 * N1 + N2 * N2) * (channels or 1)


def transform_flops(N, real_input=False):
    """Real FLOPs of one Butterfly transform of one length-N sequence: {"blocks": matmuls, "twiddle": diagonal}.

    A complex (a×a)@(a×b) block product costs 8·a²·b real FLOPs (4 real matmuls); on a real input (a single real row,
    first stage only) 4·a²·b. Skipping the zero padding would save more, for the fixed and learned path alike; not
    counted. The twiddle is 6 FLOPs per complex entry. The blocks' values never enter: the fixed DFT blocks and
    learned ones cost the same. (torch.utils.flop_counter counts a complex matmul as 2·a²·b, a quarter of the real
    count of a complex product.)
    """
    N1, N2 = default_sizes(N)
    stage1 = (4 if real_input else 8) * N1 * N1 * N2  # dft1 @ A
    return {"blocks": stage1 + 8 * N1 * N2 * N2, "twiddle": 6 * N}  # + (· ⊙ twiddle) @ dft2


def conv_flops(N, rows=2, learned=False):
    """Real FLOPs of the fused FFT convolution of `rows` real rows of one channel, by stage (a dict).

    Fixed (DFT) blocks: two real rows share one complex sequence (u_a + i·u_b) through the forward pass, ⊙ k_f and
    the inverse — the DFT's conjugate symmetry makes that exact. Learned blocks: the forward pass runs each real row
    on its own (real first stage, module docstring); each spectrum is folded to its Hermitian part
    (Y[f] + conj Y[−f])/2, which gives Re of the inverse, so the ⊙ k_f and the inverse stay packed in pairs.
    """
    pairs = math.ceil(rows / 2)
    if learned:
        fwd = rows * sum(transform_flops(N, real_input=True).values())
        fold = rows * 4 * N
    else:
        fwd, fold = pairs * sum(transform_flops(N).values()), 0
    pointwise = pairs * 6 * N
    inv = pairs * sum(transform_flops(N).values())  # the adjoint pass costs what the forward pass does
    return {"forward transform": fwd, "Hermitian fold": fold, "⊙ k_f": pointwise, "inverse transform": inv,
            "total": fwd + fold + pointwise + inv}


# ---------------------------------------------------------------- the long-conv layer that uses it

def _fft_size(l_max, backend):
    """Smallest power-of-two FFT size ≥ 2·l_max (causal, no wrap-around); ≥ 256 where Triton may run (its minimum)."""
    N = max(16, 2 * (1 << (l_max - 1).bit_length()))
    return max(N, 256) if backend != "torch" else N


class LearnedButterflyLongConv(LongConv):
    """LongConv whose FFT of u uses learned Butterfly blocks (k's FFT, the inverse stay exact): (B, L, H) → (B, L, H).

    Same parameters as lconv.layers.LongConv plus the blocks (`.butterfly`); per_channel=True learns one pair of
    blocks per model channel H. N (FFT size) defaults to the smallest power of two ≥ 2·l_max. Causal only.
    """

    def __init__(self, d_model, l_max, channels=1, bidirectional=False, kernel="long", dropout=0.0, backend="torch",
                 N=None, butterfly_init="dft", butterfly_noise=0.01, butterfly_lr=1e-3, per_channel=False,
                 **kernel_kwargs):
        if bidirectional:
            raise ValueError("LearnedButterflyLongConv is causal only: use bidirectional=False, or lconv.layers."
                             "LongConv for a bidirectional layer")
        if backend not in BACKENDS:
            raise ValueError(f"LearnedButterflyLongConv: backend must be one of {BACKENDS}, got {backend!r}")
        super().__init__(d_model, l_max, channels=channels, bidirectional=False, kernel=kernel, dropout=dropout,
                         backend="torch", **kernel_kwargs)  # the parent's Triton path does not know the blocks
        self.backend = backend
        N = _fft_size(l_max, backend) if N is None else N
        if not isinstance(N, int) or N < 2 * l_max:
            raise ValueError(f"LearnedButterflyLongConv: N={N!r} must be an int ≥ 2·l_max={2 * l_max} (causal, no "
                             "wrap-around); leave N=None to pick the smallest power of two")
        if backend == "triton" and not triton_supports_learned():
            raise ValueError("LearnedButterflyLongConv(backend='triton') needs kernels.flash_butterfly_conv with "
                             "dft1/dft2 arguments; use backend='torch' or 'auto'")
        self.butterfly = LearnedButterfly(N, channels=d_model if per_channel else None, init=butterfly_init,
                                          noise=butterfly_noise, lr=butterfly_lr)

    @classmethod
    def from_long_conv(cls, conv, **butterfly_kwargs):
        """A LearnedButterflyLongConv holding copies of `conv`'s kernel, D and output layer (same function at DFT init).

        butterfly_kwargs: N, butterfly_init, butterfly_noise, butterfly_lr, per_channel, backend (default: conv's).
        Only a noisy init draws from the global RNG (each converted layer its own noise).
        """
        if not isinstance(conv, LongConv) or isinstance(conv, cls):
            raise ValueError(f"from_long_conv: expected an lconv.layers.LongConv, got {type(conv).__name__}")
        if conv.bidirectional:
            raise ValueError("from_long_conv: the learned Butterfly layer is causal only; this LongConv is "
                             "bidirectional")
        kind = "s4d" if type(conv.kernel).__name__ == "S4DKernel" else "long"
        butterfly_kwargs.setdefault("backend", conv.backend)
        with torch.random.fork_rng(devices=[]):  # the placeholder kernel's random init must not move the RNG
            new = cls(conv.H, conv.l_max, channels=conv.channels, kernel=kind, dropout=conv.dropout.p,
                      **dict(butterfly_kwargs, butterfly_init="dft"))
            new.kernel = copy.deepcopy(conv.kernel)  # the kernel module as built, with its settings and LR tags
            missing, unexpected = new.load_state_dict(conv.state_dict(), strict=False)
        if unexpected or any(not m.startswith("butterfly.") for m in missing):
            raise ValueError(f"from_long_conv: state mismatch (missing {missing}, unexpected {unexpected})")
        new.butterfly.init = butterfly_kwargs.get("butterfly_init", "dft")
        if new.butterfly.init != "dft":
            new.butterfly.reset_parameters()  # noise from the global RNG: every layer draws its own
        param = next(conv.parameters())
        return new.to(device=param.device)

    def _convolve(self, u, k):
        """u (B, H, L), k (C, H, L) → learned-Butterfly conv + u·D (B, C, H, L)."""
        y = self.butterfly.conv(u, k, backend=self.backend)  # (B, C, H, L)
        return y + u[:, None] * self.D[None, :, :, None]  # (B, C, H, L) skip

    def extra_repr(self):
        return super().extra_repr() + f", N={self.butterfly.N}"


def use_learned_butterfly(model, **butterfly_kwargs):
    """Replace every (causal) LongConv inside `model` by a LearnedButterflyLongConv with the same weights; return it."""
    n = 0
    for parent in list(model.modules()):
        for name, child in list(parent.named_children()):
            if isinstance(child, LongConv) and not isinstance(child, LearnedButterflyLongConv):
                setattr(parent, name, LearnedButterflyLongConv.from_long_conv(child, **butterfly_kwargs))
                n += 1
    if n == 0:
        raise ValueError("use_learned_butterfly: the model has no lconv.layers.LongConv (build it with "
                         "mixer='longconv')")
    return model


def butterfly_modules(model):
    """The model's LearnedButterfly modules, in layer order."""
    return [m for m in model.modules() if isinstance(m, LearnedButterfly)]


# ---------------------------------------------------------------- fixed against learned, on a task

# Per profile: the task, its overrides, the training settings (lconv.experiments.compare's), the kernel and the
# Butterfly settings. "quick" trains both models in a few minutes on a 2-core CPU (the learned one ≈ 2.5× slower:
# the PyTorch reference runs its block matmuls where the fixed model runs an rfft); "full" is the standalone sCIFAR
# script of PAPER.md (6 layers, d_model 256, dropout 0.1, kernel dropout 0.2, kernel LR 1e-3, λ 1e-3, LR 1e-2,
# wd 0.05, batch 50, 300 epochs) with the official learned-Butterfly LR 1e-3 and no weight decay on the blocks.
LEARNED_BUTTERFLY = {
    "smoke": dict(task="digits", overrides={},
                  train=dict(d_model=16, n_layers=1, steps=30, lr=1e-2, batch_size=32, warmup=3, weight_decay=0.0,
                             prenorm=False),
                  kernel=dict(lam=0.002, lr=1e-2, channels=1),
                  butterfly=dict(butterfly_init="dft", butterfly_lr=1e-2)),
    "quick": dict(task="smnist", overrides=dict(n_train=2000, n_val=500, n_test=1000),
                  train=dict(d_model=24, n_layers=2, steps=100, lr=1e-2, batch_size=32, warmup=10,
                             weight_decay=0.0, prenorm=False),
                  kernel=dict(lam=0.002, lr=1e-2, channels=1),
                  butterfly=dict(butterfly_init="dft", butterfly_lr=1e-2)),
    "full": dict(task="cifar", overrides={},
                 train=dict(d_model=256, n_layers=6, steps=270_000, lr=1e-2, batch_size=50, warmup=1000,
                            weight_decay=0.05, prenorm=False, dropout=0.1, eval_every=5000),
                 kernel=dict(lam=0.001, lr=1e-3, kernel_dropout=0.2, channels=2),
                 butterfly=dict(butterfly_init="dft", butterfly_lr=1e-3)),
}


@dataclasses.dataclass
class FixedVsLearned:
    """What compare_fixed_learned returns: the table (one row per model), histories, trained models (CPU, eval)."""

    table: "object"  # pandas.DataFrame
    histories: dict
    models: dict


def build_fixed_and_learned(task, *, d_model, n_layers, kernel, butterfly, prenorm=False, dropout=0.0, seed=0):
    """(fixed, learned): a long-conv SequenceClassifier for `task` and a copy with learned Butterfly blocks.

    Same weights (drawn from `seed`); the learned one is converted by use_learned_butterfly(**butterfly).
    """
    from lconv.experiments import Variant, build_model

    variant = Variant("fixed FFT", "longconv", dict(kernel))
    fixed, learned = (build_model(task, variant, d_model=d_model, n_layers=n_layers, prenorm=prenorm,
                                  dropout=dropout, seed=seed) for _ in range(2))
    return fixed, use_learned_butterfly(learned, **butterfly)


def compare_fixed_learned(task, *, d_model, n_layers, steps, lr, batch_size, kernel, butterfly, seed=0,
                          device="auto", ckpt_dir=None, weight_decay=0.0, warmup=0, eval_every=None,
                          eval_batches=None, prenorm=False, dropout=0.0, log=False):
    """Train a long-conv classifier with the fixed FFT and the same one with learned Butterfly blocks; compare.

    Both models start from the same weights (the learned one is lconv.experiments.build_model's model converted by
    use_learned_butterfly), see the same data in the same order, and use the same settings; at a "dft" init they
    compute the same function at step 0. Runs are checkpointed like lconv.experiments.compare.
    """
    import pandas as pd

    from lconv.experiments import Variant, fit
    from lconv.results import pick_device

    dev = pick_device(device) if isinstance(device, str) else torch.device(device)
    train_cfg = dict(d_model=d_model, n_layers=n_layers, steps=steps, lr=lr, batch_size=batch_size, seed=seed,
                     weight_decay=weight_decay, warmup=warmup, prenorm=prenorm, dropout=dropout)
    fixed = Variant("fixed FFT", "longconv", dict(kernel))
    learned = Variant("learned Butterfly", "longconv", dict(kernel, butterfly=dict(butterfly)))
    _, _, test_loader = task.loaders(batch_size)
    rows, histories, models = [], {}, {}
    pair = build_fixed_and_learned(task, d_model=d_model, n_layers=n_layers, kernel=kernel, butterfly=butterfly,
                                   prenorm=prenorm, dropout=dropout, seed=seed)
    for variant, model in zip((fixed, learned), pair):
        row, history = fit(model, task, variant, train_cfg, test_loader=test_loader, device=dev, ckpt_dir=ckpt_dir,
                           prefix="butterfly", eval_every=eval_every, eval_batches=eval_batches, log=log)
        dist = [m.distance_from_dft() for m in butterfly_modules(model)]
        row.update(butterfly_params=sum(p.numel() for m in butterfly_modules(model) for p in m.parameters()),
                   dist_dft1=max((d["dft1"] for d in dist), default=0.0),
                   dist_dft2=max((d["dft2"] for d in dist), default=0.0),
                   dist_transform=max((d["transform"] for d in dist), default=0.0))
        rows.append(row)
        histories[variant.name], models[variant.name] = history, model
        if log:
            took = "loaded" if row["resumed"] else f"{row['wall_s']:.0f} s"
            print(f"{variant.name:<18} test acc {row['test_accuracy']:.3f}  ({took})", flush=True)
    return FixedVsLearned(pd.DataFrame(rows), histories, models)
