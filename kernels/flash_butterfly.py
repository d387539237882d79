r"""FlashButterfly in Triton: the whole FFT convolution (FFT → ⊙ k_f → inverse FFT) fused in one kernel.

Provenance
----------
The paper (Fu, Epstein et al., ICML 2023, §4) describes FlashButterfly but never released it; its successor
HazyResearch/flash-fft-conv is CUDA-only. This is an independent Triton implementation of the algorithm as described
(see /work/shared/PAPER.md), written from the maths in `lconv/butterfly.py`, whose `real_butterfly_conv` is its
PyTorch reference (same factors, order, scaling and k_f layout). The file reads like kernels/three_pass.py: the
@triton.jit kernels, then their launchers (`_conv`, `_fwd`, `_bwd`), the autograd Function (`FlashButterflyFn`) and
the torch.library operators; sizes, checks, tables and the checked launch come from kernels/launch.py, the public
API is kernels/conv.py; kernels/probe.py compiles the kernels for NVIDIA targets without a GPU (registers, spills,
shared memory).

Motivation
----------
A long convolution y = u * k via cuFFT reads and writes u, its spectrum and y in HBM several times, and the FFT's
butterflies cannot use tensor cores. Cooley–Tukey with M = N1·N2 turns an M-point FFT into two rounds of small dense
DFT matrix multiplies (8–64 points: `tl.dot` on tensor cores from 16) with a twiddle diagonal between them. A whole
sequence of N ≤ 4096 fits on chip as an (N1, N2) tile, so u is read once and y written once.

Algorithm (per program: one channel h, a chunk of batch rows; each row on its own)
------------------------------------------------------------------------------------
Every row is a real sequence x of length N (u zero-padded). The half-length real-FFT trick runs it as one complex
sequence of M = N/2 points, its even and odd samples, so a row costs what a packed pair of rows used to cost per row,
and no row ever shares arithmetic with another (one NaN, or one huge sample, cannot touch its neighbours):
    F1, F2 = DFT_{N1}/√N1, DFT_{N2}/√N2 with (N1, N2) = default_sizes(M)   # unitary, loaded once, dot dtype
    tw     = twiddle(N1, N2);  ω[f] = exp(−2πi·f/N);  K_lo, K_hi = k_f[f], k_f[f + M]  (f in the permuted order)
    for b in rows of the chunk:
        z    = x[2m] + i·x[2m+1],  m = n1·N2 + n2          # masked loads: the zero padding is free
        Z    = ((F1 @ z) ⊙ tw) @ F2                         # M-point Monarch FFT, permuted order f = f1 + N1·f2
        W    = Z[−f]                                       # tl.gather: rows f1 → −f1, then columns (a permutation)
        E, O = (Z + conj W)/2, (Z − conj W)/(2i)            # spectra of the even and of the odd samples
        X_lo, X_hi = E + ω·O, E − ω·O                       # x's N-point spectrum at f and f + M
        Y_lo, Y_hi = X_lo ⊙ K_lo, X_hi ⊙ K_hi
        Z'   = (Y_lo + Y_hi)/2 + i·conj(ω)·(Y_lo − Y_hi)/2  # spectrum of y[2m] + i·y[2m+1]
        y[2m] + i·y[2m+1] = conj(F1) @ ((Z' @ conj(F2)) ⊙ conj(tw))
N = 256 has M = 128 = 8·16: blocks below 16 are not `tl.dot` shapes, so there the products are broadcast sums
(`_mm`, fp32 FMAs; a few thousand per row).

Fused gating: y = post ⊙ conv(pre ⊙ u, k). The gates are read with the same even/odd loads as u (pre right after
u, post right before the store). `flash_butterfly_fwd_kernel` is written for both directions: c = conv_N([gate_in ⊙]
x, k), or the correlation with k (CONJ_K: X ⊙ conj(K)), then y = [gate_out ⊙] c, out2 = [gate2 ⊙] c and
dgate = x ⊙ w (each a constexpr flag; absent outputs cost nothing). The forward is x = u, gate_in = pre,
gate_out = post, and out2 = w = conv(pre ⊙ u, k) in u's dtype only when postgate needs a gradient (the
operator's save_w, decided by the caller from postgate.requires_grad and torch.is_grad_enabled()).

Backward: two launches, about twice the forward's work (du ≈ one forward, dk ≈ two forward transforms per row):
    du kernel = flash_butterfly_fwd_kernel on x = dy, gate_in = post, conj(K), gate_out = pre, gate2 = u:
        g = post ⊙ dy;  dv = inv(fwd(g) ⊙ conj(K));  du = pre ⊙ dv;  dpre = u ⊙ dv
        dpost = dy ⊙ w   (from the dy it already loads; elementwise, no transform; w recomputed if not saved)
    dk kernel (`flash_butterfly_dk_kernel`, no K held), per row of the program's chunk:
        X_g = fwd(post ⊙ dy);  X_v = fwd(pre ⊙ u);  P += conj(X_v) ⊙ X_g   (fp32, with the rows' scales)
        dk_partial[chunk, h] = √M · inverse(P)[:Lk]   (once per program, fp32 dots, "ieee")
    dk = Σ_chunk dk_partial by PyTorch (deterministic); with one chunk, dk_partial[0] itself (a view, no kernel).
Ungated, the same with pre = post = 1. Each launch has its own settings (kernels.launch.TUNING "du", "dk").

Numerics of fp16/bf16 (NORM=True): before its transform every row of pre ⊙ u (and of post ⊙ dy) is multiplied by a
power of two s so that max|x·s| ∈ [1/2, 1), and each program's K by a power of two so that max|K| ∈ [1/2, 1); the
unitary factors keep every later tile's 2-norm ≤ √N, so every value rounded to the dot dtype is at most 2√N (128
at N = 4096), whatever the inputs. The scales are undone in fp32 just before the store (exact: powers of two). So
no intermediate overflows or underflows because of the input's size: for any finite input the result is finite
wherever its exact value fits the dtype, and ±inf (as PyTorch's fp32 result cast to the dtype) where it does not.
Errors are a few ulps of the dtype relative to each row's own largest output. dk and the block gradients are
accumulated in fp32 with the scales applied per row. fp32 inputs skip the scaling (NORM=False). The du kernel is
the forward kernel, so du and dpre get the forward's scaling (per row of post ⊙ dy, per program of K); w is
rounded to u's dtype once, as PyTorch's conv output would be, and dpost = dy ⊙ w is their fp32 product rounded
once (exactly PyTorch's dy * w).

Learned forward blocks (`learned_fwd_kernel`, `learned_bwd_kernel`): u's forward pass uses learned A1 (N1, N1),
A2 (N2, N2) of the N-point split (N1, N2) = default_sizes(N) (shared or per channel; twiddles fixed), k's spectrum
and the inverse stay exact:
        y = Re(F^{-1}(K ⊙ ((A1 @ u) ⊙ tw) @ A2))[:L]   row by row (the official code's `ifft(...).real`)
A learned A(u) is not Hermitian, so the half-length trick does not apply: each row is its own real (N1, N2) tile.
The first dot of each pass sees real operands (2 real dots instead of 4): 12 real dots per row on (N1, N2) tiles,
against the fixed kernel's 16 on tiles half that size (1.5× its tensor-core work, the same HBM traffic). At A = DFT
the output equals the fixed kernel's to rounding. Backward per row: Zg = F g; gZ = Zg ⊙ conj(K);
gB = (gZ @ A2^H) ⊙ conj(tw); dv = Re(A1^H @ gB); dA1 += gB @ v^T, dA2 += C^H @ gZ with C = (A1 @ v) ⊙ tw;
per-program fp32 partial sums (n_chunks, H, 2, M, M) reduced by PyTorch (deterministic; shared blocks also summed
over H). The same NORM scaling applies (bounds as above while the blocks stay near the DFT's scale).

Host path (issue 20): a call is two launches and two allocations, nothing else (pinned by tests/test_host_path.py,
which counts the ATen ops and launches a call dispatches and fails on any host-device synchronisation). k_f is made
on the GPU per call by one launch, `k_f_half_kernel`: the same half-length forward transform applied to k with fp32
tables and fp32 ("ieee") products, ×√M, equal to the PyTorch layout `kernels.launch.k_f_planes` to fp32 rounding
(the learned kernels' layout: torch.fft.rfft plus one gather launch, `k_f_gathered`). Calls that record no gradient
(torch.no_grad, or no input requiring one, outside torch.compile) launch directly (`forward_only`), without the
operator's or the autograd Function's bookkeeping; the tables live in a per-device cache (`kernels.launch.prepare`
builds them before a CUDA-graph capture, which may not copy host memory), the multiprocessor count is asked once
per GPU. k_f is not cached across calls (the peer and the baselines recompute fft(k) every call, and so do we).

Index arithmetic: every offset into u, y, the gates, their gradients, k_f and the partial sums is computed in int64
(`_row_start`), so B·H·L may exceed 2^31.

Caveats (honest)
----------------
- Tested on CPU through the Triton interpreter. Nothing in this version has been timed on a GPU: neither the
  per-row design nor the split backward (du kernel + dk kernel, issue 20); the packed-pair kernel they replace was
  (results/ and the README hold those timings, H100, triton 3.6). Per row it runs the same number of tensor-core
  products on tiles half the size, plus 2 `tl.gather` per forward transform (through shared memory) and one
  max-reduction per row for fp16/bf16; kernels.io_model counts the bytes of every pass. Run `make bench` and
  `python -m lconv.kernels.sweep` (fwd, du, dk) on a GPU before believing "backward ≈ 2× forward" in time.
- Compiled, not timed (`python -m lconv.kernels.probe`: triton 3.8 and its ptxas on this CPU, sm_90a and sm_89,
  fp16/bf16, gated, at kernels.launch.TUNING's warps), N = 256 / 512 / 1K / 2K / 4K, shared memory per block:
  fwd and du 0.5 / 3 / 7 / 12 / 28 KB, dk 1 / 7 / 17 / 28 / 68 KB (fp32 inputs: du and dk 14 / 24 / 56 KB at
  1K / 2K / 4K); the single backward kernel this replaced needed 56 KB at 4K. Register spills (bytes per thread,
  sm_90): none up to N = 1024; at 2K / 4K fwd (4 warps) 608 / 984, du (8 warps) 320 / 384, dk (8 warps) 720 / 1380
  (sm_89: dk 2696 at 4K), against 1740 / 6476 for the old single backward at its 4 warps; every warp count spills
  at 2K and 4K (TUNING's comment has the table). fp32 inputs spill more (no tensor cores: du 5 KB, dk 16 KB at 4K).
- Learned kernels, same probe: fwd (gated) 5 / 12 / 20 / 48 / 80 KB, bwd (gated, every gradient)
  8 / 19 / 36 / 84 / 144 KB. Everything fits the ~99 KB per block of RTX 3090/4090, A10 and L4 but the learned
  backward at N = 4096: kernels.launch.launch checks each compiled configuration against the GPU before its first
  launch and raises ValueError naming the GPU, N and the limit.
- fp32 inputs use input_precision="ieee" (no TF32), i.e. no tensor cores: correct but not fast.
- bf16 `tl.dot` is wrong in the interpreter, so under TRITON_INTERPRET=1 bf16 inputs are multiplied with fp32 dots;
  the interpreter also truncates fp32 → bf16, so there `_to_out` rounds to nearest first (compiled: a plain cast).
- Gates are fused; products with gates are taken in fp32 and rounded once at the store.
- N > 4096 is not in this file: kernels.conv dispatches it to kernels.three_pass (the three-pass algorithm).
- dk (and the learned blocks' gradients) are reduced across batch chunks through fp32 partial buffers summed by
  PyTorch (deterministic, no atomics); with one chunk the partial buffer's only entry is returned (a view).
- dpostgate needs w = conv(pre ⊙ u, k): the forward stores it (one more (B, H, L) tensor kept for the backward)
  only when postgate requires grad under grad mode; a caller of the operator that passes save_w=False and still
  asks for dpostgate gets it right, at the cost of one more forward launch in the backward (w recomputed).
"""
from __future__ import annotations

import math
import os

import torch
import triton
import triton.language as tl

from lconv.butterfly import default_sizes, half_sizes

from .launch import block_planes, chunks, dot_args, get_plan, launch, launch_opts, learned_planes, loop_opts

# Triton's interpreter casts fp32 → bf16 by truncation (compiled kernels round to nearest even); `_to_out` rounds
# first there, so that CPU runs of bf16 inputs measure what a GPU stores. Decided at import, like TRITON_INTERPRET.
_INTERPRETED = tl.constexpr(os.environ.get("TRITON_INTERPRET", "0") == "1")

# ---------------------------------------------------------------------------------------------------------------
# Offsets, scaling, products. Complex values are separate re/im planes; products return fp32.
# ---------------------------------------------------------------------------------------------------------------


@triton.jit
def _row_start(b, h, H, L):
    """Offset of row (b, h) of a contiguous (B, H, L) tensor, in int64 whatever the types of b, h, H and L."""
    return (b.to(tl.int64) * H + h) * L


@triton.jit
def _to_out(y, ptr):
    """fp32 y in ptr's element type, rounded to nearest even (emulated for bf16 under the interpreter)."""
    if _INTERPRETED and ptr.dtype.element_ty == tl.bfloat16:
        bits = y.to(tl.uint32, bitcast=True)
        bits = bits + (0x7FFF + ((bits >> 16) & 1))  # round the 16 bits bf16 drops to nearest, ties to even
        y = ((bits >> 16) << 16).to(tl.float32, bitcast=True)
    return y.to(ptr.dtype.element_ty)


@triton.jit
def _pow2_scale(m):
    """(s, 1/s): powers of two with m·s in [1/2, 1) for a normal m > 0 (m = 0, subnormal: s = 2^125; NaN/inf: 2^-126).

    Built from m's exponent bits, so the scaling and its undoing are exact.
    """
    e = (m.to(tl.int32, bitcast=True) >> 23) & 0xFF  # biased exponent: m in [2^(e−127), 2^(e−126))
    e = tl.minimum(tl.maximum(e, 1), 252)
    s = ((253 - e) << 23).to(tl.float32, bitcast=True)  # 2^(126 − e)
    inv = ((e + 1) << 23).to(tl.float32, bitcast=True)  # 2^(e − 126)
    return s, inv


@triton.jit
def _absmax(ar, ai):
    """max(|ar|, |ai|) over two tiles, a scalar (NaN entries are skipped by the GPU's max: they stay in their row)."""
    return tl.maximum(tl.max(tl.abs(ar)), tl.max(tl.abs(ai)))


@triton.jit
def _scale_pair(ar, ai, NORM: tl.constexpr):
    """(ar·s, ai·s, 1/s) with s a power of two making max(|ar|, |ai|)·s ∈ [1/2, 1) when NORM, else (ar, ai, 1): the
    complex twin of _scale_row."""
    inv = 1.0
    if NORM:
        s, inv = _pow2_scale(_absmax(ar, ai))
        ar, ai = ar * s, ai * s
    return ar, ai, inv


@triton.jit
def _mm(a, b, PREC: tl.constexpr, USE_DOT: tl.constexpr):
    """a @ b in fp32: tl.dot where every dimension is ≥ 16 (USE_DOT), else a broadcast sum of fp32 products."""
    if USE_DOT:
        r = tl.dot(a, b, input_precision=PREC, out_dtype=tl.float32)
    else:
        r = tl.sum(a.to(tl.float32)[:, :, None] * b.to(tl.float32)[None, :, :], axis=1)
    return r


@triton.jit
def _cdot(ar, ai, br, bi, PREC: tl.constexpr, USE_DOT: tl.constexpr):
    """(ar + i·ai) @ (br + i·bi)."""
    rr = _mm(ar, br, PREC, USE_DOT) - _mm(ai, bi, PREC, USE_DOT)
    ri = _mm(ar, bi, PREC, USE_DOT) + _mm(ai, br, PREC, USE_DOT)
    return rr, ri


@triton.jit
def _cdot_conj_rhs(ar, ai, br, bi, PREC: tl.constexpr, USE_DOT: tl.constexpr):
    """(ar + i·ai) @ conj(br + i·bi)."""
    rr = _mm(ar, br, PREC, USE_DOT) + _mm(ai, bi, PREC, USE_DOT)
    ri = _mm(ai, br, PREC, USE_DOT) - _mm(ar, bi, PREC, USE_DOT)
    return rr, ri


@triton.jit
def _cdot_conj_lhs(ar, ai, br, bi, PREC: tl.constexpr, USE_DOT: tl.constexpr):
    """conj(ar + i·ai) @ (br + i·bi)."""
    rr = _mm(ar, br, PREC, USE_DOT) + _mm(ai, bi, PREC, USE_DOT)
    ri = _mm(ar, bi, PREC, USE_DOT) - _mm(ai, br, PREC, USE_DOT)
    return rr, ri


@triton.jit
def _monarch_fwd(xr, xi, f1r, f1i, f2r, f2i, twr, twi, DOT: tl.constexpr, PREC: tl.constexpr,
                 USE_DOT: tl.constexpr = True):
    """Z = ((F1 @ x) ⊙ tw) @ F2 on an (N1, N2) tile: natural-order time in, permuted-order frequency out."""
    br, bi = _cdot(f1r, f1i, xr.to(DOT), xi.to(DOT), PREC, USE_DOT)  # (N1, N2): N1-point DFTs down the columns
    cr = br * twr - bi * twi  # twiddle, fp32
    ci = br * twi + bi * twr
    return _cdot(cr.to(DOT), ci.to(DOT), f2r, f2i, PREC, USE_DOT)  # (N1, N2): N2-point DFTs along the rows


@triton.jit
def _monarch_adj(xr, xi, f1r, f1i, f2r, f2i, twr, twi, DOT: tl.constexpr, PREC: tl.constexpr,
                 USE_DOT: tl.constexpr = True):
    """y = conj(F1) @ ((X @ conj(F2)) ⊙ conj(tw)): the adjoint (= inverse, for unitary F) of `_monarch_fwd`."""
    er, ei = _cdot_conj_rhs(xr.to(DOT), xi.to(DOT), f2r, f2i, PREC, USE_DOT)  # (N1, N2)
    cr = er * twr + ei * twi  # ⊙ conj(tw)
    ci = ei * twr - er * twi
    return _cdot_conj_lhs(f1r, f1i, cr.to(DOT), ci.to(DOT), PREC, USE_DOT)  # (N1, N2)


@triton.jit
def _load_plan(dft1_ptr, dft2_ptr, tw_ptr, N1: tl.constexpr, N2: tl.constexpr, DOT: tl.constexpr):
    """DFT matrices (in the dot dtype) and twiddles (fp32) from their (2, ·, ·) re/im tables."""
    r1 = tl.arange(0, N1)
    r2 = tl.arange(0, N2)
    i11 = r1[:, None] * N1 + r1[None, :]  # (N1, N1)
    i22 = r2[:, None] * N2 + r2[None, :]  # (N2, N2)
    i12 = r1[:, None] * N2 + r2[None, :]  # (N1, N2)
    f1r = tl.load(dft1_ptr + i11).to(DOT)
    f1i = tl.load(dft1_ptr + N1 * N1 + i11).to(DOT)
    f2r = tl.load(dft2_ptr + i22).to(DOT)
    f2i = tl.load(dft2_ptr + N2 * N2 + i22).to(DOT)
    twr = tl.load(tw_ptr + i12)
    twi = tl.load(tw_ptr + N1 * N2 + i12)
    return f1r, f1i, f2r, f2i, twr, twi


# ---------------------------------------------------------------------------------------------------------------
# The half-length real-FFT trick on an (N1, N2) tile of M = N/2 points (module docstring).
# ---------------------------------------------------------------------------------------------------------------


@triton.jit
def _reversal(N1: tl.constexpr, N2: tl.constexpr):
    """Gather indices of f → −f (mod M) in the permuted order f = f1 + N1·f2: rows first, then columns."""
    a = tl.arange(0, N1)[:, None]
    b = tl.arange(0, N2)[None, :]
    i0 = (N1 - a) % N1 + b * 0  # (N1, N2): row f1 → −f1 mod N1
    i1 = tl.where(a == 0, (N2 - b) % N2, N2 - 1 - b)  # column f2 → −f2 − (f1 ≠ 0) mod N2
    return i0, i1


@triton.jit
def _half_fwd(xe, xo, f1r, f1i, f2r, f2i, twr, twi, hwr, hwi, i0, i1, DOT: tl.constexpr, PREC: tl.constexpr,
              USE_DOT: tl.constexpr):
    """N-point spectrum of the real row with even samples xe and odd samples xo ((N1, N2) tiles, fp32): X at the
    permuted frequencies f and f + M, as (lo_r, lo_i, hi_r, hi_i) fp32 tiles, scaled by 1/√M."""
    zr, zi = _monarch_fwd(xe, xo, f1r, f1i, f2r, f2i, twr, twi, DOT, PREC, USE_DOT)  # Z = DFT_M(xe + i·xo)/√M
    wr = tl.gather(tl.gather(zr, i0, 0), i1, 1)  # W = Z[−f]
    wi = tl.gather(tl.gather(zi, i0, 0), i1, 1)
    er = (zr + wr) * 0.5  # E = (Z + conj W)/2: spectrum of the even samples
    ei = (zi - wi) * 0.5
    o_r = (zi + wi) * 0.5  # O = (Z − conj W)/(2i): spectrum of the odd samples
    o_i = (wr - zr) * 0.5
    tr = hwr * o_r - hwi * o_i  # ω^f · O
    ti = hwr * o_i + hwi * o_r
    return er + tr, ei + ti, er - tr, ei - ti


@triton.jit
def _half_adj(ylr, yli, yhr, yhi, f1r, f1i, f2r, f2i, twr, twi, hwr, hwi, DOT: tl.constexpr, PREC: tl.constexpr,
              USE_DOT: tl.constexpr):
    """Inverse of `_half_fwd` for a Hermitian spectrum (Y_lo at f, Y_hi at f + M): (y even, y odd) fp32 tiles."""
    er = (ylr + yhr) * 0.5  # E' = (Y_lo + Y_hi)/2
    ei = (yli + yhi) * 0.5
    dr = (ylr - yhr) * 0.5
    di = (yli - yhi) * 0.5
    o_r = dr * hwr + di * hwi  # O' = conj(ω^f)·(Y_lo − Y_hi)/2
    o_i = di * hwr - dr * hwi
    return _monarch_adj(er - o_i, ei + o_r, f1r, f1i, f2r, f2i, twr, twi, DOT, PREC, USE_DOT)  # E' + i·O'


@triton.jit
def _load_half(x_ptr, row, m, L, valid):
    """Even and odd samples x[2m], x[2m+1] of one row (fp32 (N1, N2) tiles; zero beyond L and for invalid rows)."""
    xe = tl.load(x_ptr + row + 2 * m, mask=(2 * m < L) & valid, other=0.0).to(tl.float32)
    xo = tl.load(x_ptr + row + 2 * m + 1, mask=(2 * m + 1 < L) & valid, other=0.0).to(tl.float32)
    return xe, xo


@triton.jit
def _store_half(x_ptr, ye, yo, row, m, L, valid):
    """Store the even and odd samples of one row, the first L entries only."""
    tl.store(x_ptr + row + 2 * m, _to_out(ye, x_ptr), mask=(2 * m < L) & valid)
    tl.store(x_ptr + row + 2 * m + 1, _to_out(yo, x_ptr), mask=(2 * m + 1 < L) & valid)


@triton.jit
def _load_k_half(k_f_ptr, h, m, N: tl.constexpr, NORM: tl.constexpr):
    """K at f and f + M from k_f (H, 2, N) (re plane: lo then hi; im plane likewise), scaled to max|K| < 1 when NORM;
    returns the four tiles and the factor that undoes the scaling."""
    M: tl.constexpr = N // 2
    base = h.to(tl.int64) * 2 * N
    klr = tl.load(k_f_ptr + base + m)
    kli = tl.load(k_f_ptr + base + N + m)
    khr = tl.load(k_f_ptr + base + M + m)
    khi = tl.load(k_f_ptr + base + N + M + m)
    inv = 1.0
    if NORM:
        s, inv = _pow2_scale(tl.maximum(_absmax(klr, kli), _absmax(khr, khi)))
        klr, kli, khr, khi = klr * s, kli * s, khr * s, khi * s
    return klr, kli, khr, khi, inv


# ---------------------------------------------------------------------------------------------------------------
# Fixed-FFT kernels. Grid: one program per (channel h, chunk of batch rows), flattened: pid = h·n_chunks + chunk.
# (N1, N2) = half_sizes(N). The forward kernel also runs the backward of u (x = dy, conj K); dk has its own kernel.
# ---------------------------------------------------------------------------------------------------------------


@triton.jit
def _gate_and_scale(xe, xo, gate_ptr, row, m, L, valid, GATED: tl.constexpr, NORM: tl.constexpr):
    """[gate ⊙] x (even/odd fp32 tiles of one row) times a power of two s with max|·| ∈ [1/2, 1) when NORM; and 1/s."""
    if GATED:
        ge, go = _load_half(gate_ptr, row, m, L, valid)
        xe, xo = xe * ge, xo * go
    return _scale_pair(xe, xo, NORM)


@triton.jit
def _load_scaled_half(x_ptr, gate_ptr, row, m, L, valid, GATED: tl.constexpr, NORM: tl.constexpr):
    """`_gate_and_scale` of one row loaded from x_ptr."""
    xe, xo = _load_half(x_ptr, row, m, L, valid)
    return _gate_and_scale(xe, xo, gate_ptr, row, m, L, valid, GATED, NORM)


@triton.jit
def _store_gated_half(x_ptr, gate_ptr, ye, yo, row, m, L, valid, GATED: tl.constexpr):
    """Store [gate ⊙] y (even/odd fp32 tiles) to one row, the product in fp32 and rounded once."""
    if GATED:
        ge, go = _load_half(gate_ptr, row, m, L, valid)
        ye, yo = ye * ge, yo * go
    _store_half(x_ptr, ye, yo, row, m, L, valid)


@triton.jit
def flash_butterfly_fwd_kernel(
    # pointers
    x_ptr, gate_in_ptr, y_ptr, gate_out_ptr, out2_ptr, gate2_ptr, w_ptr, dgate_ptr, k_f_ptr, dft1_ptr, dft2_ptr,
    tw_ptr, hw_ptr,
    # sizes
    B, H, L, n_chunks, rows_per_prog,
    # meta-parameters
    N1: tl.constexpr, N2: tl.constexpr, DOT_FP32: tl.constexpr, PREC: tl.constexpr, NORM: tl.constexpr,
    USE_DOT: tl.constexpr, GATE_IN: tl.constexpr, CONJ_K: tl.constexpr, HAS_Y: tl.constexpr,
    GATE_OUT: tl.constexpr, HAS_OUT2: tl.constexpr, GATE2: tl.constexpr, HAS_DGATE: tl.constexpr,
    ROWS: tl.constexpr = 1, EARLY_LOADS: tl.constexpr = False,
):
    """c = first L of circular_N(pad([gate_in ⊙] x), k) row by row (the correlation with k when CONJ_K), then
    y = [gate_out ⊙] c (HAS_Y) and out2 = [gate2 ⊙] c (HAS_OUT2); dgate = x ⊙ w (HAS_DGATE: w read, no transform).
    All (B, H, L) contiguous in x's dtype. Forward: x = u, gate_in = pre, y, gate_out = post, out2 = w (saved when
    postgate needs a gradient). Backward of u: x = dy, gate_in = post, CONJ_K, y = du, gate_out = pre, out2 = dpre,
    gate2 = u, dgate = dpost = dy ⊙ w. Row loop (kernels.launch.loop_opts): ROWS rows unrolled per iteration;
    EARLY_LOADS: the output gates loaded with the input at the top of the row, not before the store."""
    M: tl.constexpr = N1 * N2
    CONV: tl.constexpr = HAS_Y or HAS_OUT2  # the transform runs only for an output that needs it
    DOT = tl.float32 if DOT_FP32 else x_ptr.dtype.element_ty  # tl.dot operand dtype (constexpr)
    pid = tl.program_id(0).to(tl.int64)
    h = pid // n_chunks
    chunk = pid % n_chunks
    m = tl.arange(0, N1)[:, None] * N2 + tl.arange(0, N2)[None, :]  # (N1, N2): time m = n1·N2+n2 / freq slot
    f1r, f1i, f2r, f2i, twr, twi = _load_plan(dft1_ptr, dft2_ptr, tw_ptr, N1, N2, DOT)
    hwr = tl.load(hw_ptr + m)  # ω^f, fp32 (N1, N2)
    hwi = tl.load(hw_ptr + M + m)
    i0, i1 = _reversal(N1, N2)
    klr, kli, khr, khi, inv_k = _load_k_half(k_f_ptr, h, m, 2 * M, NORM)
    if CONJ_K:
        kli, khi = -kli, -khi  # conj(K): X ⊙ conj(K) is the spectrum of the correlation with k
    for r0 in range(0, rows_per_prog, ROWS):
        for j in tl.static_range(ROWS):  # ROWS independent rows per iteration
            r = r0 + j
            b = chunk * rows_per_prog + r
            valid = (b < B) & (r < rows_per_prog)
            row = _row_start(b, h, H, L)
            xe, xo = _load_half(x_ptr, row, m, L, valid)
            if HAS_DGATE:  # dpost = dy ⊙ w, elementwise, from the dy just loaded
                _store_gated_half(dgate_ptr, w_ptr, xe, xo, row, m, L, valid, True)
            if CONV:
                if EARLY_LOADS:  # every load of the row issued here, before the transforms
                    if GATE_OUT and HAS_Y:
                        qe, qo = _load_half(gate_out_ptr, row, m, L, valid)
                    if GATE2 and HAS_OUT2:
                        se, so = _load_half(gate2_ptr, row, m, L, valid)
                xe, xo, inv_x = _gate_and_scale(xe, xo, gate_in_ptr, row, m, L, valid, GATE_IN, NORM)
                xlr, xli, xhr, xhi = _half_fwd(xe, xo, f1r, f1i, f2r, f2i, twr, twi, hwr, hwi, i0, i1, DOT, PREC,
                                               USE_DOT)
                ylr = xlr * klr - xli * kli  # X ⊙ K, both halves
                yli = xlr * kli + xli * klr
                yhr = xhr * khr - xhi * khi
                yhi = xhr * khi + xhi * khr
                ye, yo = _half_adj(ylr, yli, yhr, yhi, f1r, f1i, f2r, f2i, twr, twi, hwr, hwi, DOT, PREC, USE_DOT)
                scale = inv_x * inv_k
                ye, yo = ye * scale, yo * scale  # c, fp32
                if EARLY_LOADS:
                    if HAS_Y:
                        oe, oo = ye, yo
                        if GATE_OUT:
                            oe, oo = ye * qe, yo * qo
                        _store_half(y_ptr, oe, oo, row, m, L, valid)
                    if HAS_OUT2:
                        oe, oo = ye, yo
                        if GATE2:
                            oe, oo = ye * se, yo * so
                        _store_half(out2_ptr, oe, oo, row, m, L, valid)
                else:
                    if HAS_Y:
                        _store_gated_half(y_ptr, gate_out_ptr, ye, yo, row, m, L, valid, GATE_OUT)  # y = post ⊙ c
                    if HAS_OUT2:
                        _store_gated_half(out2_ptr, gate2_ptr, ye, yo, row, m, L, valid, GATE2)  # w; dpre = u ⊙ c


@triton.jit
def flash_butterfly_dk_kernel(
    # pointers
    u_ptr, dy_ptr, pre_ptr, post_ptr, dk_ptr, dft1_ptr, dft2_ptr, tw_ptr, hw_ptr,
    # sizes
    B, H, L, Lk, n_chunks, rows_per_prog, sqrt_M,
    # meta-parameters
    N1: tl.constexpr, N2: tl.constexpr, DOT_FP32: tl.constexpr, PREC: tl.constexpr, GATED: tl.constexpr,
    NORM: tl.constexpr, USE_DOT: tl.constexpr,
):
    """dk_partial (n_chunks, H, Lk) fp32 = Σ_{b in chunk} corr(g_b, v_b), g = [post ⊙] dy, v = [pre ⊙] u: two
    forward transforms per row, P += conj(X_v) ⊙ X_g in fp32, one fp32 (ieee) inverse per program; no K held."""
    M: tl.constexpr = N1 * N2
    DOT = tl.float32 if DOT_FP32 else u_ptr.dtype.element_ty  # tl.dot operand dtype (constexpr)
    pid = tl.program_id(0).to(tl.int64)
    h = pid // n_chunks
    chunk = pid % n_chunks
    m = tl.arange(0, N1)[:, None] * N2 + tl.arange(0, N2)[None, :]  # (N1, N2)
    f1r, f1i, f2r, f2i, twr, twi = _load_plan(dft1_ptr, dft2_ptr, tw_ptr, N1, N2, DOT)
    hwr = tl.load(hw_ptr + m)
    hwi = tl.load(hw_ptr + M + m)
    i0, i1 = _reversal(N1, N2)
    plr = tl.zeros((N1, N2), dtype=tl.float32)  # P = Σ conj(X_v) ⊙ X_g over the chunk's rows, both halves
    pli = tl.zeros((N1, N2), dtype=tl.float32)
    phr = tl.zeros((N1, N2), dtype=tl.float32)
    phi = tl.zeros((N1, N2), dtype=tl.float32)
    for r in range(0, rows_per_prog):
        b = chunk * rows_per_prog + r
        valid = b < B
        row = _row_start(b, h, H, L)
        ge, go, inv_g = _load_scaled_half(dy_ptr, post_ptr, row, m, L, valid, GATED, NORM)  # g = post ⊙ dy
        glr, gli, ghr, ghi = _half_fwd(ge, go, f1r, f1i, f2r, f2i, twr, twi, hwr, hwi, i0, i1, DOT, PREC, USE_DOT)
        ve, vo, inv_v = _load_scaled_half(u_ptr, pre_ptr, row, m, L, valid, GATED, NORM)  # v = pre ⊙ u
        vlr, vli, vhr, vhi = _half_fwd(ve, vo, f1r, f1i, f2r, f2i, twr, twi, hwr, hwi, i0, i1, DOT, PREC, USE_DOT)
        c = inv_v * inv_g
        plr += (vlr * glr + vli * gli) * c  # conj(X_v) ⊙ X_g
        pli += (vlr * gli - vli * glr) * c
        phr += (vhr * ghr + vhi * ghi) * c
        phi += (vhr * ghi - vhi * ghr) * c
    # one inverse for the whole chunk, fp32 operands (ieee): P sums many products
    g1r, g1i, g2r, g2i, gtr, gti = _load_plan(dft1_ptr, dft2_ptr, tw_ptr, N1, N2, tl.float32)
    ke, ko = _half_adj(plr, pli, phr, phi, g1r, g1i, g2r, g2i, gtr, gti, hwr, hwi, tl.float32, "ieee", USE_DOT)
    row = _row_start(chunk, h, H, Lk)
    tl.store(dk_ptr + row + 2 * m, ke * sqrt_M, mask=2 * m < Lk)
    tl.store(dk_ptr + row + 2 * m + 1, ko * sqrt_M, mask=2 * m + 1 < Lk)


# ---------------------------------------------------------------------------------------------------------------
# Learned-forward kernels: u's forward transform uses learned blocks A1 (N1, N1), A2 (N2, N2) at blk*_ptr +
# h·blk*_stride (stride 0: shared by all channels) on the N-point split (N1, N2) = default_sizes(N); k's spectrum
# and the inverse stay exact. y = Re(F^{-1}(K ⊙ A(u))) row by row: each row is a real (N1, N2) tile (the first dot
# of each pass is half price). Grid: one program per (channel h, chunk of rows).
# ---------------------------------------------------------------------------------------------------------------


@triton.jit
def _load_row(x_ptr, row, n, L, valid):
    """One row as a real (N1, N2) tile in fp32 (zero beyond L and for invalid rows)."""
    return tl.load(x_ptr + row + n, mask=(n < L) & valid, other=0.0).to(tl.float32)


@triton.jit
def _store_row(x_ptr, y, row, n, L, valid):
    """Store the first L entries of a real (N1, N2) tile to one row."""
    tl.store(x_ptr + row + n, _to_out(y, x_ptr), mask=(n < L) & valid)


@triton.jit
def _scale_row(x, NORM: tl.constexpr):
    """(x·s, 1/s) with s a power of two making max|x·s| ∈ [1/2, 1) when NORM, else (x, 1)."""
    inv = 1.0
    if NORM:
        s, inv = _pow2_scale(tl.max(tl.abs(x)))
        x = x * s
    return x, inv


@triton.jit
def _load_block(ptr, M: tl.constexpr, DOT: tl.constexpr, TRANS: tl.constexpr):
    """One complex (M, M) block from its (2, M, M) re/im table in the dot dtype; TRANS=True gives its transpose."""
    r = tl.arange(0, M)
    if TRANS:
        idx = r[None, :] * M + r[:, None]  # (M, M): element [i, j] = block[j, i]
    else:
        idx = r[:, None] * M + r[None, :]  # (M, M)
    return tl.load(ptr + idx).to(DOT), tl.load(ptr + M * M + idx).to(DOT)


@triton.jit
def _real_fwd(x, a1r, a1i, a2r, a2i, twr, twi, DOT: tl.constexpr, PREC: tl.constexpr):
    """Forward Monarch pass of a real tile: C = (A1 @ x) ⊙ tw, Z = C @ A2 (2 + 4 real dots); returns C and Z."""
    xd = x.to(DOT)
    br = tl.dot(a1r, xd, input_precision=PREC, out_dtype=tl.float32)  # (N1, N2)
    bi = tl.dot(a1i, xd, input_precision=PREC, out_dtype=tl.float32)
    cr = br * twr - bi * twi
    ci = br * twi + bi * twr
    zr, zi = _cdot(cr.to(DOT), ci.to(DOT), a2r, a2i, PREC, True)  # (N1, N2)
    return cr, ci, zr, zi


@triton.jit
def _real_adj(xr, xi, f1r, f1i, f2r, f2i, twr, twi, DOT: tl.constexpr, PREC: tl.constexpr):
    """Re of `_monarch_adj` (fixed unitary inverse pass): the last dot keeps only the real part (4 + 2 real dots)."""
    er, ei = _cdot_conj_rhs(xr.to(DOT), xi.to(DOT), f2r, f2i, PREC, True)  # (N1, N2)
    cr = er * twr + ei * twi  # ⊙ conj(tw)
    ci = ei * twr - er * twi
    y = tl.dot(f1r, cr.to(DOT), input_precision=PREC, out_dtype=tl.float32)  # Re(conj(F1) @ C)
    y += tl.dot(f1i, ci.to(DOT), input_precision=PREC, out_dtype=tl.float32)
    return y


@triton.jit
def _load_k_full(k_f_ptr, h, n, N: tl.constexpr, NORM: tl.constexpr):
    """K = k_f[h] (re, im (N1, N2) tiles in the N-point permuted order) scaled to max|K| < 1 when NORM, and 1/scale."""
    base = h.to(tl.int64) * 2 * N
    return _scale_pair(tl.load(k_f_ptr + base + n), tl.load(k_f_ptr + base + N + n), NORM)


@triton.jit
def learned_fwd_kernel(
    # pointers
    u_ptr, y_ptr, pre_ptr, post_ptr, k_f_ptr, dft1_ptr, dft2_ptr, tw_ptr, blk1_ptr, blk2_ptr,
    # sizes
    B, H, L, n_chunks, rows_per_prog,
    # strides
    blk1_stride, blk2_stride,
    # meta-parameters
    N1: tl.constexpr, N2: tl.constexpr, DOT_FP32: tl.constexpr, PREC: tl.constexpr, GATED: tl.constexpr,
    NORM: tl.constexpr,
):
    """y (B, H, L) = [post ⊙] Re(F^{-1}(K ⊙ A([pre ⊙] u)))[:L] row by row; A = learned Monarch pass."""
    N: tl.constexpr = N1 * N2
    DOT = tl.float32 if DOT_FP32 else u_ptr.dtype.element_ty  # tl.dot operand dtype (constexpr)
    pid = tl.program_id(0).to(tl.int64)
    h = pid // n_chunks
    chunk = pid % n_chunks
    n = tl.arange(0, N1)[:, None] * N2 + tl.arange(0, N2)[None, :]  # (N1, N2)
    f1r, f1i, f2r, f2i, twr, twi = _load_plan(dft1_ptr, dft2_ptr, tw_ptr, N1, N2, DOT)  # fixed: the inverse
    a1r, a1i = _load_block(blk1_ptr + h * blk1_stride, N1, DOT, False)  # learned A1, A2
    a2r, a2i = _load_block(blk2_ptr + h * blk2_stride, N2, DOT, False)
    Kr, Ki, inv_k = _load_k_full(k_f_ptr, h, n, N, NORM)
    for r in range(0, rows_per_prog):
        b = chunk * rows_per_prog + r
        valid = b < B
        row = _row_start(b, h, H, L)
        v = _load_row(u_ptr, row, n, L, valid)
        if GATED:
            v = v * _load_row(pre_ptr, row, n, L, valid)
        v, inv_v = _scale_row(v, NORM)
        _, _, zr, zi = _real_fwd(v, a1r, a1i, a2r, a2i, twr, twi, DOT, PREC)
        yr = zr * Kr - zi * Ki  # Z ⊙ K
        yi = zr * Ki + zi * Kr
        y = _real_adj(yr, yi, f1r, f1i, f2r, f2i, twr, twi, DOT, PREC) * (inv_v * inv_k)
        if GATED:
            y = y * _load_row(post_ptr, row, n, L, valid)
        _store_row(y_ptr, y, row, n, L, valid)


@triton.jit
def learned_bwd_kernel(
    # pointers
    u_ptr, dy_ptr, pre_ptr, post_ptr, du_ptr, dpre_ptr, dpost_ptr, dk_ptr, dblk1_ptr, dblk2_ptr,
    k_f_ptr, dft1_ptr, dft2_ptr, tw_ptr, blk1_ptr, blk2_ptr,
    # sizes
    B, H, L, Lk, n_chunks, rows_per_prog, sqrt_N,
    # strides
    blk1_stride, blk2_stride,
    # meta-parameters
    N1: tl.constexpr, N2: tl.constexpr, DOT_FP32: tl.constexpr, PREC: tl.constexpr, GATED: tl.constexpr,
    COMPUTE_DU: tl.constexpr, COMPUTE_DK: tl.constexpr, COMPUTE_DPRE: tl.constexpr, COMPUTE_DPOST: tl.constexpr,
    COMPUTE_DBLK: tl.constexpr, NORM: tl.constexpr,
):
    """du, dpre, dpost (B, H, L); dk_partial (n_chunks, H, Lk), dblk1/2_partial (n_chunks, H, 2, M, M) fp32."""
    N: tl.constexpr = N1 * N2
    DOT = tl.float32 if DOT_FP32 else u_ptr.dtype.element_ty  # tl.dot operand dtype (constexpr)
    NEED_DV: tl.constexpr = COMPUTE_DU or COMPUTE_DPRE or COMPUTE_DBLK  # gradient of v = pre ⊙ u
    NEED_ZV: tl.constexpr = COMPUTE_DK or COMPUTE_DPOST or COMPUTE_DBLK  # v's spectrum, recomputed
    pid = tl.program_id(0).to(tl.int64)
    h = pid // n_chunks
    chunk = pid % n_chunks
    n = tl.arange(0, N1)[:, None] * N2 + tl.arange(0, N2)[None, :]  # (N1, N2)
    f1r, f1i, f2r, f2i, twr, twi = _load_plan(dft1_ptr, dft2_ptr, tw_ptr, N1, N2, DOT)
    a1r, a1i = _load_block(blk1_ptr + h * blk1_stride, N1, DOT, False)  # A1
    a2r, a2i = _load_block(blk2_ptr + h * blk2_stride, N2, DOT, False)  # A2
    t1r, t1i = _load_block(blk1_ptr + h * blk1_stride, N1, DOT, True)  # A1^T (conjugated inside the dots)
    t2r, t2i = _load_block(blk2_ptr + h * blk2_stride, N2, DOT, True)  # A2^T
    Kr, Ki, inv_k = _load_k_full(k_f_ptr, h, n, N, NORM)
    Pr = tl.zeros((N1, N2), dtype=tl.float32)  # Σ conj(Zv) ⊙ Zg → dk
    Pi = tl.zeros((N1, N2), dtype=tl.float32)
    G1r = tl.zeros((N1, N1), dtype=tl.float32)  # Σ gB @ v^T → dA1
    G1i = tl.zeros((N1, N1), dtype=tl.float32)
    G2r = tl.zeros((N2, N2), dtype=tl.float32)  # Σ C^H @ gZ → dA2
    G2i = tl.zeros((N2, N2), dtype=tl.float32)
    for r in range(0, rows_per_prog):
        b = chunk * rows_per_prog + r
        valid = b < B
        row = _row_start(b, h, H, L)
        dy = _load_row(dy_ptr, row, n, L, valid)
        g = dy
        if GATED:
            g = g * _load_row(post_ptr, row, n, L, valid)  # g = post ⊙ dy
        g, inv_g = _scale_row(g, NORM)
        _, _, gr, gi = _real_fwd(g, f1r, f1i, f2r, f2i, twr, twi, DOT, PREC)  # Zg = F g: gradient of Y = Z ⊙ K
        u = _load_row(u_ptr, row, n, L, valid)  # (dead loads are removed when no output needs them)
        v = u
        pre = u
        if GATED:
            pre = _load_row(pre_ptr, row, n, L, valid)
            v = u * pre  # v = pre ⊙ u
        v, inv_v = _scale_row(v, NORM)
        if NEED_DV:
            xr = gr * Kr + gi * Ki  # gZ = Zg ⊙ conj(K)
            xi = gi * Kr - gr * Ki
            er, ei = _cdot_conj_rhs(xr.to(DOT), xi.to(DOT), t2r, t2i, PREC, True)  # gZ @ A2^H   (N1, N2)
            br = er * twr + ei * twi  # gB = (gZ @ A2^H) ⊙ conj(tw)
            bi = ei * twr - er * twi
            dv = tl.dot(t1r, br.to(DOT), input_precision=PREC, out_dtype=tl.float32)  # Re(A1^H @ gB)
            dv += tl.dot(t1i, bi.to(DOT), input_precision=PREC, out_dtype=tl.float32)
            dv = dv * (inv_g * inv_k)
            if GATED:
                if COMPUTE_DU:
                    _store_row(du_ptr, dv * pre, row, n, L, valid)  # du = pre ⊙ dv
                if COMPUTE_DPRE:
                    _store_row(dpre_ptr, dv * u, row, n, L, valid)  # dpre = u ⊙ dv
            else:
                if COMPUTE_DU:
                    _store_row(du_ptr, dv, row, n, L, valid)
        if NEED_ZV:
            cr, ci, zr, zi = _real_fwd(v, a1r, a1i, a2r, a2i, twr, twi, DOT, PREC)  # C, Zv = C @ A2
            if COMPUTE_DK:
                c = inv_v * inv_g
                Pr += (zr * gr + zi * gi) * c  # conj(Zv) ⊙ Zg
                Pi += (zr * gi - zi * gr) * c
            if COMPUTE_DPOST:
                yr = zr * Kr - zi * Ki  # Zv ⊙ K
                yi = zr * Ki + zi * Kr
                c = _real_adj(yr, yi, f1r, f1i, f2r, f2i, twr, twi, DOT, PREC)  # conv, recomputed
                _store_row(dpost_ptr, c * dy * (inv_v * inv_k), row, n, L, valid)  # dpost = dy ⊙ conv
            if COMPUTE_DBLK:
                c = inv_v * inv_g * inv_k
                qr, qi = _cdot_conj_lhs(tl.trans(cr.to(DOT)), tl.trans(ci.to(DOT)), xr.to(DOT), xi.to(DOT),
                                        PREC, True)  # C^H @ gZ   (N2, N1)·(N1, N2)
                G2r += qr * c
                G2i += qi * c
                vt = tl.trans(v.to(DOT))  # (N2, N1)
                G1r += tl.dot(br.to(DOT), vt, input_precision=PREC, out_dtype=tl.float32) * c  # gB @ v^T
                G1i += tl.dot(bi.to(DOT), vt, input_precision=PREC, out_dtype=tl.float32) * c
    if COMPUTE_DK:  # dk_partial[chunk, h] = √N · Re(adj(P))[:Lk], fp32 operands (ieee): P sums many products
        g1r, g1i, g2r, g2i, gtr, gti = _load_plan(dft1_ptr, dft2_ptr, tw_ptr, N1, N2, tl.float32)
        dk = _real_adj(Pr, Pi, g1r, g1i, g2r, g2i, gtr, gti, tl.float32, "ieee")
        tl.store(dk_ptr + _row_start(chunk, h, H, Lk) + n, dk * sqrt_N, mask=n < Lk)
    if COMPUTE_DBLK:
        r1 = tl.arange(0, N1)
        r2 = tl.arange(0, N2)
        i11 = r1[:, None] * N1 + r1[None, :]  # (N1, N1)
        i22 = r2[:, None] * N2 + r2[None, :]  # (N2, N2)
        base1 = _row_start(chunk, h, H, 2 * N1 * N1)
        base2 = _row_start(chunk, h, H, 2 * N2 * N2)
        tl.store(dblk1_ptr + base1 + i11, G1r)
        tl.store(dblk1_ptr + base1 + N1 * N1 + i11, G1i)
        tl.store(dblk2_ptr + base2 + i22, G2r)
        tl.store(dblk2_ptr + base2 + N2 * N2 + i22, G2i)


# ---------------------------------------------------------------------------------------------------------------
# k's spectrum k_f in each kernel's layout, made on the GPU per call (the peer and the baselines recompute fft(k) on
# every call too): one Triton launch for the fixed fused kernel, torch.fft.rfft plus one gather launch for the others.
# ---------------------------------------------------------------------------------------------------------------


@triton.jit
def k_f_half_kernel(
    k_ptr, k_f_ptr, dft1_ptr, dft2_ptr, tw_ptr, hw_ptr, Lk, sqrt_M,
    N1: tl.constexpr, N2: tl.constexpr, USE_DOT: tl.constexpr,
):
    """k_f (H, 2, N) fp32 = the unscaled N-point FFT of k[h] (H, Lk) zero-padded, in the fixed kernel's layout
    (lconv.butterfly.k_f_half: re plane = k_f at the M = N/2 permuted slots f, then at f + M; im plane likewise):
    the forward half-length transform of the fused kernel with fp32 tables and fp32 ("ieee") products, ×√M.
    Grid: one program per channel h."""
    M: tl.constexpr = N1 * N2
    h = tl.program_id(0).to(tl.int64)
    m = tl.arange(0, N1)[:, None] * N2 + tl.arange(0, N2)[None, :]  # (N1, N2)
    f1r, f1i, f2r, f2i, twr, twi = _load_plan(dft1_ptr, dft2_ptr, tw_ptr, N1, N2, tl.float32)
    hwr = tl.load(hw_ptr + m)
    hwi = tl.load(hw_ptr + M + m)
    i0, i1 = _reversal(N1, N2)
    ke, ko = _load_half(k_ptr, h * Lk, m, Lk, True)
    lr, li, hr, hi = _half_fwd(ke, ko, f1r, f1i, f2r, f2i, twr, twi, hwr, hwi, i0, i1, tl.float32, "ieee", USE_DOT)
    base = h * 4 * M  # row h of (H, 2, N), N = 2M
    tl.store(k_f_ptr + base + m, lr * sqrt_M)
    tl.store(k_f_ptr + base + M + m, hr * sqrt_M)
    tl.store(k_f_ptr + base + 2 * M + m, li * sqrt_M)
    tl.store(k_f_ptr + base + 3 * M + m, hi * sqrt_M)


@triton.jit
def k_f_gather_kernel(x_ptr, k_f_ptr, src_ptr, S, N, BLOCK: tl.constexpr):
    """k_f (H, 2, S) fp32 from k's half spectrum x = view_as_real(rfft(k, n=N)) (H, N/2 + 1, 2): slot j holds the
    natural frequency f = src[j] ∈ [0, N), i.e. x[f] for f ≤ N/2 and conj(x[N − f]) above (Hermitian symmetry).
    Grid: (channel h, block of BLOCK slots)."""
    h = tl.program_id(0).to(tl.int64)
    j = tl.program_id(1) * BLOCK + tl.arange(0, BLOCK)
    mask = j < S
    f = tl.load(src_ptr + j, mask=mask, other=0)
    mirror = f > N // 2
    src = (h * (N // 2 + 1) + tl.where(mirror, N - f, f)) * 2
    re = tl.load(x_ptr + src, mask=mask, other=0.0)
    im = tl.load(x_ptr + src + 1, mask=mask, other=0.0)
    tl.store(k_f_ptr + h * 2 * S + j, re, mask=mask)
    tl.store(k_f_ptr + h * 2 * S + S + j, tl.where(mirror, -im, im), mask=mask)


def k_f_launch_opts(N: int) -> dict:
    """Launch settings of k_f_half_kernel (one program per channel, fp32 tiles): 4 warps to N = 1024, 8 above."""
    return {"num_warps": 4 if N <= 1024 else 8, "num_stages": 1}


def k_f_fused(k: torch.Tensor, N: int) -> torch.Tensor:
    """k (H, Lk) fp32 → k_f (H, 2, N) fp32 for the fixed fused kernel by one Triton launch (no PyTorch op but the
    output's allocation); equals kernels.launch.k_f_planes (the PyTorch reference) to fp32 rounding."""
    H, Lk = k.shape
    N1, N2 = half_sizes(N)
    plan = get_plan(N, k.device)
    k_f = torch.empty(H, 2, N, device=k.device, dtype=torch.float32)  # (H, 2, N)
    launch(k_f_half_kernel, (H,), (k, k_f, plan["dft1"], plan["dft2"], plan["tw"], plan["hw"], Lk,
                                   math.sqrt(N1 * N2)),
           dict(N1=N1, N2=N2, USE_DOT=min(N1, N2) >= 16, **k_f_launch_opts(N)), N, "k_f")
    return k_f


K_F_BLOCK = 1024  # slots per program of k_f_gather_kernel


def k_f_gathered(k: torch.Tensor, N: int, src: torch.Tensor) -> torch.Tensor:
    """k (H, Lk) fp32 → k_f (H, 2, S) fp32 with slot j = k's unscaled N-point FFT at natural frequency src[j]
    (src (S,) int32 on k's device, from the plan): torch.fft.rfft (cuFFT) plus one Triton gather launch, which does
    the Hermitian fill, the permutation and the re/im split in one pass. The learned and three-pass layouts."""
    H, S = k.shape[0], src.numel()
    x = torch.view_as_real(torch.fft.rfft(k, n=N))  # (H, N/2 + 1, 2) fp32
    k_f = torch.empty(H, 2, S, device=k.device, dtype=torch.float32)  # (H, 2, S)
    launch(k_f_gather_kernel, (H, -(-S // K_F_BLOCK)), (x, k_f, src, S, N),
           dict(BLOCK=K_F_BLOCK, num_warps=4, num_stages=1), N, "k_f")
    return k_f


# ---------------------------------------------------------------------------------------------------------------
# Launchers (grids, plans, launch settings from kernels.launch) and the autograd Function
# ---------------------------------------------------------------------------------------------------------------


def conv_flags(gate_in=False, conj_k=False, y=True, gate_out=False, out2=False, gate2=False, dgate=False) -> dict:
    """Constexpr flags of flash_butterfly_fwd_kernel from which inputs and outputs a launch has."""
    return dict(GATE_IN=gate_in, CONJ_K=conj_k, HAS_Y=y, GATE_OUT=gate_out, HAS_OUT2=out2, GATE2=gate2,
                HAS_DGATE=dgate)


def _conv(x: torch.Tensor, k_f: torch.Tensor, N: int, y=None, gate_in=None, gate_out=None, out2=None, gate2=None,
          w=None, dgate=None, conj_k: bool = False, pass_: str = "fwd", what: str = "forward",
          rows_per_prog: int | None = None) -> None:
    """One launch of flash_butterfly_fwd_kernel over x (B, H, L): c = conv_N([gate_in ⊙] x, k) (correlation when
    conj_k) into y = [gate_out ⊙] c and out2 = [gate2 ⊙] c, and dgate = x ⊙ w; None: that input or output is absent
    (its pointer is never read or written). Settings: launch_opts(N, pass_)."""
    B, H, L = x.shape
    plan = get_plan(N, x.device)
    N1, N2 = half_sizes(N)
    n_chunks, rpp = chunks(B, H, x.device, rows_per_prog)
    ptrs = tuple(x if t is None else t for t in (gate_in, y, gate_out, out2, gate2, w, dgate))  # x: never touched
    flags = conv_flags(gate_in is not None, conj_k, y is not None, gate_out is not None, out2 is not None,
                       gate2 is not None, dgate is not None)
    launch(flash_butterfly_fwd_kernel, (H * n_chunks,),
           (x, *ptrs, k_f, plan["dft1"], plan["dft2"], plan["tw"], plan["hw"], B, H, L, n_chunks, rpp),
           dict(N1=N1, N2=N2, USE_DOT=min(N1, N2) >= 16, **flags, **dot_args(x.dtype),
                **launch_opts(N, pass_, dtype=x.dtype),
                **loop_opts(N, pass_)), N, what)


def _sum_chunks(partial: torch.Tensor) -> torch.Tensor:
    """Σ over the leading chunk axis of fp32 partial sums; with one chunk, its only entry (a view, no kernel)."""
    return partial[0] if partial.shape[0] == 1 else partial.sum(0)


def _fwd(u: torch.Tensor, k_f: torch.Tensor, N: int, pregate=None, postgate=None, blocks=None,
         rows_per_prog: int | None = None, save_w: bool = False):
    """(y, w): y (B, H, L) in u's dtype from the fused forward kernel (learned kernel when `blocks` are given; k_f
    from k_f_fused, or k_f_gathered for learned blocks); w = conv_N(pregate ⊙ u, k) before the postgate, in u's
    dtype, saved for dpostgate when save_w and gated (fixed FFT only), else None."""
    B, H, L = u.shape
    y = torch.empty_like(u)  # (B, H, L)
    if blocks is None:
        w = torch.empty_like(u) if (save_w and postgate is not None) else None  # (B, H, L)
        _conv(u, k_f, N, y=y, gate_in=pregate, gate_out=postgate, out2=w, rows_per_prog=rows_per_prog)
        return y, w
    plan = get_plan(N, u.device)
    gated = pregate is not None
    pre, post = (pregate, postgate) if gated else (u, u)  # unused pointers when not gated
    n_chunks, rpp = chunks(B, H, u.device, rows_per_prog)
    N1, N2 = default_sizes(N)
    (blk1, s1), (blk2, s2) = blocks
    launch(learned_fwd_kernel, (H * n_chunks,),
           (u, y, pre, post, k_f, plan["dft1_full"], plan["dft2_full"], plan["tw_full"], blk1, blk2,
            B, H, L, n_chunks, rpp, s1, s2),
           dict(N1=N1, N2=N2, GATED=gated, **dot_args(u.dtype), **launch_opts(N, "fwd", learned=True)), N,
           "forward (learned blocks)")
    return y, None


def _bwd(u: torch.Tensor, dy: torch.Tensor, k_f: torch.Tensor, N: int, Lk: int, pregate=None, postgate=None,
         blocks=None, need=(True, True, False, False, False, False), rows_per_prog: int | None = None, w=None):
    """Gradients, None where not needed.

    need = (du, dk, dpregate, dpostgate, dblock1, dblock2) → du, dpre, dpost (B, H, L) in u's dtype; dk (H, Lk) fp32;
    dblock1/2: (H, 2, M, M) fp32 gradients of the kernel's scaled block planes (one per channel, not yet summed).
    Fixed FFT: du and dpre from the forward kernel run on dy (conj K; with dpost = dy ⊙ w in the same pass), dk
    from flash_butterfly_dk_kernel; w = conv_N(pregate ⊙ u, k) as `_fwd` saved it (recomputed here when None).
    """
    B, H, L = u.shape
    need_du, need_dk, need_dpre, need_dpost, need_db1, need_db2 = need
    gated = pregate is not None
    need_dpre, need_dpost = gated and need_dpre, gated and need_dpost
    du = torch.empty_like(u) if need_du else None  # (B, H, L)
    dpre = torch.empty_like(u) if need_dpre else None
    dpost = torch.empty_like(u) if need_dpost else None
    n_chunks, rpp = chunks(B, H, u.device, rows_per_prog)
    f32 = dict(device=u.device, dtype=torch.float32)
    dk = torch.empty(n_chunks, H, Lk, **f32) if need_dk else None  # (C, H, Lk) partial sums
    db1 = db2 = None
    if blocks is None:
        N1, N2 = half_sizes(N)
        if need_dpost and w is None:  # not saved by the forward: w = conv(pre ⊙ u, k) once more
            w = torch.empty_like(u)
            _conv(u, k_f, N, y=w, gate_in=pregate, what="forward (w for dpostgate)", rows_per_prog=rows_per_prog)
        if need_du or need_dpre or need_dpost:  # dv = corr(post ⊙ dy, k); du = pre ⊙ dv, dpre = u ⊙ dv; dy ⊙ w
            _conv(dy, k_f, N, y=du, gate_in=postgate, gate_out=pregate, out2=dpre, gate2=u if need_dpre else None,
                  w=w if need_dpost else None, dgate=dpost, conj_k=True, pass_="du", what="backward (du)",
                  rows_per_prog=rows_per_prog)
        if need_dk:
            plan = get_plan(N, u.device)
            pre, post = (pregate, postgate) if gated else (u, dy)  # unused pointers when not gated
            launch(flash_butterfly_dk_kernel, (H * n_chunks,),
                   (u, dy, pre, post, dk, plan["dft1"], plan["dft2"], plan["tw"], plan["hw"], B, H, L, Lk, n_chunks,
                    rpp, math.sqrt(N1 * N2)),
                   dict(N1=N1, N2=N2, USE_DOT=min(N1, N2) >= 16, GATED=gated, **dot_args(u.dtype),
                        **launch_opts(N, "dk", dtype=u.dtype)), N, "backward (dk)")
    else:
        empty = u.new_empty(0)
        plan = get_plan(N, u.device)
        pre, post = (pregate, postgate) if gated else (u, u)
        N1, N2 = default_sizes(N)
        (blk1, s1), (blk2, s2) = blocks
        need_db = need_db1 or need_db2
        db1 = torch.empty(n_chunks, H, 2, N1, N1, **f32) if need_db else torch.empty(0, **f32)  # (C, H, 2, N1, N1)
        db2 = torch.empty(n_chunks, H, 2, N2, N2, **f32) if need_db else torch.empty(0, **f32)  # (C, H, 2, N2, N2)
        launch(learned_bwd_kernel, (H * n_chunks,),
               (u, dy, pre, post, empty if du is None else du, empty if dpre is None else dpre,
                empty if dpost is None else dpost, torch.empty(0, **f32) if dk is None else dk, db1, db2, k_f,
                plan["dft1_full"], plan["dft2_full"], plan["tw_full"], blk1, blk2, B, H, L, Lk, n_chunks, rpp,
                math.sqrt(N), s1, s2),
               dict(N1=N1, N2=N2, GATED=gated, COMPUTE_DU=need_du, COMPUTE_DK=need_dk, COMPUTE_DPRE=need_dpre,
                    COMPUTE_DPOST=need_dpost, COMPUTE_DBLK=need_db, **dot_args(u.dtype),
                    **launch_opts(N, "bwd", learned=True)), N, "backward (learned blocks)")
        db1 = _sum_chunks(db1) if need_db1 else None  # (H, 2, N1, N1)
        db2 = _sum_chunks(db2) if need_db2 else None
    return du, (_sum_chunks(dk) if need_dk else None), dpre, dpost, db1, db2  # dk (H, Lk)


def forward_only(u: torch.Tensor, k: torch.Tensor, N: int, pregate=None, postgate=None, dft1=None,
                 dft2=None) -> torch.Tensor:
    """y (B, H, L) without autograd bookkeeping (for calls that record no gradient): k_f by one launch (k_f_fused;
    rfft + gather for learned blocks), then the forward kernel. Inputs checked by the caller (kernels.conv)."""
    if dft1 is None and dft2 is None:
        return _fwd(u, k_f_fused(k, N), N, pregate, postgate)[0]
    N1, N2 = default_sizes(N)
    plan = get_plan(N, u.device)
    blocks = (block_planes(dft1, N1, plan["dft1_full"]), block_planes(dft2, N2, plan["dft2_full"]))
    return _fwd(u, k_f_gathered(k, N, plan["k_src_full"]), N, pregate, postgate, blocks)[0]


def _block_grad(g: torch.Tensor | None, dft: torch.Tensor | None, M: int):
    """Gradient of the unnormalised complex block from the kernel's plane gradients (H, 2, M, M) fp32."""
    if g is None or dft is None:
        return None
    if dft.dim() == 2:
        g = g.sum(0)  # shared block: sum over channels, (2, M, M)
    return (torch.complex(g[..., 0, :, :], g[..., 1, :, :]) / math.sqrt(M)).to(dft.dtype)  # (…, M, M)


class FlashButterflyFn(torch.autograd.Function):
    """Fused forward and backward kernels wired into autograd: y = [post ⊙] conv_N([pre ⊙] u, k), learned or fixed."""

    @staticmethod
    def forward(ctx, u, k, pregate, postgate, dft1, dft2, N):
        blocks = None
        if dft1 is not None or dft2 is not None:
            N1, N2 = default_sizes(N)
            plan = get_plan(N, u.device)
            blocks = (block_planes(dft1, N1, plan["dft1_full"]), block_planes(dft2, N2, plan["dft2_full"]))
        k_f = k_f_fused(k, N) if blocks is None else k_f_gathered(k, N, get_plan(N, u.device)["k_src_full"])
        save_w = blocks is None and postgate is not None and ctx.needs_input_grad[3]  # for dpostgate = dy ⊙ w
        y, w = _fwd(u, k_f, N, pregate, postgate, blocks, save_w=save_w)
        ctx.save_for_backward(u, k_f, pregate, postgate, dft1, dft2, w)
        ctx.blocks, ctx.N, ctx.Lk = blocks, N, k.shape[-1]
        return y

    @staticmethod
    def backward(ctx, dy):
        u, k_f, pregate, postgate, dft1, dft2, w = ctx.saved_tensors
        dy = dy.to(u.dtype).contiguous()  # (B, H, L)
        need = ctx.needs_input_grad[:6]
        du, dk, dpre, dpost, db1, db2 = _bwd(u, dy, k_f, ctx.N, ctx.Lk, pregate, postgate, ctx.blocks, need, w=w)
        N1, N2 = default_sizes(ctx.N)
        return du, dk, dpre, dpost, _block_grad(db1, dft1, N1), _block_grad(db2, dft2, N2), None


# ---------------------------------------------------------------------------------------------------------------
# The fixed-FFT path as torch.library operators, used inside torch.compile (kernels.conv): each is one opaque node of
# its graph (no graph break, no tracing into the launcher) and CUDA-graph capture sees plain kernel launches. Eager
# calls use FlashButterflyFn (the operator's Python dispatch costs ~45 vs ~13 µs per call, measured on this 2-core
# CPU with the launches stubbed out). Schemas are written out (this module postpones its annotations).
# ---------------------------------------------------------------------------------------------------------------

@torch.library.custom_op("lconv::flash_butterfly_fwd", mutates_args=(),
                         schema="(Tensor u, Tensor k, Tensor? pregate, Tensor? postgate, int N, bool save_w) -> "
                                "(Tensor, Tensor, Tensor)")
def flash_butterfly_op(u, k, pregate, postgate, N, save_w):
    """(y, k_f, w): y (B, H, L) in u's dtype by the fused forward kernel; k_f (H, 2, N) fp32, saved for the backward;
    w = conv_N(pregate ⊙ u, k) (B, H, L) in u's dtype when save_w and gated (the caller passes save_w = postgate
    needs a gradient: postgate.requires_grad and torch.is_grad_enabled()), else an empty tensor."""
    k_f = k_f_fused(k, N)  # (H, 2, N) fp32, once per call
    y, w = _fwd(u, k_f, N, pregate, postgate, save_w=save_w)
    return y, k_f, (u.new_empty(0) if w is None else w)


@flash_butterfly_op.register_fake
def _(u, k, pregate, postgate, N, save_w):
    w = torch.empty_like(u) if (save_w and postgate is not None) else u.new_empty(0)
    return torch.empty_like(u), k.new_empty((k.shape[0], 2, N), dtype=torch.float32), w


@torch.library.custom_op("lconv::flash_butterfly_bwd", mutates_args=(),
                         schema="(Tensor u, Tensor dy, Tensor k_f, Tensor? pregate, Tensor? postgate, Tensor? w, "
                                "int N, SymInt Lk, bool[] need) -> (Tensor, Tensor, Tensor, Tensor)")
def flash_butterfly_bwd_op(u, dy, k_f, pregate, postgate, w, N, Lk, need):
    """(du, dk, dpregate, dpostgate) by the du and dk kernels; an empty tensor where `need` (4 flags) says no. w: the
    forward's saved conv (None: recomputed if dpostgate is needed)."""
    grads = _bwd(u, dy, k_f, N, Lk, pregate, postgate, None, (*need, False, False), w=w)[:4]
    return tuple(u.new_empty(0) if g is None else g for g in grads)


@flash_butterfly_bwd_op.register_fake
def _(u, dy, k_f, pregate, postgate, w, N, Lk, need):
    gated = pregate is not None
    shapes = (u.shape, (k_f.shape[0], Lk), u.shape if gated else (0,), u.shape if gated else (0,))
    dtypes = (u.dtype, torch.float32, u.dtype, u.dtype)
    return tuple(u.new_empty(s if flag else (0,), dtype=d) for s, d, flag in zip(shapes, dtypes, need))


def _op_setup_context(ctx, inputs, output):
    u, k, pregate, postgate, N, save_w = inputs
    ctx.mark_non_differentiable(output[1], output[2])
    ctx.set_materialize_grads(False)  # no zero-filled gradients for k_f and w in every backward
    ctx.has_w = bool(save_w) and postgate is not None
    ctx.save_for_backward(u, output[1], pregate, postgate, output[2] if ctx.has_w else None)
    ctx.N, ctx.Lk = N, k.shape[-1]


def _op_backward(ctx, dy, _dk_f, _dw):
    u, k_f, pregate, postgate, w = ctx.saved_tensors
    need = [bool(f) for f in ctx.needs_input_grad[:4]]
    grads = flash_butterfly_bwd_op(u, dy.to(u.dtype).contiguous(), k_f, pregate, postgate, w, ctx.N, ctx.Lk, need)
    return (*(g if flag else None for g, flag in zip(grads, need)), None, None)


flash_butterfly_op.register_autograd(_op_backward, setup_context=_op_setup_context)


# Learned blocks the same way: the operator takes the blocks' fp32 planes (launch.learned_planes, traced outside it, so
# autograd carries the plane gradients back to the complex blocks); None = the fixed DFT block.

def _op_blocks(blk1, blk2, N: int, device) -> tuple:
    N1, N2 = default_sizes(N)
    plan = get_plan(N, device)
    return tuple((plan[name], 0) if b is None else (b, 2 * M * M if b.dim() == 4 else 0)
                 for b, M, name in ((blk1, N1, "dft1_full"), (blk2, N2, "dft2_full")))


@torch.library.custom_op("lconv::learned_butterfly_fwd", mutates_args=(),
                         schema="(Tensor u, Tensor k, Tensor? pregate, Tensor? postgate, Tensor? blk1, Tensor? blk2, "
                                "int N) -> (Tensor, Tensor)")
def learned_butterfly_op(u, k, pregate, postgate, blk1, blk2, N):
    """(y, k_f): y (B, H, L) in u's dtype by learned_fwd_kernel with blocks blk1 (2, N1, N1) or (H, 2, N1, N1) and
    blk2 likewise (fp32 planes of launch.learned_planes; None: the fixed DFT block); k_f (H, 2, N) fp32, saved."""
    k_f = k_f_gathered(k, N, get_plan(N, u.device)["k_src_full"])
    return _fwd(u, k_f, N, pregate, postgate, _op_blocks(blk1, blk2, N, u.device))[0], k_f


@learned_butterfly_op.register_fake
def _(u, k, pregate, postgate, blk1, blk2, N):
    return torch.empty_like(u), k.new_empty((k.shape[0], 2, N), dtype=torch.float32)


@torch.library.custom_op("lconv::learned_butterfly_bwd", mutates_args=(),
                         schema="(Tensor u, Tensor dy, Tensor k_f, Tensor? pregate, Tensor? postgate, Tensor? blk1, "
                                "Tensor? blk2, int N, SymInt Lk, bool[] need) -> (Tensor, Tensor, Tensor, Tensor, "
                                "Tensor, Tensor)")
def learned_butterfly_bwd_op(u, dy, k_f, pregate, postgate, blk1, blk2, N, Lk, need):
    """(du, dk, dpregate, dpostgate, dblk1, dblk2) by learned_bwd_kernel, each block gradient shaped like its block
    (a shared block's summed over channels); an empty tensor where `need` (6 flags) says no."""
    grads = list(_bwd(u, dy, k_f, N, Lk, pregate, postgate, _op_blocks(blk1, blk2, N, u.device), tuple(need)))
    for i, b in ((4, blk1), (5, blk2)):
        if grads[i] is not None and b is not None and b.dim() == 3:
            grads[i] = grads[i].sum(0)  # shared block: (H, 2, M, M) → (2, M, M)
    return tuple(u.new_empty(0) if g is None else g for g in grads)


@learned_butterfly_bwd_op.register_fake
def _(u, dy, k_f, pregate, postgate, blk1, blk2, N, Lk, need):
    gated = pregate is not None
    shapes = (u.shape, (k_f.shape[0], Lk), u.shape if gated else (0,), u.shape if gated else (0,),
              blk1.shape if blk1 is not None else (0,), blk2.shape if blk2 is not None else (0,))
    dtypes = (u.dtype, torch.float32, u.dtype, u.dtype, torch.float32, torch.float32)
    return tuple(u.new_empty(s if flag else (0,), dtype=d) for s, d, flag in zip(shapes, dtypes, need))


def _learned_setup_context(ctx, inputs, output):
    u, k, pregate, postgate, blk1, blk2, N = inputs
    ctx.mark_non_differentiable(output[1])
    ctx.set_materialize_grads(False)
    ctx.save_for_backward(u, output[1], pregate, postgate, blk1, blk2)
    ctx.N, ctx.Lk = N, k.shape[-1]


def _learned_backward(ctx, dy, _dk_f):
    u, k_f, pregate, postgate, blk1, blk2 = ctx.saved_tensors
    need = [bool(f) for f in ctx.needs_input_grad[:6]]
    need[4] = need[4] and blk1 is not None
    need[5] = need[5] and blk2 is not None
    grads = learned_butterfly_bwd_op(u, dy.to(u.dtype).contiguous(), k_f, pregate, postgate, blk1, blk2, ctx.N,
                                     ctx.Lk, need)
    return (*(g if flag else None for g, flag in zip(grads, need)), None)


learned_butterfly_op.register_autograd(_learned_backward, setup_context=_learned_setup_context)


def learned_butterfly_traced(u, k, N, pregate=None, postgate=None, dft1=None, dft2=None) -> torch.Tensor:
    """The learned-block path inside torch.compile: complex blocks → planes (traced), then the operator."""
    N1, N2 = default_sizes(N)
    blk1 = None if dft1 is None else learned_planes(dft1, N1)
    blk2 = None if dft2 is None else learned_planes(dft2, N2)
    return learned_butterfly_op(u, k, pregate, postgate, blk1, blk2, N)[0]
