r"""The three-pass FlashButterfly for FFT sizes beyond on-chip memory: N = 8192 … 2^20.

Provenance
----------
The paper (Fu, Epstein et al., ICML 2023, §4) describes the three-pass algorithm in one sentence: one Butterfly pass
over the input, many independent fused FFT convolutions small enough for SRAM, one Butterfly pass back. No code was
released. This is an independent Triton implementation of that description, written from the Cooley–Tukey identity
in `lconv/butterfly.py`; `three_pass_reference` below is its PyTorch reference (same factors, same order, same
scaling) and is checked against torch.fft in tests/test_three_pass.py. The fused inner convolution reuses the
@triton.jit helpers of kernels/flash_butterfly.py (`_monarch_fwd`, `_monarch_adj`, `_load_plan`, `_cdot*`).

Motivation
----------
The fused kernel keeps a whole sequence on chip, which stops at N = 4096 (a 64×64 complex fp32 tile). Beyond that,
split N = N0·M with M ≤ 4096: one more Cooley–Tukey level across the M-strided rows turns the N-point FFT into N0
independent M-point FFTs, each of which the fused kernel can do on chip, convolution included.

Maths (n = n0·M + m in time, f = f0 + N0·g in frequency; F_K = K-point DFT, ω_N = exp(−2πi/N))
----------------------------------------------------------------------------------------------
    X[f0 + N0·g] = Σ_m ω_M^{m·g} · [ ω_N^{f0·m} · Σ_{n0} ω_{N0}^{f0·n0} · x[n0·M + m] ]
                 = FFT_M over m of row f0 of  C = (F_N0 @ x.reshape(N0, M)) ⊙ twiddle(N0, M).
So, with z a complex sequence (two real batch rows packed as re/im, as in the fused kernel) zero-padded to N:
    pass 1 (outer Butterfly):  C[f0, m] = twiddle[f0, m] · Σ_{n0} F0[f0, n0] · z[n0·M + m]     F0 = F_N0/√N0
    pass 2 (N0 inner convs):   D[f0, :] = adj_M( fwd_M(C[f0, :]) ⊙ k_f[f0·M : (f0+1)·M] )    fused, on chip
    pass 3 (outer pass back):  y[n0·M + m] = Σ_{f0} conj(F0[n0, f0]) · conj(twiddle[f0, m]) · D[f0, m]
fwd_M / adj_M are the unitary two-factor Monarch passes of the fused kernel (M = M1·M2, default_sizes(M)); k_f is
the unscaled FFT of k in the permuted order of the sizes (N0, M1, M2) (lconv.butterfly.k_f_permuted): row f0 of the
outer pass gets its own complex spectrum segment. Every factor is unitary, so pass 3 ∘ (⊙ k_f) ∘ pass 1 is exactly
the N-point circular convolution with k (the permutations cancel).

Split: M = min(4096, N/16), N0 = N/M ≥ 16, so the outer DFT is always a tl.dot (no elementwise radix-2…8 path):
8K = 16·512, 16K = 16·1K, 32K = 16·2K, 64K = 16·4K, 128K = 32·4K, 256K = 64·4K, 512K = 128·4K, 1M = 256·4K.
The outer DFT of size N0 is one dense complex matmul F0 @ tile per (N0, BM) column block (K-loop over chunks of KB
rows of F0); for N0 = 256 this costs 4·N0 = 1024 real multiply-adds per complex element on tensor cores (no
recursion of the outer factor).

Backward (g = postgate ⊙ dy, v = pregate ⊙ u, both zero-padded):
    dv = adj(fwd(g) ⊙ conj(k_f))                         (passes 1, 2, 3 on g)
    du = pregate ⊙ dv, dpregate = u ⊙ dv                  (fused in pass 3's store)
    dpostgate = dy ⊙ w, w = conv(v, k) saved by the forward (fused in pass 1's load of dy)
    dk = √N · Re(adj(Σ_pairs conj(fwd(v)) ⊙ fwd(g)))[:Lk] (fwd(v) from pass 1 on u; the spectrum sum in pass 2,
         fp32, per chunk of pairs; chunks summed and the (H, N) inverse FFT done by PyTorch: no batch dimension left)

Memory: intermediate buffers between the passes are fp32 complex planes, (⌈B/2⌉, H, 2, N) fp32 = 4 bytes per input
element (pass 2 works in place). Forward: one buffer (+ w (B, H, L) in u's dtype when postgate needs a gradient).
Backward: up to two buffers (g's and v's spectra) + (n_chunks, H, 2, N) fp32 for dk. All offsets are int64.

Caveats (honest)
----------------
- Tested on CPU through the Triton interpreter and compiled on an H100 (triton 3.6): per call it beats cuFFT's rfft
  convolution up to 128K (2.17× at 8K, 1.5× at 64K–128K, fp16) and is slower from 256K (0.4× at 1M), where the two
  outer passes over the fp32 intermediate dominate (results/ holds the timings). Pass 2 uses the fused kernel's
  launch settings for M (kernels.conv.TUNING): going from 8 to 4 warps at M = 4096 took 16K from 5.2 to 2.8 ms. The
  outer passes have not been tuned. Compiled for sm_90a without a GPU (triton 3.8 triton.compile + ptxas -v,
  pointers 16-byte aligned):
    fp16/bf16  pass 1: 50 regs (N0 = 16), 92 (N0 = 32), 86 (N0 = 64), 189 (N0 = 256), no spills, ≤ 32 KB shared;
               pass 3 (gate + second output): 122–210 regs, no spills;
               pass 2 (inner conv): M = 512: 80 regs, 1K: 211, 2K: 162, no spills; M = 4096: 255 regs and
               ~390 B spilled (the fused kernel's 64×64 tiles); pass 2 backward: M ≤ 2048 no spills, M = 4096
               ~800 B spilled, 53 KB shared.
    fp32 (input_precision="ieee", FMA dots): fine up to M = 512, but pass 2 spills heavily at M ≥ 1024 (340 B at
               1K, ~15 KB at 2K, ~86 KB at 4K) and passes 1/3 spill for N0 ≥ 32: correct but slow. "tf32x3" would
               cut pass 2's spills to ~4 KB at 4K (200 KB shared) but is untested numerically, so not used.
- The twiddle table (2, N0, M) fp32 (8 bytes per FFT point, 8 MB at 1M) is read by every pass-1/3 program: from
  L2 in practice, but it is traffic the fused kernel does not have.
- fp16/bf16: the intermediate buffers are fp32, but every tl.dot operand is rounded to the input dtype (tensor cores);
  errors are a few ulps of the input dtype. fp32 inputs use input_precision="ieee" (no tensor cores). Under the
  interpreter bf16 dots run in fp32 (its bf16 tl.dot is wrong).
- Pass 1 and pass 3 launch one program per (batch pair, channel, column block); no software pipelining (num_stages=1).
"""
from __future__ import annotations

import math

import torch

from lconv import butterfly
from kernels import conv as kconv

try:
    import triton
    import triton.language as tl

    from kernels.flash_butterfly import _cdot, _cdot_conj_lhs, _load_plan, _monarch_adj, _monarch_fwd

    HAS_TRITON = True
except ImportError:  # no triton: the reference runs everywhere
    HAS_TRITON = False

THREE_PASS_N = tuple(1 << e for e in range(13, 21))  # 8192 … 2^20
MAX_INNER = 4096  # the largest M the fused inner convolution holds on chip

# ---------------------------------------------------------------------------------------------------------------
# Sizes and input checks
# ---------------------------------------------------------------------------------------------------------------


def three_pass_sizes(N: int) -> tuple[int, int, int]:
    """(N0, M1, M2) with N = N0·M1·M2: M = M1·M2 = min(4096, N/16) on chip, N0 ≥ 16 across the strided rows."""
    check_seqlen_three_pass(N)
    M = min(MAX_INNER, N // 16)
    return (N // M, *butterfly.default_sizes(M))


def check_seqlen_three_pass(N) -> int:
    """N must be one of THREE_PASS_N (the FFT size, not the input length)."""
    if not isinstance(N, int) or N not in THREE_PASS_N:
        raise ValueError(f"FFT size N={N!r} is not supported by the three-pass kernel; supported N (the FFT size, "
                         f"≥ 2·L for a causal convolution): {list(THREE_PASS_N)}; N ≤ 4096 uses the fused kernel")
    return N


def check_inputs_three_pass(u, k, N, pregate=None, postgate=None) -> None:
    """Validate u (B, H, L), k (H, Lk), N and the gates (both or neither, like u); raise ValueError naming the fix.

    The N check is this module's (three-pass sizes only); everything else is kernels.conv.check_inputs, so the fused
    and the three-pass paths reject the same inputs with the same messages.
    """
    check_seqlen_three_pass(N)
    kconv.check_inputs(u, k, N, pregate=pregate, postgate=postgate)


# ---------------------------------------------------------------------------------------------------------------
# The PyTorch reference of exactly this algorithm (fp32 complex intermediates; fp64 for fp64 inputs)
# ---------------------------------------------------------------------------------------------------------------


def three_pass_reference(u: torch.Tensor, k: torch.Tensor, N: int, pregate=None, postgate=None) -> torch.Tensor:
    """postgate ⊙ (first L of the N-point circular conv of zero-padded pregate ⊙ u and k), by the three passes.

    u (B, H, L), k (H, Lk), L, Lk ≤ N (any N = N0·M with a power-of-two M ≥ 16; sizes from three_pass_sizes when N
    is a three-pass size, else (16, default_sizes(N/16))). Differentiable; returns u's dtype.
    """
    N0, M1, M2 = three_pass_sizes(N) if N in THREE_PASS_N else (16, *butterfly.default_sizes(N // 16))
    M = M1 * M2
    B, H, L = u.shape
    if L > N or k.shape[-1] > N:
        raise ValueError(f"L={L} and Lk={k.shape[-1]} must be ≤ N={N}")
    rdt = torch.float64 if u.dtype == torch.float64 else torch.float32
    cdt = torch.complex128 if rdt == torch.float64 else torch.complex64
    v = u.to(rdt) if pregate is None else u.to(rdt) * pregate.to(rdt)  # (B, H, L)
    z = butterfly.pack_pairs(v)  # (P, H, L) complex, P = ⌈B/2⌉
    z = torch.cat([z, z.new_zeros(*z.shape[:-1], N - L)], dim=-1)  # (P, H, N): zero padding
    F0 = butterfly.dft_matrix(N0, dtype=cdt, device=u.device) / math.sqrt(N0)  # (N0, N0) unitary, symmetric
    tw = butterfly.twiddle(N0, M, dtype=cdt, device=u.device)  # (N0, M)
    # pass 1: N0-point DFT across the M-strided rows, then twiddles
    C = (F0 @ z.reshape(*z.shape[:-1], N0, M)) * tw  # (P, H, N0, M)
    # pass 2: N0 independent inner FFT convolutions, row f0 with its own segment of k_f
    k_f = butterfly.k_f_permuted(k.to(rdt), N, (N0, M1, M2)).reshape(H, N0, M)  # (H, N0, M) permuted order
    Z = butterfly.monarch_fft(C, (M1, M2), permuted=True, norm="ortho")  # (P, H, N0, M)
    D = butterfly.monarch_ifft(Z * k_f, (M1, M2), permuted=True, norm="ortho")  # (P, H, N0, M)
    # pass 3: back across the rows
    y = (F0.conj() @ (D * tw.conj())).reshape(*z.shape)[..., :L]  # (P, H, L)
    y = butterfly.unpack_pairs(y, B)  # (B, H, L)
    if postgate is not None:
        y = y * postgate.to(rdt)
    return y.to(u.dtype)


# ---------------------------------------------------------------------------------------------------------------
# Triton kernels. Complex values are separate re/im planes; buffers between the passes are (P, H, 2, N) fp32.
# ---------------------------------------------------------------------------------------------------------------

if HAS_TRITON:

    @triton.jit
    def outer_fwd_kernel(
        # pointers
        x_ptr, gate_ptr, w_ptr, dgate_ptr, z_ptr, dft_ptr, tw_ptr,
        # sizes
        B, H, L, n_mblocks,
        # meta-parameters
        N0: tl.constexpr, M: tl.constexpr, BM: tl.constexpr, KB: tl.constexpr, HAS_GATE: tl.constexpr,
        HAS_DGATE: tl.constexpr, DOT_FP32: tl.constexpr, PREC: tl.constexpr,
    ):
        """Pass 1: z[p, h, :, f0·M + m] = tw[f0, m] · Σ_n0 F0[f0, n0] · (gate ⊙ x)_pair p[n0·M + m].

        One program per (pair p, channel h, block of BM columns m). Optionally also stores dgate = x ⊙ w (the
        postgate gradient dy ⊙ w, fused into the load of dy).
        """
        N = N0 * M  # constexpr
        DOT = tl.float32 if DOT_FP32 else x_ptr.dtype.element_ty  # tl.dot operand dtype (constexpr)
        pid = tl.program_id(0).to(tl.int64)
        mb = pid % n_mblocks
        ph = pid // n_mblocks  # p·H + h
        h = ph % H
        p = ph // H
        b0 = 2 * p
        base0 = (b0 * H + h) * L  # int64 row offsets of the pair's two real rows
        base1 = base0 + H * L
        m = mb * BM + tl.arange(0, BM)  # (BM,) columns
        f0 = tl.arange(0, N0)  # (N0,) output rows
        accr = tl.zeros((N0, BM), dtype=tl.float32)
        acci = tl.zeros((N0, BM), dtype=tl.float32)
        for kb in tl.static_range(0, N0, KB):
            n0 = kb + tl.arange(0, KB)  # (KB,) input rows of this chunk
            n = n0[:, None] * M + m[None, :]  # (KB, BM) time index n0·M + m
            mask0 = (n < L) & (b0 < B)
            mask1 = (n < L) & (b0 + 1 < B)
            xr = tl.load(x_ptr + base0 + n, mask=mask0, other=0.0).to(tl.float32)
            xi = tl.load(x_ptr + base1 + n, mask=mask1, other=0.0).to(tl.float32)
            if HAS_DGATE:  # dpostgate = dy ⊙ w on the raw dy, before the gate
                wr = tl.load(w_ptr + base0 + n, mask=mask0, other=0.0).to(tl.float32)
                wi = tl.load(w_ptr + base1 + n, mask=mask1, other=0.0).to(tl.float32)
                tl.store(dgate_ptr + base0 + n, (xr * wr).to(dgate_ptr.dtype.element_ty), mask=mask0)
                tl.store(dgate_ptr + base1 + n, (xi * wi).to(dgate_ptr.dtype.element_ty), mask=mask1)
            if HAS_GATE:
                xr *= tl.load(gate_ptr + base0 + n, mask=mask0, other=0.0).to(tl.float32)
                xi *= tl.load(gate_ptr + base1 + n, mask=mask1, other=0.0).to(tl.float32)
            fidx = f0[:, None] * N0 + n0[None, :]  # (N0, KB)
            fr = tl.load(dft_ptr + fidx).to(DOT)
            fi = tl.load(dft_ptr + N0 * N0 + fidx).to(DOT)
            ar, ai = _cdot(fr, fi, xr.to(DOT), xi.to(DOT), PREC)  # (N0, BM) fp32
            accr += ar
            acci += ai
        idx = f0[:, None] * M + m[None, :]  # (N0, BM) slot f0·M + m
        twr = tl.load(tw_ptr + idx)
        twi = tl.load(tw_ptr + N + idx)
        zbase = ph * 2 * N
        tl.store(z_ptr + zbase + idx, accr * twr - acci * twi)
        tl.store(z_ptr + zbase + N + idx, accr * twi + acci * twr)

    @triton.jit
    def outer_adj_kernel(
        # pointers
        z_ptr, dft_ptr, tw_ptr, out1_ptr, gate1_ptr, out2_ptr, gate2_ptr,
        # sizes
        B, H, L, n_mblocks,
        # meta-parameters
        N0: tl.constexpr, M: tl.constexpr, BM: tl.constexpr, KB: tl.constexpr, HAS_GATE1: tl.constexpr,
        HAS_OUT2: tl.constexpr, HAS_GATE2: tl.constexpr, DOT_FP32: tl.constexpr, PREC: tl.constexpr,
    ):
        """Pass 3: r = Σ_f0 conj(F0[n0, f0]) · conj(tw[f0, m]) · z[p, h, :, f0·M + m] at time n0·M + m;
        out1 = gate1 ⊙ r and (optionally) out2 = gate2 ⊙ r, first L entries, Re → row 2p, Im → row 2p+1."""
        N = N0 * M  # constexpr
        DOT = tl.float32 if DOT_FP32 else out1_ptr.dtype.element_ty
        pid = tl.program_id(0).to(tl.int64)
        mb = pid % n_mblocks
        ph = pid // n_mblocks
        h = ph % H
        p = ph // H
        b0 = 2 * p
        zbase = ph * 2 * N
        m = mb * BM + tl.arange(0, BM)  # (BM,)
        n0 = tl.arange(0, N0)  # (N0,) output rows
        accr = tl.zeros((N0, BM), dtype=tl.float32)
        acci = tl.zeros((N0, BM), dtype=tl.float32)
        for kb in tl.static_range(0, N0, KB):
            f0 = kb + tl.arange(0, KB)  # (KB,) frequency rows of this chunk
            idx = f0[:, None] * M + m[None, :]  # (KB, BM)
            dr = tl.load(z_ptr + zbase + idx)
            di = tl.load(z_ptr + zbase + N + idx)
            twr = tl.load(tw_ptr + idx)
            twi = tl.load(tw_ptr + N + idx)
            cr = dr * twr + di * twi  # D ⊙ conj(tw), fp32
            ci = di * twr - dr * twi
            fidx = n0[:, None] * N0 + f0[None, :]  # (N0, KB); F0 is symmetric
            fr = tl.load(dft_ptr + fidx).to(DOT)
            fi = tl.load(dft_ptr + N0 * N0 + fidx).to(DOT)
            ar, ai = _cdot_conj_lhs(fr, fi, cr.to(DOT), ci.to(DOT), PREC)  # conj(F0) @ C: (N0, BM)
            accr += ar
            acci += ai
        n = n0[:, None] * M + m[None, :]  # (N0, BM) time index
        base0 = (b0 * H + h) * L
        base1 = base0 + H * L
        mask0 = (n < L) & (b0 < B)
        mask1 = (n < L) & (b0 + 1 < B)
        o1r, o1i = accr, acci
        if HAS_GATE1:
            o1r = o1r * tl.load(gate1_ptr + base0 + n, mask=mask0, other=0.0).to(tl.float32)
            o1i = o1i * tl.load(gate1_ptr + base1 + n, mask=mask1, other=0.0).to(tl.float32)
        tl.store(out1_ptr + base0 + n, o1r.to(out1_ptr.dtype.element_ty), mask=mask0)
        tl.store(out1_ptr + base1 + n, o1i.to(out1_ptr.dtype.element_ty), mask=mask1)
        if HAS_OUT2:
            o2r, o2i = accr, acci
            if HAS_GATE2:
                o2r = o2r * tl.load(gate2_ptr + base0 + n, mask=mask0, other=0.0).to(tl.float32)
                o2i = o2i * tl.load(gate2_ptr + base1 + n, mask=mask1, other=0.0).to(tl.float32)
            tl.store(out2_ptr + base0 + n, o2r.to(out2_ptr.dtype.element_ty), mask=mask0)
            tl.store(out2_ptr + base1 + n, o2i.to(out2_ptr.dtype.element_ty), mask=mask1)

    @triton.jit
    def inner_conv_kernel(
        # pointers
        z_ptr, k_f_ptr, dft1_ptr, dft2_ptr, tw_ptr, like_ptr,
        # sizes
        P, H, n_chunks, pairs_per_prog,
        # meta-parameters
        N0: tl.constexpr, M1: tl.constexpr, M2: tl.constexpr, DOT_FP32: tl.constexpr, PREC: tl.constexpr,
    ):
        """Pass 2, in place: z[p, h, :, f0·M : (f0+1)·M] ← adj_M(fwd_M(row) ⊙ k_f[h, f0·M …]) for the chunk's pairs.

        One program per (channel h, outer frequency f0, chunk of pairs); like_ptr only carries u's dtype.
        """
        M = M1 * M2  # constexpr
        N = N0 * M
        DOT = tl.float32 if DOT_FP32 else like_ptr.dtype.element_ty
        pid = tl.program_id(0).to(tl.int64)
        chunk = pid % n_chunks
        row = pid // n_chunks  # h·N0 + f0
        f0 = row % N0
        h = row // N0
        n = tl.arange(0, M1)[:, None] * M2 + tl.arange(0, M2)[None, :]  # (M1, M2) slot i1·M2 + i2
        f1r, f1i, f2r, f2i, twr, twi = _load_plan(dft1_ptr, dft2_ptr, tw_ptr, M1, M2, DOT)
        Kr = tl.load(k_f_ptr + h * 2 * N + f0 * M + n)  # (M1, M2) fp32: this row's spectrum segment
        Ki = tl.load(k_f_ptr + h * 2 * N + N + f0 * M + n)
        for i in range(0, pairs_per_prog):
            p = chunk * pairs_per_prog + i
            mask = (n < M) & (p < P)
            base = (p * H + h) * 2 * N + f0 * M
            zr = tl.load(z_ptr + base + n, mask=mask, other=0.0)
            zi = tl.load(z_ptr + base + N + n, mask=mask, other=0.0)
            zr, zi = _monarch_fwd(zr, zi, f1r, f1i, f2r, f2i, twr, twi, DOT, PREC)
            yr = zr * Kr - zi * Ki  # ⊙ k_f
            yi = zr * Ki + zi * Kr
            yr, yi = _monarch_adj(yr, yi, f1r, f1i, f2r, f2i, twr, twi, DOT, PREC)
            tl.store(z_ptr + base + n, yr, mask=mask)
            tl.store(z_ptr + base + N + n, yi, mask=mask)

    @triton.jit
    def inner_conv_bwd_kernel(
        # pointers
        g_ptr, v_ptr, q_ptr, k_f_ptr, dft1_ptr, dft2_ptr, tw_ptr, like_ptr,
        # sizes
        P, H, n_chunks, pairs_per_prog,
        # meta-parameters
        N0: tl.constexpr, M1: tl.constexpr, M2: tl.constexpr, DOT_FP32: tl.constexpr, PREC: tl.constexpr,
        COMPUTE_DV: tl.constexpr, COMPUTE_DK: tl.constexpr,
    ):
        """Pass 2 backward: g row ← adj_M(fwd_M(g row) ⊙ conj(k_f)) in place (dv), and
        q[chunk, h, :, f0·M …] = Σ_{pairs} conj(fwd_M(v row)) ⊙ fwd_M(g row) in fp32 (dk's spectrum, permuted)."""
        M = M1 * M2  # constexpr
        N = N0 * M
        DOT = tl.float32 if DOT_FP32 else like_ptr.dtype.element_ty
        pid = tl.program_id(0).to(tl.int64)
        chunk = pid % n_chunks
        row = pid // n_chunks
        f0 = row % N0
        h = row // N0
        n = tl.arange(0, M1)[:, None] * M2 + tl.arange(0, M2)[None, :]  # (M1, M2)
        f1r, f1i, f2r, f2i, twr, twi = _load_plan(dft1_ptr, dft2_ptr, tw_ptr, M1, M2, DOT)
        if COMPUTE_DV:
            Kr = tl.load(k_f_ptr + h * 2 * N + f0 * M + n)
            Ki = tl.load(k_f_ptr + h * 2 * N + N + f0 * M + n)
        Pr = tl.zeros((M1, M2), dtype=tl.float32)  # Σ conj(Zv) ⊙ Zg over the chunk's pairs
        Pi = tl.zeros((M1, M2), dtype=tl.float32)
        for i in range(0, pairs_per_prog):
            p = chunk * pairs_per_prog + i
            mask = (n < M) & (p < P)
            base = (p * H + h) * 2 * N + f0 * M
            gr = tl.load(g_ptr + base + n, mask=mask, other=0.0)
            gi = tl.load(g_ptr + base + N + n, mask=mask, other=0.0)
            gr, gi = _monarch_fwd(gr, gi, f1r, f1i, f2r, f2i, twr, twi, DOT, PREC)  # Zg
            if COMPUTE_DV:
                xr = gr * Kr + gi * Ki  # Zg ⊙ conj(k_f)
                xi = gi * Kr - gr * Ki
                xr, xi = _monarch_adj(xr, xi, f1r, f1i, f2r, f2i, twr, twi, DOT, PREC)
                tl.store(g_ptr + base + n, xr, mask=mask)
                tl.store(g_ptr + base + N + n, xi, mask=mask)
            if COMPUTE_DK:
                vr = tl.load(v_ptr + base + n, mask=mask, other=0.0)
                vi = tl.load(v_ptr + base + N + n, mask=mask, other=0.0)
                vr, vi = _monarch_fwd(vr, vi, f1r, f1i, f2r, f2i, twr, twi, DOT, PREC)  # Zv
                Pr += vr * gr + vi * gi  # conj(Zv) ⊙ Zg
                Pi += vr * gi - vi * gr
        if COMPUTE_DK:  # the spectrum sum in permuted order; its inverse FFT (H·N, no batch) runs in PyTorch
            qbase = (chunk * H + h) * 2 * N + f0 * M
            tl.store(q_ptr + qbase + n, Pr)
            tl.store(q_ptr + qbase + N + n, Pi)

    INTERPRET = type(outer_fwd_kernel).__name__ == "InterpretedFunction"  # decided at import
else:
    INTERPRET = False


# ---------------------------------------------------------------------------------------------------------------
# Launch wrappers
# ---------------------------------------------------------------------------------------------------------------

_PLANS: dict = {}


def _planes(z: torch.Tensor, device) -> torch.Tensor:
    """complex (a, b) → fp32 (2, a, b) re/im planes on device."""
    return torch.stack([z.real, z.imag]).to(device=device, dtype=torch.float32).contiguous()


def _plan(N: int, device: torch.device):
    """Tables for N: outer F0/√N0 (2, N0, N0), twiddle (2, N0, M); inner F_M1/√M1, F_M2/√M2, twiddle(M1, M2)."""
    key = (N, str(device))
    if key not in _PLANS:
        N0, M1, M2 = three_pass_sizes(N)
        _PLANS[key] = {
            "dft0": _planes(butterfly.dft_matrix(N0) / math.sqrt(N0), device),
            "tw0": _planes(butterfly.twiddle(N0, M1 * M2), device),
            "dft1": _planes(butterfly.dft_matrix(M1) / math.sqrt(M1), device),
            "dft2": _planes(butterfly.dft_matrix(M2) / math.sqrt(M2), device),
            "tw1": _planes(butterfly.twiddle(M1, M2), device),
            "inv_perm": torch.argsort(butterfly.permuted_order((N0, M1, M2))).to(device),  # permuted → natural
        }
    return _PLANS[key]


def k_f_planes_three_pass(k: torch.Tensor, N: int) -> torch.Tensor:
    """k (H, Lk) fp32 → (H, 2, N) fp32: re/im of k's N-point FFT in the permuted order of (N0, M1, M2)."""
    k_f = butterfly.k_f_permuted(k, N, three_pass_sizes(N))  # (H, N) complex64
    return torch.stack([k_f.real, k_f.imag], dim=1).contiguous()  # (H, 2, N)


def _outer_blocks(N0: int) -> dict:
    """Column block BM and K chunk KB of the outer passes (tile (N0, BM) fp32 complex accumulators)."""
    BM = 64 if N0 <= 32 else (32 if N0 <= 64 else 16)
    KB = min(N0, 64 if N0 <= 64 else 32)
    return {"BM": BM, "KB": KB, "num_warps": 4 if N0 <= 32 else 8, "num_stages": 1}


def _pass1(x, gate, N, dtype, w=None, dgate=None):
    """(P, H, 2, N) fp32 outer-pass spectrum of pairs of gate ⊙ x (B, H, L); also dgate = x ⊙ w when w is given."""
    B, H, L = x.shape
    N0, M1, M2 = three_pass_sizes(N)
    M = M1 * M2
    plan = _plan(N, x.device)
    P = -(-B // 2)
    z = torch.empty(P, H, 2, N, device=x.device, dtype=torch.float32)  # (P, H, 2, N)
    opts = _outer_blocks(N0)
    n_mblocks = M // opts["BM"]
    outer_fwd_kernel[(P * H * n_mblocks,)](
        x, x if gate is None else gate, x if w is None else w, x if dgate is None else dgate, z,
        plan["dft0"], plan["tw0"],
        B, H, L, n_mblocks,
        N0=N0, M=M, HAS_GATE=gate is not None, HAS_DGATE=w is not None, **kconv._dot_args(dtype), **opts)
    return z


def _pass3(z, N, B, L, out1, gate1=None, out2=None, gate2=None, dtype=None):
    """Outer pass back of z (P, H, 2, N) into out1 = gate1 ⊙ r (B, H, L) and optionally out2 = gate2 ⊙ r."""
    H = z.shape[1]
    N0, M1, M2 = three_pass_sizes(N)
    M = M1 * M2
    plan = _plan(N, z.device)
    opts = _outer_blocks(N0)
    n_mblocks = M // opts["BM"]
    outer_adj_kernel[(z.shape[0] * H * n_mblocks,)](
        z, plan["dft0"], plan["tw0"], out1, out1 if gate1 is None else gate1,
        out1 if out2 is None else out2, out1 if gate2 is None else gate2,
        B, H, L, n_mblocks,
        N0=N0, M=M, HAS_GATE1=gate1 is not None, HAS_OUT2=out2 is not None, HAS_GATE2=gate2 is not None,
        **kconv._dot_args(dtype or out1.dtype), **opts)


def _pass2(z, k_f, N, like, pairs_per_prog=None):
    """In place: every row f0 of z (P, H, 2, N) becomes its inner FFT convolution with its k_f segment."""
    P, H = z.shape[:2]
    N0, M1, M2 = three_pass_sizes(N)
    plan = _plan(N, z.device)
    n_chunks, ppp = kconv._chunks(P, H * N0, z.device, pairs_per_prog)
    inner_conv_kernel[(H * N0 * n_chunks,)](
        z, k_f, plan["dft1"], plan["dft2"], plan["tw1"], like,
        P, H, n_chunks, ppp,
        N0=N0, M1=M1, M2=M2, **kconv._dot_args(like.dtype), **kconv._launch_opts(M1 * M2, "fwd"))


def _pass2_bwd(g, v, k_f, N, like, need_dv=True, need_dk=True, pairs_per_prog=None):
    """g (P, H, 2, N) ← inner part of dv in place; returns q (H, 2, N) fp32 = Σ conj(Zv)·Zg (permuted) or None."""
    P, H = g.shape[:2]
    N0, M1, M2 = three_pass_sizes(N)
    plan = _plan(N, g.device)
    n_chunks, ppp = kconv._chunks(P, H * N0, g.device, pairs_per_prog)
    q = (torch.empty(n_chunks, H, 2, N, device=g.device, dtype=torch.float32) if need_dk  # (C, H, 2, N)
         else g.new_empty(0))
    inner_conv_bwd_kernel[(H * N0 * n_chunks,)](
        g, g if v is None else v, q, k_f, plan["dft1"], plan["dft2"], plan["tw1"], like,
        P, H, n_chunks, ppp,
        N0=N0, M1=M1, M2=M2, **kconv._dot_args(like.dtype), COMPUTE_DV=need_dv, COMPUTE_DK=need_dk,
        **kconv._launch_opts(M1 * M2, "bwd"))
    return q.sum(0) if need_dk else None  # (H, 2, N)


def _dk_from_spectrum(q: torch.Tensor, N: int, Lk: int) -> torch.Tensor:
    """dk (H, Lk) = √N·Re(U^H q)[:Lk] = Re(N·ifft(q in natural order))[:Lk]; q (H, 2, N) fp32 permuted, no batch dim."""
    inv = _plan(N, q.device)["inv_perm"]
    q_nat = torch.complex(q[:, 0], q[:, 1])[:, inv]  # (H, N) natural frequency order
    return (torch.fft.ifft(q_nat, norm="forward").real[:, :Lk]).contiguous()  # (H, Lk) fp32


def _fwd(u, k_f, N, pregate=None, postgate=None, save_w=False, pairs_per_prog=None):
    """(y, w or None): y = postgate ⊙ w, w = conv_N(pregate ⊙ u, k) — three passes, one (P, H, 2, N) buffer."""
    B, H, L = u.shape
    z = _pass1(u, pregate, N, u.dtype)  # (P, H, 2, N) fp32
    _pass2(z, k_f, N, u, pairs_per_prog)
    y = torch.empty_like(u)  # (B, H, L)
    w = torch.empty_like(u) if (save_w and postgate is not None) else None
    _pass3(z, N, B, L, y, gate1=postgate, out2=w)
    return y, w


def _bwd(u, dy, k_f, N, Lk, pregate=None, postgate=None, w=None, need_du=True, need_dk=True,
         need_dpre=False, need_dpost=False, pairs_per_prog=None):
    """(du, dk, dpregate, dpostgate), None where not needed: three passes on dy (and pass 1 on u for dk)."""
    B, H, L = u.shape
    need_dv = need_du or need_dpre
    dpost = torch.empty_like(u) if need_dpost else None
    du = dpre = dk = None
    if need_dv or need_dk or need_dpost:
        g = _pass1(dy, postgate, N, u.dtype, w=w if need_dpost else None, dgate=dpost)  # (P, H, 2, N)
    if need_dv or need_dk:
        v = _pass1(u, pregate, N, u.dtype) if need_dk else None  # (P, H, 2, N)
        q = _pass2_bwd(g, v, k_f, N, u, need_dv=need_dv, need_dk=need_dk, pairs_per_prog=pairs_per_prog)
        del v
        if need_dv:
            du = torch.empty_like(u)  # (B, H, L)
            dpre = torch.empty_like(u) if need_dpre else None
            _pass3(g, N, B, L, du, gate1=pregate, out2=dpre, gate2=u if need_dpre else None)
        if need_dk:
            dk = _dk_from_spectrum(q, N, Lk)  # (H, Lk)
    return du, dk, dpre, dpost


class ThreePassFn(torch.autograd.Function):
    """The three passes wired into autograd: y = postgate ⊙ conv_N(pregate ⊙ u, k)."""

    @staticmethod
    def forward(ctx, u, k, pregate, postgate, N):
        k_f = k_f_planes_three_pass(k, N)  # (H, 2, N) fp32, once per call
        save_w = postgate is not None and ctx.needs_input_grad[3]
        y, w = _fwd(u, k_f, N, pregate, postgate, save_w=save_w)
        ctx.save_for_backward(u, k_f, pregate, postgate, w)
        ctx.N, ctx.Lk = N, k.shape[-1]
        return y

    @staticmethod
    def backward(ctx, dy):
        u, k_f, pregate, postgate, w = ctx.saved_tensors
        dy = dy.to(u.dtype).contiguous()  # (B, H, L)
        need_du, need_dk, need_dpre, need_dpost = ctx.needs_input_grad[:4]
        du, dk, dpre, dpost = _bwd(u, dy, k_f, ctx.N, ctx.Lk, pregate, postgate, w, need_du=need_du,
                                   need_dk=need_dk, need_dpre=need_dpre and pregate is not None,
                                   need_dpost=need_dpost and postgate is not None)
        return du, dk, dpre, dpost, None


# ---------------------------------------------------------------------------------------------------------------
# Public API
# ---------------------------------------------------------------------------------------------------------------


def three_pass_conv(u: torch.Tensor, k: torch.Tensor, N: int, pregate: torch.Tensor | None = None,
                    postgate: torch.Tensor | None = None, backend: str = "auto") -> torch.Tensor:
    """y (B, H, L) = postgate ⊙ first L of the N-point circular convolution of zero-padded pregate ⊙ u and k (H, Lk).

    N (the FFT size, 8192 … 2^20) = N0·M: L, Lk ≤ N/2 gives the causal linear convolution, L = N the circular one.
    u and gates fp32/fp16/bf16 (same dtype), k fp32; y in u's dtype; differentiable in u, k and the gates (both
    gates or neither, as kernels.conv.check_inputs requires). backend: "auto" (Triton on CUDA, or on CPU under
    TRITON_INTERPRET=1), "triton", "reference".
    """
    check_inputs_three_pass(u, k, N, pregate, postgate)
    if backend not in kconv.BACKENDS:
        raise ValueError(f"backend={backend!r}: use one of {kconv.BACKENDS}")
    can_triton = HAS_TRITON and (u.is_cuda or (u.device.type == "cpu" and INTERPRET))
    if backend == "triton" and not can_triton:
        raise ValueError("backend='triton' needs Triton and a CUDA tensor, or CPU tensors with TRITON_INTERPRET=1 "
                         "set before `import kernels`; use backend='reference' or 'auto' otherwise")
    if backend == "reference" or not can_triton or u.numel() == 0 or k.numel() == 0:
        return three_pass_reference(u, k, N, pregate, postgate)
    return ThreePassFn.apply(u, k, pregate, postgate, N)
