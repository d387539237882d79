r"""FlashButterfly in Triton: the whole FFT convolution (FFT → ⊙ k_f → inverse FFT) fused in one kernel.

Provenance
----------
The paper (Fu, Epstein et al., ICML 2023, §4) describes FlashButterfly but never released it; its successor
HazyResearch/flash-fft-conv is CUDA-only. This is an independent Triton implementation of the algorithm as described
(see /work/shared/PAPER.md), written from the maths in `lconv/butterfly.py`, which is its PyTorch reference.

Motivation
----------
A long convolution y = u * k via cuFFT reads and writes u, its spectrum and y in HBM several times, and the FFT's
butterflies cannot use tensor cores. Cooley–Tukey with N = N1·N2 turns an N-point FFT into two rounds of small dense
DFT matrix multiplies (16–64 points: `tl.dot` on tensor cores) with a twiddle diagonal between them. A whole sequence
of N ≤ 4096 fits on chip as an (N1, N2) tile, so u is read once and y written once.

Algorithm (per program: one channel h, a chunk of batch pairs; tiles are (N1, N2), complex = separate re/im planes)
------------------------------------------------------------------------------------------------------------------
    F1, F2   = DFT_{N1}/√N1, DFT_{N2}/√N2            # unitary, loaded once, in the dot dtype
    tw       = twiddle(N1, N2);  K = k_f[h]          # fp32, K in the permuted order (f1, f2)
    for p in pairs of the chunk:
        z    = u[2p, h] + i·u[2p+1, h]               # real-input trick: two rows, one complex sequence;
                                                     # masked loads n < L give the zero padding for free
        Z    = ((F1 @ z) ⊙ tw) @ F2                  # forward Monarch pass: 4+4 real tl.dot, fp32 accumulation
        Y    = Z ⊙ K                                 # pointwise, fp32; permuted order on both sides
        y    = conj(F1) @ ((Y @ conj(F2)) ⊙ conj(tw))# adjoint pass = inverse of the unitary forward pass
        y[2p, h] = Re(y)[:L];  y[2p+1, h] = Im(y)[:L]
Backward (du = correlation of dy with k, dk = Σ_b correlation of dy_b with u_b):
        Zdy = fwd(dy pair);  du pair = adj(Zdy ⊙ conj(K))
        Zu  = fwd(u pair);   P += conj(Zu) ⊙ Zdy     # Re of the inverse of this sum is corr_a + corr_b
    after the loop: dk_partial[chunk, h] = √N · Re(adj(P))[:Lk]   (fp32 dots); summed over chunks by the caller.

Decomposition used: N1 = 2^⌊log2(N)/2⌋, N2 = N/N1: 256 = 16·16, 512 = 16·32, 1024 = 32·32, 2048 = 32·64,
4096 = 64·64 — always two passes, every dot dimension ≥ 16 and a power of two.

Caveats (honest)
----------------
- Written and tested on CPU only, through the Triton interpreter (TRITON_INTERPRET=1). Compilation on a GPU, speed,
  register/shared-memory pressure at N = 2048/4096 (64×64 fp32 tiles), and bf16 numerics are untested.
- fp16/bf16 inputs: intermediate spectra are rounded to the input dtype before each dot (fp32 accumulation), as
  tensor cores require; errors are a few ulps of the input dtype, larger than fp32 FFT conv. fp32 inputs use
  input_precision="ieee" (no TF32), i.e. no tensor cores: correct but not fast.
- bf16 `tl.dot` is wrong in the interpreter, so under TRITON_INTERPRET=1 bf16 inputs are multiplied with fp32 dots.
- The three-pass algorithm for N > 4096 (paper §4) is not implemented; gates (pregate/postgate) are applied outside
  the kernel by the wrapper, unfused.
- dk is reduced across batch chunks through an fp32 (n_chunks, H, Lk) buffer summed by PyTorch (deterministic, no
  atomics).
"""
import triton
import triton.language as tl

# ---------------------------------------------------------------------------------------------------------------
# Complex matrix products on (re, im) planes. `a`, `b` are already in the dot dtype; results are fp32.
# ---------------------------------------------------------------------------------------------------------------


@triton.jit
def _cdot(ar, ai, br, bi, PREC: tl.constexpr):
    """(ar + i·ai) @ (br + i·bi)."""
    rr = tl.dot(ar, br, input_precision=PREC, out_dtype=tl.float32)
    rr -= tl.dot(ai, bi, input_precision=PREC, out_dtype=tl.float32)
    ri = tl.dot(ar, bi, input_precision=PREC, out_dtype=tl.float32)
    ri += tl.dot(ai, br, input_precision=PREC, out_dtype=tl.float32)
    return rr, ri


@triton.jit
def _cdot_conj_rhs(ar, ai, br, bi, PREC: tl.constexpr):
    """(ar + i·ai) @ conj(br + i·bi)."""
    rr = tl.dot(ar, br, input_precision=PREC, out_dtype=tl.float32)
    rr += tl.dot(ai, bi, input_precision=PREC, out_dtype=tl.float32)
    ri = tl.dot(ai, br, input_precision=PREC, out_dtype=tl.float32)
    ri -= tl.dot(ar, bi, input_precision=PREC, out_dtype=tl.float32)
    return rr, ri


@triton.jit
def _cdot_conj_lhs(ar, ai, br, bi, PREC: tl.constexpr):
    """conj(ar + i·ai) @ (br + i·bi)."""
    rr = tl.dot(ar, br, input_precision=PREC, out_dtype=tl.float32)
    rr += tl.dot(ai, bi, input_precision=PREC, out_dtype=tl.float32)
    ri = tl.dot(ar, bi, input_precision=PREC, out_dtype=tl.float32)
    ri -= tl.dot(ai, br, input_precision=PREC, out_dtype=tl.float32)
    return rr, ri


@triton.jit
def _monarch_fwd(xr, xi, f1r, f1i, f2r, f2i, twr, twi, DOT: tl.constexpr, PREC: tl.constexpr):
    """Z = ((F1 @ x) ⊙ tw) @ F2 on an (N1, N2) tile: natural-order time in, permuted-order frequency out."""
    br, bi = _cdot(f1r, f1i, xr.to(DOT), xi.to(DOT), PREC)  # (N1, N2): N1-point DFTs down the columns
    cr = br * twr - bi * twi  # twiddle, fp32
    ci = br * twi + bi * twr
    return _cdot(cr.to(DOT), ci.to(DOT), f2r, f2i, PREC)  # (N1, N2): N2-point DFTs along the rows


@triton.jit
def _monarch_adj(xr, xi, f1r, f1i, f2r, f2i, twr, twi, DOT: tl.constexpr, PREC: tl.constexpr):
    """y = conj(F1) @ ((X @ conj(F2)) ⊙ conj(tw)): the adjoint (= inverse, for unitary F) of `_monarch_fwd`."""
    er, ei = _cdot_conj_rhs(xr.to(DOT), xi.to(DOT), f2r, f2i, PREC)  # (N1, N2)
    cr = er * twr + ei * twi  # ⊙ conj(tw)
    ci = ei * twr - er * twi
    return _cdot_conj_lhs(f1r, f1i, cr.to(DOT), ci.to(DOT), PREC)  # (N1, N2)


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


@triton.jit
def _load_pair(x_ptr, b0, h, H, L, n, mask_n, B):
    """Rows 2p and 2p+1 of channel h as one complex tile (zero beyond L and for a missing odd partner)."""
    base0 = (b0 * H + h) * L  # int64: b0 and h are int64
    base1 = ((b0 + 1) * H + h) * L
    xr = tl.load(x_ptr + base0 + n, mask=mask_n & (b0 < B), other=0.0)
    xi = tl.load(x_ptr + base1 + n, mask=mask_n & (b0 + 1 < B), other=0.0)
    return xr, xi


@triton.jit
def _store_pair(x_ptr, yr, yi, b0, h, H, L, n, mask_n, B):
    """Store Re to row 2p and Im to row 2p+1 of channel h, first L entries only."""
    base0 = (b0 * H + h) * L
    base1 = ((b0 + 1) * H + h) * L
    tl.store(x_ptr + base0 + n, yr.to(x_ptr.dtype.element_ty), mask=mask_n & (b0 < B))
    tl.store(x_ptr + base1 + n, yi.to(x_ptr.dtype.element_ty), mask=mask_n & (b0 + 1 < B))


# ---------------------------------------------------------------------------------------------------------------
# Kernels. Grid: one program per (channel h, chunk of batch pairs), flattened: pid = h·n_chunks + chunk.
# ---------------------------------------------------------------------------------------------------------------


@triton.jit
def flash_butterfly_fwd_kernel(
    # pointers
    u_ptr, y_ptr, k_f_ptr, dft1_ptr, dft2_ptr, tw_ptr,
    # sizes
    B, H, L, n_chunks, pairs_per_prog,
    # meta-parameters
    N1: tl.constexpr, N2: tl.constexpr, DOT_FP32: tl.constexpr, PREC: tl.constexpr,
):
    """y (B, H, L) = first L of circular_N(pad(u), k): u, y contiguous (B, H, L); k_f (H, 2, N) fp32 permuted."""
    N = N1 * N2  # constexpr
    DOT = tl.float32 if DOT_FP32 else u_ptr.dtype.element_ty  # tl.dot operand dtype (constexpr)
    pid = tl.program_id(0).to(tl.int64)
    h = pid // n_chunks
    chunk = pid % n_chunks
    n = tl.arange(0, N1)[:, None] * N2 + tl.arange(0, N2)[None, :]  # (N1, N2): time n1·N2+n2 / freq slot f1·N2+f2
    mask_n = n < L
    f1r, f1i, f2r, f2i, twr, twi = _load_plan(dft1_ptr, dft2_ptr, tw_ptr, N1, N2, DOT)
    Kr = tl.load(k_f_ptr + h * 2 * N + n)  # (N1, N2) fp32
    Ki = tl.load(k_f_ptr + h * 2 * N + N + n)
    for p in range(0, pairs_per_prog):
        b0 = 2 * (chunk * pairs_per_prog + p)
        ur, ui = _load_pair(u_ptr, b0, h, H, L, n, mask_n, B)
        zr, zi = _monarch_fwd(ur, ui, f1r, f1i, f2r, f2i, twr, twi, DOT, PREC)
        yr = zr * Kr - zi * Ki  # Z ⊙ K
        yi = zr * Ki + zi * Kr
        yr, yi = _monarch_adj(yr, yi, f1r, f1i, f2r, f2i, twr, twi, DOT, PREC)
        _store_pair(y_ptr, yr, yi, b0, h, H, L, n, mask_n, B)


@triton.jit
def flash_butterfly_bwd_kernel(
    # pointers
    u_ptr, dy_ptr, du_ptr, dk_ptr, k_f_ptr, dft1_ptr, dft2_ptr, tw_ptr,
    # sizes
    B, H, L, Lk, n_chunks, pairs_per_prog, sqrt_N,
    # meta-parameters
    N1: tl.constexpr, N2: tl.constexpr, DOT_FP32: tl.constexpr, PREC: tl.constexpr,
    COMPUTE_DU: tl.constexpr, COMPUTE_DK: tl.constexpr,
):
    """du (B, H, L) = corr(dy, k); dk_partial (n_chunks, H, Lk) fp32 = Σ_{b in chunk} corr(dy_b, u_b)."""
    N = N1 * N2  # constexpr
    DOT = tl.float32 if DOT_FP32 else u_ptr.dtype.element_ty  # tl.dot operand dtype (constexpr)
    pid = tl.program_id(0).to(tl.int64)
    h = pid // n_chunks
    chunk = pid % n_chunks
    n = tl.arange(0, N1)[:, None] * N2 + tl.arange(0, N2)[None, :]  # (N1, N2)
    mask_n = n < L
    f1r, f1i, f2r, f2i, twr, twi = _load_plan(dft1_ptr, dft2_ptr, tw_ptr, N1, N2, DOT)
    Kr = tl.load(k_f_ptr + h * 2 * N + n)  # (N1, N2) fp32
    Ki = tl.load(k_f_ptr + h * 2 * N + N + n)
    Pr = tl.zeros((N1, N2), dtype=tl.float32)  # Σ conj(Zu) ⊙ Zdy over the chunk's pairs
    Pi = tl.zeros((N1, N2), dtype=tl.float32)
    for p in range(0, pairs_per_prog):
        b0 = 2 * (chunk * pairs_per_prog + p)
        gr, gi = _load_pair(dy_ptr, b0, h, H, L, n, mask_n, B)
        gr, gi = _monarch_fwd(gr, gi, f1r, f1i, f2r, f2i, twr, twi, DOT, PREC)  # Zdy
        if COMPUTE_DU:
            xr = gr * Kr + gi * Ki  # Zdy ⊙ conj(K)
            xi = gi * Kr - gr * Ki
            xr, xi = _monarch_adj(xr, xi, f1r, f1i, f2r, f2i, twr, twi, DOT, PREC)
            _store_pair(du_ptr, xr, xi, b0, h, H, L, n, mask_n, B)
        if COMPUTE_DK:
            ur, ui = _load_pair(u_ptr, b0, h, H, L, n, mask_n, B)
            ur, ui = _monarch_fwd(ur, ui, f1r, f1i, f2r, f2i, twr, twi, DOT, PREC)  # Zu
            Pr += ur * gr + ui * gi  # conj(Zu) ⊙ Zdy
            Pi += ur * gi - ui * gr
    if COMPUTE_DK:
        # one inverse pass for the whole chunk, fp32 operands (ieee) whatever the input dtype: P sums many products
        g1r, g1i, g2r, g2i, twr, twi = _load_plan(dft1_ptr, dft2_ptr, tw_ptr, N1, N2, tl.float32)
        er, ei = _cdot_conj_rhs(Pr, Pi, g2r, g2i, "ieee")  # (N1, N2)
        cr = er * twr + ei * twi
        ci = ei * twr - er * twi
        dk = tl.dot(g1r, cr, input_precision="ieee", out_dtype=tl.float32)  # Re(conj(F1) @ C)
        dk += tl.dot(g1i, ci, input_precision="ieee", out_dtype=tl.float32)
        tl.store(dk_ptr + (chunk * H + h) * Lk + n, dk * sqrt_N, mask=n < Lk)
