r"""The three-pass FlashButterfly for FFT sizes beyond on-chip memory: N = 8192 … 2^20.

Provenance
----------
The paper (Fu, Epstein et al., ICML 2023, §4) describes the three-pass algorithm in one sentence: one Butterfly pass
over the input, many independent fused FFT convolutions small enough for SRAM, one Butterfly pass back. No code was
released. This is an independent Triton implementation of that description, written from the Cooley–Tukey identity
in `lconv/butterfly.py`; `lconv.butterfly.three_pass_reference` is its PyTorch reference (same factors, same order, same
scaling) and is checked against torch.fft in tests/test_three_pass.py. The fused inner convolution reuses the
@triton.jit helpers of kernels/flash_butterfly.py (`_monarch_fwd`, `_monarch_adj`, `_load_plan`, `_cdot*`). The file
reads like kernels/flash_butterfly.py: the @triton.jit kernels, then their launchers (`_pass1/2/3`, `_fwd`, `_bwd`),
the autograd Function (`ThreePassFn`, eager) and the torch.library operators (`lconv::three_pass_fwd`/`_bwd`, used
inside torch.compile); sizes, checks and tables come from kernels/launch.py, the public
`three_pass_conv` is in kernels/conv.py.

Motivation
----------
The fused kernel keeps a whole sequence on chip, which stops at N = 4096 (a 64×64 complex fp32 tile). Beyond that,
split N = N0·M with M ≤ 4096: one more Cooley–Tukey level across the M-strided rows turns the N-point FFT into N0
independent M-point FFTs, each of which the fused kernel can do on chip, convolution included.

Maths (n = n0·M + m in time, f = f0 + N0·g in frequency; F_K = K-point DFT, ω_N = exp(−2πi/N))
----------------------------------------------------------------------------------------------
    X[f0 + N0·g] = Σ_m ω_M^{m·g} · [ ω_N^{f0·m} · Σ_{n0} ω_{N0}^{f0·n0} · x[n0·M + m] ]
                 = FFT_M over m of row f0 of  C = (F_N0 @ x.reshape(N0, M)) ⊙ twiddle(N0, M).
For a real row x the DFT is Hermitian, and so is every stage: C[N0 − f0, m] = conj C[f0, m] (and likewise after
the inner convolutions), so only the outer rows f0 = 0 … N0/2 (R = N0/2 + 1 of them) are computed and stored; the
others are their conjugates. Each batch row is its own sequence (no packing of two rows: a NaN or a huge value in
one sample cannot reach another), zero-padded to N:
    pass 1 (outer Butterfly):  C[f0, m] = twiddle[f0, m] · Σ_{n0} F0[f0, n0] · x[n0·M + m],  f0 < R     F0 = F_N0/√N0
    pass 2 (R inner convs):    T[f0, :] = conj(twiddle[f0, :]) ⊙ adj_M( fwd_M(C[f0, :]) ⊙ k_f[f0·M : (f0+1)·M] )
                               fused, on chip (pass 3's twiddle applied here, before T is rounded and stored)
    pass 3 (outer pass back):  y[n0·M + m] = Re Σ_{f0 < N0} conj(F0[n0, f0]) · T[f0, m],
                               T[f0] = conj T[N0 − f0] for f0 ≥ R (read from row N0 − f0)
fwd_M / adj_M are the unitary two-factor Monarch passes of the fused kernel (M = M1·M2, default_sizes(M)); k_f is
the unscaled FFT of k in the permuted order of the sizes (N0, M1, M2) (lconv.butterfly.k_f_permuted): row f0 of the
outer pass gets its own complex spectrum segment. Only the R stored rows' segments are made, (H, 2, R·M) fp32, per
call by torch.fft.rfft plus one gather launch (`k_f_three_pass`: Hermitian fill, permutation, re/im split at once). Every factor is unitary, so pass 3 ∘ (⊙ k_f) ∘ pass 1 is exactly
the N-point circular convolution with k (the permutations cancel).

Split: M = min(4096, N/16), N0 = N/M ≥ 16, so the outer DFT is always a tl.dot (no elementwise radix-2…8 path):
8K = 16·512, 16K = 16·1K, 32K = 16·2K, 64K = 16·4K, 128K = 32·4K, 256K = 64·4K, 512K = 128·4K, 1M = 256·4K.
The outer DFT of size N0: for N0 ≤ 32 one dense complex matmul F0 @ tile per (N0, BM) column block (K-loop over
chunks of KB rows of F0); for N0 ≥ 64 (256K … 1M) factored as N0 = 16·Bf (kernels.launch.outer_blocks "A"): 16-point
DFTs over the high digit (one dot), the twiddle ω_N0^(ka·nb), Bf-point DFTs over the low digit (a dot at Bf = 16,
broadcast sums at Bf = 4, 8), with the digit orders folded into the load and store addresses, so pass 2 and k_f are
unchanged. At N0 = 256 that is 2·16 + 4·16 = 96 real multiply-adds per element in pass 1 instead of 2·N0 = 512, and
16×16 tables instead of a 512 KB F0 table read by every program (issue 20); one more rounding to the dot dtype
between the two factors (the errors at 256K–1M stay within the error rule, tests/test_three_pass.py).

Backward (g = postgate ⊙ dy, v = pregate ⊙ u, both zero-padded):
    dv = adj(fwd(g) ⊙ conj(k_f))                         (passes 1, 2, 3 on g)
    du = pregate ⊙ dv, dpregate = u ⊙ dv                  (fused in pass 3's store)
    dpostgate = dy ⊙ w, w = conv(v, k) saved by the forward (fused in pass 1's load of dy)
    dk = √N · Re(adj(Σ_rows conj(fwd(v)) ⊙ fwd(g)))[:Lk] (fwd(v) from pass 1 on u; the spectrum sum in pass 2,
         fp32, per chunk of rows; chunks summed, the spectrum completed by its symmetry and the (H, N) inverse FFT
         done by PyTorch: no batch dimension left)

Memory: intermediate buffers between the passes are complex planes of the R stored outer rows, (B, H, 2, R·M) in
u's dtype for fp16/bf16 (fp32 for fp32 inputs) = 2·(1 + 2/N0) bytes per input element in 16 bits (4·(1 + 2/N0) in
fp32; pass 2 works in place), plus their power-of-two factors in fp32: (B, H, M/BM) for pass 1's column blocks and
(B, H, R) for pass 2's rows (≤ 0.4 % of the buffer). Forward: one buffer (+ w (B, H, L) in u's dtype when postgate
needs a gradient). Backward: up to two buffers (g's and v's spectra) + (n_chunks, H, 2, R·M) fp32 for dk. All
offsets are int64 (`_row_start`): B·H·N may exceed 2^31.

Numerics of fp16/bf16 (as in the fused kernel; 16-bit intermediates since issue 20): pass 1 stores each (N0/2+1, BM)
block times a power of two that puts its largest entry in [1/2, 1) and keeps the factor; pass 2 folds the factors of
the blocks a row crosses back in (fp32), scales every inner row it loads, and its k_f segment, by powers of two to
max |·| ∈ [1/2, 1) before any rounding to the dot dtype, applies pass 3's conj(twiddle) in fp32 and stores the row
scaled the same way with its factor; pass 3 folds the row factors in and scales each chunk of KB outer rows to one
power of two for its dot; pass 1 scales each chunk of gated inputs. So every value is rounded to the 16-bit dtype
once between two products, where the fp32-intermediate version rounded it (as a dot operand): stored values are
what the next dot would have been fed, up to powers of two (exact, but where a row is 2^14 below its block's or
chunk's largest: its low bits are lost as in the old rounding relative to the chunk). Every stored or rounded value
is below 1 or at most 2√M (128), so no intermediate overflows for any finite input; the output is finite wherever
its exact value fits the dtype.

Caveats (honest)
----------------
- Tested on CPU through the Triton interpreter. The fp32-intermediate version before it was compiled on an H100
  (triton 3.6): per call it beat cuFFT's rfft convolution up to 128K (2.17× at 8K, 1.5× at 64K–128K, fp16) and was
  slower from 256K (0.4× at 1M), where the two outer passes over the fp32 intermediate dominated (results/ holds
  those timings); the 16-bit intermediates (20 → 12 bytes per element between the passes, est.) are untimed. Pass 2 uses the fused kernel's
  launch settings for M (kernels.launch.TUNING): going from 8 to 4 warps at M = 4096 took 16K from 5.2 to 2.8 ms. The
  outer passes have not been tuned. This version (16-bit buffers, factored outer DFT), compiled for sm_90a without
  a GPU (`python -m lconv.kernels.probe --N 8192 262144 1048576 --kinds pass1 pass2 pass3`, fp16, gated; regs /
  spill stores per thread / shared): 8K: pass 1 54 / 0 / 2 KB, pass 2 144 / 0 / 7 KB, pass 3 45 / 0 / 2 KB;
  256K: 61 / 0 / 8 KB, 255 / 492 B / 48 KB, 48 / 0 / 8 KB; 1M: 94 / 0 / 16 KB, 255 / 492 B / 48 KB, 88 / 0 /
  16 KB — every N fits the ~99 KB of consumer and inference GPUs; pass 2 at M = 4096 spills at the fused
  forward's 4 warps, as the fused forward does. Registers of the packed-pair version before it (for comparison),
  compiled the same way:
    fp16/bf16  pass 1: 50 regs (N0 = 16), 92 (N0 = 32), 86 (N0 = 64), 189 (N0 = 256), no spills, ≤ 32 KB shared;
               pass 3 (gate + second output): 122–210 regs, no spills;
               pass 2 (inner conv): M = 512: 80 regs, 1K: 211, 2K: 162, no spills; M = 4096: 255 regs and
               ~390 B spilled (the fused kernel's 64×64 tiles); pass 2 backward: M ≤ 2048 no spills, M = 4096
               ~800 B spilled, 53 KB shared.
    fp32 (input_precision="ieee", FMA dots): fine up to M = 512, but pass 2 spills heavily at M ≥ 1024 (340 B at
               1K, ~15 KB at 2K, ~86 KB at 4K) and passes 1/3 spill for N0 ≥ 32: correct but slow. "tf32x3" would
               cut pass 2's spills to ~4 KB at 4K (200 KB shared) but is untested numerically, so not used.
- The twiddle table (2, N0, M) fp32 (8 bytes per FFT point, 8 MB at 1M) is read by every pass-1 program and, a row
  segment per program, by pass 2 (pass 3 no longer reads it): from L2 in practice, but traffic the fused kernel
  does not have.
- fp16/bf16: the intermediate buffers are in the input dtype (with fp32 factors), and every tl.dot operand is
  rounded to the input dtype (tensor cores, after the scaling above); errors are a few ulps of the input dtype.
- The per-row design (this version) has not been timed on a GPU (the timings in results/ are of the packed-pair
  kernels): per row the outer passes do the same dot work as before (real operands, half the complex work per
  row), pass 2 does R/(N0/2) = 1 + 2/N0 times the inner convolutions, and the buffers grow by the same factor.
- fp32 inputs use input_precision="ieee" (no tensor cores). Under the interpreter bf16 dots run in fp32 (its bf16
  tl.dot is wrong) and bf16 stores are rounded to nearest by hand (it truncates).
- Pass 1 and pass 3 launch one program per (batch row, channel, column block); no software pipelining (num_stages=1).
"""
from __future__ import annotations

import torch

import triton
import triton.language as tl

from .flash_butterfly import (_absmax, _cdot, _cdot_conj_lhs, _load_block, _load_plan, _mm, _monarch_adj, _monarch_fwd,
                              _pow2_scale, _row_start, _scale_pair, _scale_row, _to_out,
                              k_f_gathered)
from lconv.butterfly import three_pass_sizes

from .launch import chunks, dot_args, get_plan, launch, launch_opts, outer_blocks

# ---------------------------------------------------------------------------------------------------------------
# Triton kernels. Complex values are separate re/im planes; buffers between the passes are (B, H, 2, R·M) in u's
# dtype (fp32 factors for 16 bits).
# ---------------------------------------------------------------------------------------------------------------


@triton.jit
def _load_outer_input(x_ptr, gate_ptr, w_ptr, dgate_ptr, row, n, mask, HAS_GATE: tl.constexpr,
                      HAS_DGATE: tl.constexpr):
    """gate ⊙ x at time offsets n of one row (fp32, zero where masked); stores dgate = x ⊙ w on the way when
    HAS_DGATE (the postgate gradient dy ⊙ w, on the raw dy, before the gate)."""
    x = tl.load(x_ptr + row + n, mask=mask, other=0.0).to(tl.float32)
    if HAS_DGATE:
        w = tl.load(w_ptr + row + n, mask=mask, other=0.0).to(tl.float32)
        tl.store(dgate_ptr + row + n, _to_out(x * w, dgate_ptr), mask=mask)
    if HAS_GATE:
        x *= tl.load(gate_ptr + row + n, mask=mask, other=0.0).to(tl.float32)
    return x


@triton.jit
def _outer_fwd_factored(x, dftA_ptr, dftB_ptr, twAB_ptr, A: tl.constexpr, Bf: tl.constexpr, BM: tl.constexpr,
                        DOT: tl.constexpr, PREC: tl.constexpr):
    """F0/√N0 over the rows of a real (A, Bf, BM) tile, row (na, nb) = time row n0 = na·Bf + nb, factored as
    N0 = A·Bf: A-point DFTs over na (one dot, x real: 2 real dots), the twiddle ω_N0^(ka·nb), Bf-point DFTs over nb
    (4 real dots; broadcast sums below 16). Returns re, im (Bf, A, BM) fp32, row (kb, ka) = frequency ka + A·kb.
    Real multiply-adds per element 2A + 4Bf (96 at N0 = 256) instead of 2·N0 (512), tables 2·(A² + Bf²) values."""
    ar, ai = _load_block(dftA_ptr, A, DOT, False)
    xd = tl.reshape(x, (A, Bf * BM)).to(DOT)
    br = tl.reshape(tl.dot(ar, xd, input_precision=PREC, out_dtype=tl.float32), (A, Bf, BM))
    bi = tl.reshape(tl.dot(ai, xd, input_precision=PREC, out_dtype=tl.float32), (A, Bf, BM))
    t = tl.arange(0, A)[:, None, None] * Bf + tl.arange(0, Bf)[None, :, None]  # (A, Bf, 1)
    twr = tl.load(twAB_ptr + t)
    twi = tl.load(twAB_ptr + A * Bf + t)
    cr = tl.reshape(tl.permute(br * twr - bi * twi, (1, 0, 2)), (Bf, A * BM)).to(DOT)  # rows nb
    ci = tl.reshape(tl.permute(br * twi + bi * twr, (1, 0, 2)), (Bf, A * BM)).to(DOT)
    gr, gi = _load_block(dftB_ptr, Bf, DOT, False)
    zr, zi = _cdot(gr, gi, cr, ci, PREC, Bf >= 16)  # (Bf, A·BM)
    return tl.reshape(zr, (Bf, A, BM)), tl.reshape(zi, (Bf, A, BM))


@triton.jit
def _outer_adj_factored(tr, ti, dftA_ptr, dftB_ptr, twAB_ptr, A: tl.constexpr, Bf: tl.constexpr, BM: tl.constexpr,
                        DOT: tl.constexpr, PREC: tl.constexpr):
    """Re(conj(F0)/√N0 @ T) over the rows of an (A, Bf, BM) tile, row (fa, fb) = frequency f0 = fa·Bf + fb, as
    `_outer_fwd_factored` backwards: conj(F_A) over fa, conj(twiddle), then the real part of conj(F_Bf) over fb.
    Returns (Bf, A, BM) fp32, row (nb, na) = time row n0 = na + A·nb."""
    ar, ai = _load_block(dftA_ptr, A, DOT, False)
    er, ei = _cdot_conj_lhs(ar, ai, tl.reshape(tr, (A, Bf * BM)).to(DOT), tl.reshape(ti, (A, Bf * BM)).to(DOT),
                            PREC, True)
    er = tl.reshape(er, (A, Bf, BM))
    ei = tl.reshape(ei, (A, Bf, BM))
    t = tl.arange(0, A)[:, None, None] * Bf + tl.arange(0, Bf)[None, :, None]  # (A, Bf, 1)
    twr = tl.load(twAB_ptr + t)
    twi = tl.load(twAB_ptr + A * Bf + t)
    cr = tl.reshape(tl.permute(er * twr + ei * twi, (1, 0, 2)), (Bf, A * BM)).to(DOT)  # ⊙ conj(tw), rows fb
    ci = tl.reshape(tl.permute(ei * twr - er * twi, (1, 0, 2)), (Bf, A * BM)).to(DOT)
    gr, gi = _load_block(dftB_ptr, Bf, DOT, False)
    y = _mm(gr, cr, PREC, Bf >= 16) + _mm(gi, ci, PREC, Bf >= 16)  # Re(conj(F_Bf) @ C)
    return tl.reshape(y, (Bf, A, BM))


@triton.jit
def outer_fwd_kernel(
    # pointers
    x_ptr, gate_ptr, w_ptr, dgate_ptr, z_ptr, zs_ptr, dft_ptr, tw_ptr, dftA_ptr, dftB_ptr, twAB_ptr,
    # sizes
    B, H, L, n_mblocks,
    # meta-parameters
    N0: tl.constexpr, M: tl.constexpr, BM: tl.constexpr, KB: tl.constexpr, A: tl.constexpr, HAS_GATE: tl.constexpr,
    HAS_DGATE: tl.constexpr, DOT_FP32: tl.constexpr, PREC: tl.constexpr, NORM: tl.constexpr,
):
    """Pass 1: z[b, h, :, f0·M + m] = tw[f0, m] · Σ_n0 F0[f0, n0] · (gate ⊙ x)[b, h, n0·M + m] for f0 ≤ N0/2.

    One program per (row b, channel h, block of BM columns m). A = 0: F0 @ x as one dense product in chunks of KB
    rows; A > 0: factored, N0 = A·Bf (`_outer_fwd_factored`). NORM (16-bit z): the block is stored times a power of
    two s that puts its largest entry in [1/2, 1), and zs[b, h, block] = 1/s (fp32). Optionally also stores
    dgate = x ⊙ w (the postgate gradient dy ⊙ w, fused into the load of dy).
    """
    R: tl.constexpr = N0 // 2 + 1  # outer rows stored
    RM: tl.constexpr = R * M
    DOT = tl.float32 if DOT_FP32 else x_ptr.dtype.element_ty  # tl.dot operand dtype (constexpr)
    pid = tl.program_id(0).to(tl.int64)
    mb = pid % n_mblocks
    bh = pid // n_mblocks  # b·H + h
    h = bh % H
    b = bh // H
    row = _row_start(b, h, H, L)
    m = mb * BM + tl.arange(0, BM)  # (BM,) columns
    if A > 0:  # factored: the tile is (Bf, A, BM), row (kb, ka) holding frequency f0 = ka + A·kb
        Bf: tl.constexpr = N0 // A
        n = (tl.arange(0, A)[:, None, None] * Bf + tl.arange(0, Bf)[None, :, None]) * M + m[None, None, :]
        x = _load_outer_input(x_ptr, gate_ptr, w_ptr, dgate_ptr, row, n, (n < L) & (b < B), HAS_GATE, HAS_DGATE)
        x, inv = _scale_row(x, HAS_GATE and NORM)  # gate ⊙ x may leave the dtype's range
        accr, acci = _outer_fwd_factored(x, dftA_ptr, dftB_ptr, twAB_ptr, A, Bf, BM, DOT, PREC)
        accr, acci = accr * inv, acci * inv
        f0 = tl.arange(0, A)[None, :, None] + A * tl.arange(0, Bf)[:, None, None]  # (Bf, A, 1)
        cols = m[None, None, :]
    else:
        f0 = tl.arange(0, N0)  # (N0,) output rows (only f0 < R are stored)
        accr = tl.zeros((N0, BM), dtype=tl.float32)
        acci = tl.zeros((N0, BM), dtype=tl.float32)
        for kb in tl.static_range(0, N0, KB):
            n0 = kb + tl.arange(0, KB)  # (KB,) input rows of this chunk
            n = n0[:, None] * M + m[None, :]  # (KB, BM) time index n0·M + m
            x = _load_outer_input(x_ptr, gate_ptr, w_ptr, dgate_ptr, row, n, (n < L) & (b < B), HAS_GATE,
                                  HAS_DGATE)
            x, inv = _scale_row(x, HAS_GATE and NORM)  # gate ⊙ x may leave the dtype's range: per chunk
            fidx = f0[:, None] * N0 + n0[None, :]  # (N0, KB)
            fr = tl.load(dft_ptr + fidx).to(DOT)
            fi = tl.load(dft_ptr + N0 * N0 + fidx).to(DOT)
            xd = x.to(DOT)
            accr += tl.dot(fr, xd, input_precision=PREC, out_dtype=tl.float32) * inv  # F0 @ x, x real: 2 dots
            acci += tl.dot(fi, xd, input_precision=PREC, out_dtype=tl.float32) * inv
        f0 = f0[:, None]
        cols = m[None, :]
    idx = f0 * M + cols  # slot f0·M + m
    keep = (f0 < R) & (cols < M)
    twr = tl.load(tw_ptr + idx)
    twi = tl.load(tw_ptr + N0 * M + idx)
    cr = tl.where(keep, accr * twr - acci * twi, 0.0)
    ci = tl.where(keep, accr * twi + acci * twr, 0.0)
    if NORM:  # 16-bit z: one power-of-two scale per block, remembered in zs
        s, inv = _pow2_scale(_absmax(cr, ci))
        cr, ci = cr * s, ci * s
        tl.store(zs_ptr + pid, inv)
    zbase = bh * 2 * RM
    tl.store(z_ptr + zbase + idx, _to_out(cr, z_ptr), mask=keep)
    tl.store(z_ptr + zbase + RM + idx, _to_out(ci, z_ptr), mask=keep)

@triton.jit
def _outer_adj_dense(z_ptr, zs_ptr, dft_ptr, zbase, bh, m, N0: tl.constexpr, M: tl.constexpr, BM: tl.constexpr,
                     KB: tl.constexpr, DOT: tl.constexpr, PREC: tl.constexpr, NORM: tl.constexpr):
    """Re(conj(F0) @ T) for the (N0, BM) column block m of one row's T, as one dense product in chunks of KB
    frequency rows (rows f0 > N0/2 read as conj of row N0 − f0; NORM: each chunk scaled to one power of two)."""
    R: tl.constexpr = N0 // 2 + 1
    RM: tl.constexpr = R * M
    n0 = tl.arange(0, N0)  # (N0,) output rows
    acc = tl.zeros((N0, BM), dtype=tl.float32)
    for kb in tl.static_range(0, N0, KB):
        f0 = kb + tl.arange(0, KB)  # (KB,) frequency rows of this chunk
        src = tl.where(f0 < R, f0, N0 - f0)  # the stored row: f0, or N0 − f0 (conjugated)
        sign = tl.where(f0 < R, 1.0, -1.0)[:, None]
        idx = src[:, None] * M + m[None, :]  # (KB, BM)
        cr = tl.load(z_ptr + zbase + idx).to(tl.float32)  # T, fp32
        ci = tl.load(z_ptr + zbase + RM + idx).to(tl.float32) * sign  # conj for the mirrored rows
        inv = 1.0
        if NORM:  # rows to one power-of-two scale for the dot (exact but where a row underflows the chunk's)
            rs = tl.load(zs_ptr + bh * R + src)[:, None]  # (KB, 1) each stored row's factor
            cr, ci = cr * rs, ci * rs  # true values (fp32), then one scale for the chunk
            s, inv = _pow2_scale(_absmax(cr, ci))
            cr, ci = cr * s, ci * s
        fidx = n0[:, None] * N0 + f0[None, :]  # (N0, KB); F0 is symmetric
        fr = tl.load(dft_ptr + fidx).to(DOT)
        fi = tl.load(dft_ptr + N0 * N0 + fidx).to(DOT)
        part = tl.dot(fr, cr.to(DOT), input_precision=PREC, out_dtype=tl.float32)  # Re(conj(F0) @ T)
        part += tl.dot(fi, ci.to(DOT), input_precision=PREC, out_dtype=tl.float32)
        acc += part * inv
    return acc


@triton.jit
def outer_adj_kernel(
    # pointers
    z_ptr, zs_ptr, dft_ptr, dftA_ptr, dftB_ptr, twAB_ptr, out1_ptr, gate1_ptr, out2_ptr, gate2_ptr,
    # sizes
    B, H, L, n_mblocks,
    # meta-parameters
    N0: tl.constexpr, M: tl.constexpr, BM: tl.constexpr, KB: tl.constexpr, A: tl.constexpr, HAS_GATE1: tl.constexpr,
    HAS_OUT2: tl.constexpr, HAS_GATE2: tl.constexpr, DOT_FP32: tl.constexpr, PREC: tl.constexpr,
    NORM: tl.constexpr,
):
    """Pass 3: r = Re Σ_f0 conj(F0[n0, f0]) · T[f0, m] at time n0·M + m, with T = conj(tw) ⊙ D as pass 2 stored it
    (rows f0 > N0/2 read as conj of row N0 − f0; NORM: row f0 times zs[b, h, f0]); out1 = gate1 ⊙ r and
    (optionally) out2 = gate2 ⊙ r, first L entries."""
    R: tl.constexpr = N0 // 2 + 1
    RM: tl.constexpr = R * M
    DOT = tl.float32 if DOT_FP32 else out1_ptr.dtype.element_ty
    pid = tl.program_id(0).to(tl.int64)
    mb = pid % n_mblocks
    bh = pid // n_mblocks
    h = bh % H
    b = bh // H
    zbase = bh * 2 * RM
    m = mb * BM + tl.arange(0, BM)  # (BM,)
    if A > 0:  # factored (N0 = A·Bf): the whole (A, Bf, BM) tile of T at once, one power of two for it
        Bf: tl.constexpr = N0 // A
        f0 = tl.arange(0, A)[:, None, None] * Bf + tl.arange(0, Bf)[None, :, None]  # (A, Bf, 1)
        src = tl.where(f0 < R, f0, N0 - f0)  # the stored row: f0, or N0 − f0 (conjugated)
        idx = src * M + m[None, None, :]  # (A, Bf, BM)
        cr = tl.load(z_ptr + zbase + idx).to(tl.float32)
        ci = tl.load(z_ptr + zbase + RM + idx).to(tl.float32) * tl.where(f0 < R, 1.0, -1.0)
        inv = 1.0
        if NORM:
            rs = tl.load(zs_ptr + bh * R + src)  # (A, Bf, 1) each stored row's factor
            cr, ci = cr * rs, ci * rs  # true values (fp32), then one scale for the tile
            s, inv = _pow2_scale(_absmax(cr, ci))
            cr, ci = cr * s, ci * s
        acc = _outer_adj_factored(cr, ci, dftA_ptr, dftB_ptr, twAB_ptr, A, Bf, BM, DOT, PREC) * inv
        n = (tl.arange(0, A)[None, :, None] + A * tl.arange(0, Bf)[:, None, None]) * M + m[None, None, :]
    else:
        acc = _outer_adj_dense(z_ptr, zs_ptr, dft_ptr, zbase, bh, m, N0, M, BM, KB, DOT, PREC, NORM)
        n = tl.arange(0, N0)[:, None] * M + m[None, :]  # (N0, BM) time index
    row = _row_start(b, h, H, L)
    mask = (n < L) & (b < B)
    o1 = acc
    if HAS_GATE1:
        o1 = o1 * tl.load(gate1_ptr + row + n, mask=mask, other=0.0).to(tl.float32)
    tl.store(out1_ptr + row + n, _to_out(o1, out1_ptr), mask=mask)
    if HAS_OUT2:
        o2 = acc
        if HAS_GATE2:
            o2 = o2 * tl.load(gate2_ptr + row + n, mask=mask, other=0.0).to(tl.float32)
        tl.store(out2_ptr + row + n, _to_out(o2, out2_ptr), mask=mask)


@triton.jit
def _load_inner(z_ptr, zs_ptr, base, RM, n, mask, bh, n_mblocks, BM: tl.constexpr, NORM: tl.constexpr):
    """One stored inner row (re, im (M1, M2) tiles of pass 1's z, fp32 or 16-bit), scaled by a power of two when
    NORM, and 1/scale. NORM: column m of z carries pass 1's factor zs[b, h, m // BM], folded in here."""
    zr = tl.load(z_ptr + base + n, mask=mask, other=0.0).to(tl.float32)
    zi = tl.load(z_ptr + base + RM + n, mask=mask, other=0.0).to(tl.float32)
    if NORM:
        bs = tl.load(zs_ptr + bh * n_mblocks + n // BM, mask=mask, other=1.0)  # (M1, M2) block factors
        zr, zi = zr * bs, zi * bs  # true values (fp32), then one scale for the row: bs·s alone may overflow
        s, inv = _pow2_scale(_absmax(zr, zi))
        return zr * s, zi * s, inv
    return zr, zi, 1.0


@triton.jit
def _store_inner(z_ptr, zs_ptr, base, RM, n, mask, yr, yi, c, twr, twi, bh_row, valid, NORM: tl.constexpr):
    """Store an inner convolution's output row times c as T = conj(tw0 segment) ⊙ row (pass 3's twiddle, applied
    here in fp32 before the one rounding); NORM: scaled to max |·| in [1/2, 1), zs[bh_row] = 1/scale · c."""
    tr = yr * twr + yi * twi  # ⊙ conj(tw)
    ti = yi * twr - yr * twi
    if NORM:
        s, inv = _pow2_scale(_absmax(tr, ti))
        tr, ti, c = tr * s, ti * s, c * inv
        tl.store(zs_ptr + bh_row, c, mask=valid)
    else:
        tr, ti = tr * c, ti * c
    tl.store(z_ptr + base + n, _to_out(tr, z_ptr), mask=mask)
    tl.store(z_ptr + base + RM + n, _to_out(ti, z_ptr), mask=mask)


@triton.jit
def _load_k_segment(k_f_ptr, h, f0, n, N: tl.constexpr, M: tl.constexpr, NORM: tl.constexpr):
    """k_f[h] (k_f (H, 2, R·M): the stored outer rows only) at outer row f0 (re, im (M1, M2) tiles), scaled to
    max|K| < 1 when NORM, and 1/scale."""
    RM: tl.constexpr = (N // M // 2 + 1) * M
    base = h.to(tl.int64) * 2 * RM + f0 * M
    return _scale_pair(tl.load(k_f_ptr + base + n), tl.load(k_f_ptr + base + RM + n), NORM)

@triton.jit
def _load_tw_segment(tw0_ptr, f0, n, N0: tl.constexpr, M: tl.constexpr):
    """The outer twiddle's row f0 (re, im (M1, M2) fp32 tiles): pass 3's conj(tw) is applied by pass 2."""
    return tl.load(tw0_ptr + f0 * M + n), tl.load(tw0_ptr + N0 * M + f0 * M + n)


@triton.jit
def inner_conv_kernel(
    # pointers
    z_ptr, zs1_ptr, zs2_ptr, k_f_ptr, dft1_ptr, dft2_ptr, tw_ptr, tw0_ptr, like_ptr,
    # sizes
    B, H, n_chunks, rows_per_prog, n_mblocks,
    # meta-parameters
    N0: tl.constexpr, M1: tl.constexpr, M2: tl.constexpr, BM: tl.constexpr, DOT_FP32: tl.constexpr,
    PREC: tl.constexpr, NORM: tl.constexpr,
):
    """Pass 2, in place: z[b, h, :, f0·M : (f0+1)·M] ← conj(tw0[f0]) ⊙ adj_M(fwd_M(row) ⊙ k_f[h, f0·M …]) for the
    chunk's rows (NORM: rows read with pass 1's block factors zs1, written with their own factor zs2[b, h, f0]).

    One program per (channel h, stored outer row f0 < R, chunk of batch rows); like_ptr only carries u's dtype.
    """
    M: tl.constexpr = M1 * M2
    N: tl.constexpr = N0 * M
    R: tl.constexpr = N0 // 2 + 1
    RM: tl.constexpr = R * M
    DOT = tl.float32 if DOT_FP32 else like_ptr.dtype.element_ty
    pid = tl.program_id(0).to(tl.int64)
    chunk = pid % n_chunks
    hf = pid // n_chunks  # h·R + f0
    f0 = hf % R
    h = hf // R
    n = tl.arange(0, M1)[:, None] * M2 + tl.arange(0, M2)[None, :]  # (M1, M2) slot i1·M2 + i2
    f1r, f1i, f2r, f2i, twr, twi = _load_plan(dft1_ptr, dft2_ptr, tw_ptr, M1, M2, DOT)
    Kr, Ki, inv_k = _load_k_segment(k_f_ptr, h, f0, n, N, M, NORM)  # this row's spectrum segment
    t0r, t0i = _load_tw_segment(tw0_ptr, f0, n, N0, M)
    for i in range(0, rows_per_prog):
        b = chunk * rows_per_prog + i
        mask = (n < M) & (b < B)
        bh = b.to(tl.int64) * H + h
        base = bh * 2 * RM + f0 * M
        zr, zi, inv = _load_inner(z_ptr, zs1_ptr, base, RM, n, mask, bh, n_mblocks, BM, NORM)
        zr, zi = _monarch_fwd(zr, zi, f1r, f1i, f2r, f2i, twr, twi, DOT, PREC)
        yr = zr * Kr - zi * Ki  # ⊙ k_f
        yi = zr * Ki + zi * Kr
        yr, yi = _monarch_adj(yr, yi, f1r, f1i, f2r, f2i, twr, twi, DOT, PREC)
        _store_inner(z_ptr, zs2_ptr, base, RM, n, mask, yr, yi, inv * inv_k, t0r, t0i, bh * R + f0, b < B, NORM)


@triton.jit
def inner_conv_bwd_kernel(
    # pointers
    g_ptr, gs1_ptr, gs2_ptr, v_ptr, vs1_ptr, q_ptr, k_f_ptr, dft1_ptr, dft2_ptr, tw_ptr, tw0_ptr, like_ptr,
    # sizes
    B, H, n_chunks, rows_per_prog, n_mblocks,
    # meta-parameters
    N0: tl.constexpr, M1: tl.constexpr, M2: tl.constexpr, BM: tl.constexpr, DOT_FP32: tl.constexpr,
    PREC: tl.constexpr, COMPUTE_DV: tl.constexpr, COMPUTE_DK: tl.constexpr, NORM: tl.constexpr,
):
    """Pass 2 backward: g row ← conj(tw0[f0]) ⊙ adj_M(fwd_M(g row) ⊙ conj(k_f)) in place (dv; factors as pass 2),
    and q[chunk, h, :, f0·M …] = Σ_{rows} conj(fwd_M(v row)) ⊙ fwd_M(g row) in fp32 (dk's spectrum, permuted)."""
    M: tl.constexpr = M1 * M2
    N: tl.constexpr = N0 * M
    R: tl.constexpr = N0 // 2 + 1
    RM: tl.constexpr = R * M
    DOT = tl.float32 if DOT_FP32 else like_ptr.dtype.element_ty
    pid = tl.program_id(0).to(tl.int64)
    chunk = pid % n_chunks
    hf = pid // n_chunks
    f0 = hf % R
    h = hf // R
    n = tl.arange(0, M1)[:, None] * M2 + tl.arange(0, M2)[None, :]  # (M1, M2)
    f1r, f1i, f2r, f2i, twr, twi = _load_plan(dft1_ptr, dft2_ptr, tw_ptr, M1, M2, DOT)
    if COMPUTE_DV:
        Kr, Ki, inv_k = _load_k_segment(k_f_ptr, h, f0, n, N, M, NORM)
        t0r, t0i = _load_tw_segment(tw0_ptr, f0, n, N0, M)
    Pr = tl.zeros((M1, M2), dtype=tl.float32)  # Σ conj(Zv) ⊙ Zg over the chunk's rows
    Pi = tl.zeros((M1, M2), dtype=tl.float32)
    for i in range(0, rows_per_prog):
        b = chunk * rows_per_prog + i
        mask = (n < M) & (b < B)
        bh = b.to(tl.int64) * H + h
        base = bh * 2 * RM + f0 * M
        gr, gi, inv_g = _load_inner(g_ptr, gs1_ptr, base, RM, n, mask, bh, n_mblocks, BM, NORM)
        gr, gi = _monarch_fwd(gr, gi, f1r, f1i, f2r, f2i, twr, twi, DOT, PREC)  # Zg
        if COMPUTE_DV:
            xr = gr * Kr + gi * Ki  # Zg ⊙ conj(k_f)
            xi = gi * Kr - gr * Ki
            xr, xi = _monarch_adj(xr, xi, f1r, f1i, f2r, f2i, twr, twi, DOT, PREC)
            _store_inner(g_ptr, gs2_ptr, base, RM, n, mask, xr, xi, inv_g * inv_k, t0r, t0i, bh * R + f0, b < B,
                         NORM)
        if COMPUTE_DK:
            vr, vi, inv_v = _load_inner(v_ptr, vs1_ptr, base, RM, n, mask, bh, n_mblocks, BM, NORM)
            vr, vi = _monarch_fwd(vr, vi, f1r, f1i, f2r, f2i, twr, twi, DOT, PREC)  # Zv
            c = inv_v * inv_g
            Pr += (vr * gr + vi * gi) * c  # conj(Zv) ⊙ Zg
            Pi += (vr * gi - vi * gr) * c
    if COMPUTE_DK:  # the spectrum sum in permuted order; its inverse FFT (H·N, no batch) runs in PyTorch
        qbase = _row_start(chunk, h, H, 2 * RM) + f0 * M
        tl.store(q_ptr + qbase + n, Pr)
        tl.store(q_ptr + qbase + RM + n, Pi)


# ---------------------------------------------------------------------------------------------------------------
# Launchers (grids, plans, launch settings from kernels.launch) and the autograd Function
# ---------------------------------------------------------------------------------------------------------------

def k_f_three_pass(k: torch.Tensor, N: int) -> torch.Tensor:
    """k (H, Lk) fp32 → k_f (H, 2, R·M) fp32: k's unscaled N-point FFT in the permuted order of three_pass_sizes(N),
    the R = N0/2 + 1 stored outer rows only (what pass 2 reads): rfft plus one gather launch (k_f_gathered). Equals
    kernels.launch.k_f_planes_full(k, N, three_pass_sizes(N))[..., :R·M] (the PyTorch reference)."""
    return k_f_gathered(k, N, get_plan(N, k.device)["k_src"])


def _buffer_dtype(dtype: torch.dtype) -> torch.dtype:
    """The intermediates' dtype: the input's for fp16/bf16 (scaled by powers of two, factors kept in fp32), fp32
    for fp32."""
    return torch.float32 if dtype == torch.float32 else dtype


def _pass1(x, gate, N, dtype, w=None, dgate=None):
    """(z, zs): z (B, H, 2, R·M) the outer-pass spectrum (stored rows f0 ≤ N0/2) of gate ⊙ x (B, H, L), row by row,
    in `_buffer_dtype(dtype)`; zs (B, H, M/BM) fp32 its block factors (16-bit z: true value = stored · factor);
    also dgate = x ⊙ w when w is given."""
    B, H, L = x.shape
    N0, M1, M2 = three_pass_sizes(N)
    M, R = M1 * M2, N0 // 2 + 1
    plan = get_plan(N, x.device)
    opts = outer_blocks(N0)
    n_mblocks = M // opts["BM"]
    z = torch.empty(B, H, 2, R * M, device=x.device, dtype=_buffer_dtype(dtype))  # (B, H, 2, R·M)
    zs = torch.empty(B, H, n_mblocks, device=x.device, dtype=torch.float32)  # (B, H, M/BM)
    launch(outer_fwd_kernel, (B * H * n_mblocks,),
           (x, x if gate is None else gate, x if w is None else w, x if dgate is None else dgate, z, zs,
            plan["dft0"], plan["tw0"], plan["dftA"], plan["dftB"], plan["twAB"], B, H, L, n_mblocks),
           dict(N0=N0, M=M, HAS_GATE=gate is not None, HAS_DGATE=w is not None, **dot_args(dtype), **opts),
           N, "three-pass pass 1")
    return z, zs


def _pass3(z, zs, N, B, L, out1, gate1=None, out2=None, gate2=None, dtype=None):
    """Outer pass back of z (B, H, 2, R·M) with row factors zs (B, H, R) into out1 = gate1 ⊙ r (B, H, L) and
    optionally out2 = gate2 ⊙ r."""
    H = z.shape[1]
    N0, M1, M2 = three_pass_sizes(N)
    M = M1 * M2
    plan = get_plan(N, z.device)
    opts = outer_blocks(N0)
    n_mblocks = M // opts["BM"]
    launch(outer_adj_kernel, (B * H * n_mblocks,),
           (z, zs, plan["dft0"], plan["dftA"], plan["dftB"], plan["twAB"], out1, out1 if gate1 is None else gate1,
            out1 if out2 is None else out2,
            out1 if gate2 is None else gate2, B, H, L, n_mblocks),
           dict(N0=N0, M=M, HAS_GATE1=gate1 is not None, HAS_OUT2=out2 is not None,
                HAS_GATE2=gate2 is not None, **dot_args(dtype or out1.dtype), **opts),
           N, "three-pass pass 3")


def _pass2(z, zs1, k_f, N, like, rows_per_prog=None):
    """In place: every stored outer row f0 of z (B, H, 2, R·M; block factors zs1) becomes conj(tw0) ⊙ its inner
    FFT convolution with its k_f segment; returns the row factors zs2 (B, H, R) fp32."""
    B, H = z.shape[:2]
    N0, M1, M2 = three_pass_sizes(N)
    R = N0 // 2 + 1
    plan = get_plan(N, z.device)
    BM = outer_blocks(N0)["BM"]
    zs2 = torch.empty(B, H, R, device=z.device, dtype=torch.float32)  # (B, H, R)
    n_chunks, rpp = chunks(B, H * R, z.device, rows_per_prog)
    launch(inner_conv_kernel, (H * R * n_chunks,),
           (z, zs1, zs2, k_f, plan["dft1"], plan["dft2"], plan["tw1"], plan["tw0"], like, B, H, n_chunks, rpp,
            M1 * M2 // BM),
           dict(N0=N0, M1=M1, M2=M2, BM=BM, **dot_args(like.dtype),
                **launch_opts(M1 * M2, "fwd", dtype=like.dtype)),
           N, "three-pass pass 2")
    return zs2


def _pass2_bwd(g, gs1, v, vs1, k_f, N, like, need_dv=True, need_dk=True, rows_per_prog=None):
    """g (B, H, 2, R·M) ← inner part of dv in place (as _pass2, with conj(k_f)); returns (gs2 (B, H, R) fp32 or
    None, q (H, 2, R·M) fp32 = Σ conj(Zv)·Zg (permuted) or None)."""
    B, H = g.shape[:2]
    N0, M1, M2 = three_pass_sizes(N)
    R = N0 // 2 + 1
    plan = get_plan(N, g.device)
    BM = outer_blocks(N0)["BM"]
    n_chunks, rpp = chunks(B, H * R, g.device, rows_per_prog)
    gs2 = torch.empty(B, H, R, device=g.device, dtype=torch.float32) if need_dv else gs1  # (B, H, R)
    q = (torch.empty(n_chunks, H, 2, R * M1 * M2, device=g.device, dtype=torch.float32) if need_dk  # (C, H, 2, R·M)
         else gs1)
    launch(inner_conv_bwd_kernel, (H * R * n_chunks,),
           (g, gs1, gs2, g if v is None else v, gs1 if vs1 is None else vs1, q, k_f, plan["dft1"], plan["dft2"],
            plan["tw1"], plan["tw0"], like, B, H, n_chunks, rpp, M1 * M2 // BM),
           dict(N0=N0, M1=M1, M2=M2, BM=BM, **dot_args(like.dtype), COMPUTE_DV=need_dv, COMPUTE_DK=need_dk,
                **launch_opts(M1 * M2, "bwd", dtype=like.dtype)), N, "three-pass pass 2 (backward)")
    return (gs2 if need_dv else None), ((q[0] if n_chunks == 1 else q.sum(0)) if need_dk else None)  # (H, 2, R·M)


def _dk_from_spectrum(q: torch.Tensor, N: int, Lk: int) -> torch.Tensor:
    """dk (H, Lk) = Re(N·ifft(q))[:Lk] from q (H, 2, R·M) fp32, the stored rows f0 ≤ N0/2 of a Hermitian spectrum
    in permuted order: frequencies 0 … N/2 are gathered (conjugated where only −f is stored), then irfft."""
    plan = get_plan(N, q.device)
    qc = torch.complex(q[:, 0], q[:, 1])[:, plan["nat"]]  # (H, N/2 + 1) natural order
    qc = torch.where(plan["mirror"], qc.conj(), qc)
    return torch.fft.irfft(qc, n=N, norm="forward")[:, :Lk].contiguous()  # (H, Lk) fp32


def _fwd(u, k_f, N, pregate=None, postgate=None, save_w=False, rows_per_prog=None):
    """(y, w or None): y = postgate ⊙ w, w = conv_N(pregate ⊙ u, k) — three passes, one (B, H, 2, R·M) buffer."""
    B, H, L = u.shape
    z, zs1 = _pass1(u, pregate, N, u.dtype)  # (B, H, 2, R·M)
    zs2 = _pass2(z, zs1, k_f, N, u, rows_per_prog)
    y = torch.empty_like(u)  # (B, H, L)
    w = torch.empty_like(u) if (save_w and postgate is not None) else None
    _pass3(z, zs2, N, B, L, y, gate1=postgate, out2=w)
    return y, w


def _bwd(u, dy, k_f, N, Lk, pregate=None, postgate=None, w=None, need_du=True, need_dk=True,
         need_dpre=False, need_dpost=False, rows_per_prog=None):
    """(du, dk, dpregate, dpostgate), None where not needed: three passes on dy (and pass 1 on u for dk)."""
    B, H, L = u.shape
    need_dv = need_du or need_dpre
    dpost = torch.empty_like(u) if need_dpost else None
    du = dpre = dk = None
    if need_dv or need_dk or need_dpost:
        g, gs1 = _pass1(dy, postgate, N, u.dtype, w=w if need_dpost else None, dgate=dpost)  # (B, H, 2, R·M)
    if need_dv or need_dk:
        v, vs1 = _pass1(u, pregate, N, u.dtype) if need_dk else (None, None)  # (B, H, 2, R·M)
        gs2, q = _pass2_bwd(g, gs1, v, vs1, k_f, N, u, need_dv=need_dv, need_dk=need_dk,
                            rows_per_prog=rows_per_prog)
        del v
        if need_dv:
            du = torch.empty_like(u)  # (B, H, L)
            dpre = torch.empty_like(u) if need_dpre else None
            _pass3(g, gs2, N, B, L, du, gate1=pregate, out2=dpre, gate2=u if need_dpre else None)
        if need_dk:
            dk = _dk_from_spectrum(q, N, Lk)  # (H, Lk)
    return du, dk, dpre, dpost


def forward_only(u, k, N, pregate=None, postgate=None) -> torch.Tensor:
    """y (B, H, L) without autograd bookkeeping (for calls that record no gradient): k_f, then the three passes."""
    return _fwd(u, k_f_three_pass(k, N), N, pregate, postgate)[0]


class ThreePassFn(torch.autograd.Function):
    """The three passes wired into autograd: y = postgate ⊙ conv_N(pregate ⊙ u, k)."""

    @staticmethod
    def forward(ctx, u, k, pregate, postgate, N):
        k_f = k_f_three_pass(k, N)  # (H, 2, R·M) fp32, once per call
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
# The three passes as torch.library operators, used inside torch.compile (kernels.conv): one opaque graph node each,
# as the fused path's lconv::flash_butterfly_fwd (dynamo cannot trace into ThreePassFn's launchers). Eager calls keep
# ThreePassFn. Schemas are written out (this module postpones its annotations).
# ---------------------------------------------------------------------------------------------------------------

@torch.library.custom_op("lconv::three_pass_fwd", mutates_args=(),
                         schema="(Tensor u, Tensor k, Tensor? pregate, Tensor? postgate, int N, bool save_w) -> "
                                "(Tensor, Tensor, Tensor)")
def three_pass_op(u, k, pregate, postgate, N, save_w):
    """(y, k_f, w): y (B, H, L) in u's dtype by the three passes; k_f (H, 2, R·M) fp32, saved for the backward;
    w = conv_N(pregate ⊙ u, k) (B, H, L) when save_w and gated (for dpostgate = dy ⊙ w), else an empty tensor."""
    k_f = k_f_three_pass(k, N)
    y, w = _fwd(u, k_f, N, pregate, postgate, save_w=save_w)
    return y, k_f, (u.new_empty(0) if w is None else w)


@three_pass_op.register_fake
def _(u, k, pregate, postgate, N, save_w):
    N0, M1, M2 = three_pass_sizes(N)
    w = torch.empty_like(u) if (save_w and postgate is not None) else u.new_empty(0)
    return torch.empty_like(u), k.new_empty((k.shape[0], 2, (N0 // 2 + 1) * M1 * M2), dtype=torch.float32), w


@torch.library.custom_op("lconv::three_pass_bwd", mutates_args=(),
                         schema="(Tensor u, Tensor dy, Tensor k_f, Tensor? pregate, Tensor? postgate, Tensor? w, "
                                "int N, SymInt Lk, bool[] need) -> (Tensor, Tensor, Tensor, Tensor)")
def three_pass_bwd_op(u, dy, k_f, pregate, postgate, w, N, Lk, need):
    """(du, dk, dpregate, dpostgate) by the three passes on dy; an empty tensor where `need` (4 flags) says no."""
    need_du, need_dk, need_dpre, need_dpost = need
    gated = pregate is not None
    grads = _bwd(u, dy, k_f, N, Lk, pregate, postgate, w, need_du=need_du, need_dk=need_dk,
                 need_dpre=need_dpre and gated, need_dpost=need_dpost and gated)
    return tuple(u.new_empty(0) if g is None else g for g in grads)


@three_pass_bwd_op.register_fake
def _(u, dy, k_f, pregate, postgate, w, N, Lk, need):
    gated = pregate is not None
    shapes = (u.shape, (k_f.shape[0], Lk), u.shape if gated else (0,), u.shape if gated else (0,))
    dtypes = (u.dtype, torch.float32, u.dtype, u.dtype)
    return tuple(u.new_empty(s if flag else (0,), dtype=d) for s, d, flag in zip(shapes, dtypes, need))


def _op_setup_context(ctx, inputs, output):
    u, k, pregate, postgate, N, save_w = inputs
    ctx.mark_non_differentiable(output[1], output[2])
    ctx.set_materialize_grads(False)
    ctx.has_w = bool(save_w) and postgate is not None
    ctx.save_for_backward(u, output[1], pregate, postgate, output[2] if ctx.has_w else None)
    ctx.N, ctx.Lk = N, k.shape[-1]


def _op_backward(ctx, dy, _dk_f, _dw):
    u, k_f, pregate, postgate, w = ctx.saved_tensors
    need = [bool(f) for f in ctx.needs_input_grad[:4]]
    grads = three_pass_bwd_op(u, dy.to(u.dtype).contiguous(), k_f, pregate, postgate, w, ctx.N, ctx.Lk, need)
    return (*(g if flag else None for g, flag in zip(grads, need)), None, None)


three_pass_op.register_autograd(_op_backward, setup_context=_op_setup_context)
