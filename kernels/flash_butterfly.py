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

Fused gating (GATED=True): y = post ⊙ conv(pre ⊙ u, k). The gates are read with the same masked pair loads as u
(pre right after u, post right before the store): no extra pass over memory. Backward, with g = post ⊙ dy:
        Zg = fwd(g pair);  dv = adj(Zg ⊙ conj(K));  du = pre ⊙ dv;  dpre = u ⊙ dv
        Zv = fwd(pre ⊙ u pair);  P += conj(Zv) ⊙ Zg  (dk);  dpost = dy ⊙ adj(Zv ⊙ K)  (conv recomputed, not stored)

Learned forward blocks (`learned_fwd_kernel`, `learned_bwd_kernel`): u's forward pass uses learned A1 (N1, N1),
A2 (N2, N2) (shared or per channel; twiddles fixed), k's spectrum and the inverse stay exact:
        y = Re(F^{-1}(K ⊙ ((A1 @ u) ⊙ tw) @ A2))[:L]   row by row (the official code's `ifft(...).real`)
A learned A(u) is not Hermitian, so the real-input trick no longer holds (packing rows 2p, 2p+1 as re/im would mix
the two batch elements): each row is its own real tile. The first dot of each pass sees real operands (2 real dots
instead of 4), so a pair of rows costs 24 real dots instead of the fixed kernel's 16: 1.5× the tensor-core work
of the plain kernel, the same HBM traffic. At A = DFT the output equals the plain kernel's to rounding.
Backward per row: Zg = F g; gZ = Zg ⊙ conj(K); gB = (gZ @ A2^H) ⊙ conj(tw); dv = Re(A1^H @ gB);
dA1 += gB @ v^T, dA2 += C^H @ gZ with C = (A1 @ v) ⊙ tw; per-program fp32 partial sums (n_chunks, H, 2, M, M)
reduced by PyTorch (deterministic; shared blocks also summed over H).

Decomposition used: N1 = 2^⌊log2(N)/2⌋, N2 = N/N1: 256 = 16·16, 512 = 16·32, 1024 = 32·32, 2048 = 32·64,
4096 = 64·64 — always two passes, every dot dimension ≥ 16 and a power of two.

Caveats (honest)
----------------
- Tested on CPU through the Triton interpreter and compiled on an H100 (triton 3.6; results/ and the README hold the
  timings). Registers and spills from ptxas for sm_90 (fp16, 8 warps, triton 3.8, no GPU) —
  registers / spill stores (bytes per thread) / shared memory:
      N = 1024: fwd 230/0/12 KB, fwd gated 255/0/12 KB, bwd (du, dk) 255/68/28 KB, bwd gated (all grads)
                255/280/28 KB, learned fwd 170/0/20 KB, learned bwd (all grads, gated) 255/1448/36 KB;
      N = 4096: fwd 255/624/52 KB, fwd gated 255/720/52 KB, bwd 255/2736/112 KB, bwd gated 255/4400/112 KB,
                learned fwd 255/540/80 KB, learned bwd (all) 255/5352/140 KB.
  On the H100, fewer warps per program were much faster than 8 (kernels.conv.TUNING: 2 warps up to N = 1024, 4 above;
  2 warps at N ≥ 2048 spill so badly that the kernel slows 30–60×). Each program keeps one tile in flight, so the
  kernel is latency-bound: 45% of peak HBM bandwidth at best (gated, N = 4096).
- fp16/bf16 inputs: intermediate spectra are rounded to the input dtype before each dot (fp32 accumulation), as
  tensor cores require; errors are a few ulps of the input dtype, larger than fp32 FFT conv. fp32 inputs use
  input_precision="ieee" (no TF32), i.e. no tensor cores: correct but not fast.
- bf16 `tl.dot` is wrong in the interpreter, so under TRITON_INTERPRET=1 bf16 inputs are multiplied with fp32 dots.
- Gates are fused; products with gates are taken in fp32 and rounded once at the store.
- N > 4096 is not in this file: kernels.conv dispatches it to kernels.three_pass (the three-pass algorithm).
- dk (and the learned blocks' gradients) are reduced across batch chunks through fp32 partial buffers summed by
  PyTorch (deterministic, no atomics).
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


@triton.jit
def _gate(xr, xi, g_ptr, b0, h, H, L, n, mask_n, B):
    """(xr, xi) ⊙ a gate's rows 2p (re) and 2p+1 (im), loaded like u (each row its own real gate); fp32."""
    gr, gi = _load_pair(g_ptr, b0, h, H, L, n, mask_n, B)
    return xr.to(tl.float32) * gr.to(tl.float32), xi.to(tl.float32) * gi.to(tl.float32)


@triton.jit
def _load_row(x_ptr, b, h, H, L, n, mask_n, B):
    """Row b of channel h as a real (N1, N2) tile in fp32 (zero beyond L and for b ≥ B)."""
    return tl.load(x_ptr + (b * H + h) * L + n, mask=mask_n & (b < B), other=0.0).to(tl.float32)


@triton.jit
def _store_row(x_ptr, y, b, h, H, L, n, mask_n, B):
    """Store the first L entries of a real (N1, N2) tile to row b of channel h."""
    tl.store(x_ptr + (b * H + h) * L + n, y.to(x_ptr.dtype.element_ty), mask=mask_n & (b < B))


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
    zr, zi = _cdot(cr.to(DOT), ci.to(DOT), a2r, a2i, PREC)  # (N1, N2)
    return cr, ci, zr, zi


@triton.jit
def _real_adj(xr, xi, f1r, f1i, f2r, f2i, twr, twi, DOT: tl.constexpr, PREC: tl.constexpr):
    """Re of `_monarch_adj` (fixed unitary inverse pass): the last dot keeps only the real part (4 + 2 real dots)."""
    er, ei = _cdot_conj_rhs(xr.to(DOT), xi.to(DOT), f2r, f2i, PREC)  # (N1, N2)
    cr = er * twr + ei * twi  # ⊙ conj(tw)
    ci = ei * twr - er * twi
    y = tl.dot(f1r, cr.to(DOT), input_precision=PREC, out_dtype=tl.float32)  # Re(conj(F1) @ C)
    y += tl.dot(f1i, ci.to(DOT), input_precision=PREC, out_dtype=tl.float32)
    return y


@triton.jit
def _dk_from_spectrum(Pr, Pi, dk_ptr, dft1_ptr, dft2_ptr, tw_ptr, chunk, h, H, Lk, n, sqrt_N,
                      N1: tl.constexpr, N2: tl.constexpr):
    """dk_partial[chunk, h] = √N · Re(adj(P))[:Lk] with fp32 operands (ieee): P sums many products."""
    g1r, g1i, g2r, g2i, twr, twi = _load_plan(dft1_ptr, dft2_ptr, tw_ptr, N1, N2, tl.float32)
    dk = _real_adj(Pr, Pi, g1r, g1i, g2r, g2i, twr, twi, tl.float32, "ieee")
    tl.store(dk_ptr + (chunk * H + h) * Lk + n, dk * sqrt_N, mask=n < Lk)


# ---------------------------------------------------------------------------------------------------------------
# Fixed-FFT kernels (real-input trick: rows 2p, 2p+1 packed as re/im). Grid: one program per (channel h, chunk of
# batch pairs), flattened: pid = h·n_chunks + chunk. GATED: y = post ⊙ conv(pre ⊙ u), gates loaded like u.
# ---------------------------------------------------------------------------------------------------------------


@triton.jit
def flash_butterfly_fwd_kernel(
    # pointers
    u_ptr, y_ptr, pre_ptr, post_ptr, k_f_ptr, dft1_ptr, dft2_ptr, tw_ptr,
    # sizes
    B, H, L, n_chunks, pairs_per_prog,
    # meta-parameters
    N1: tl.constexpr, N2: tl.constexpr, DOT_FP32: tl.constexpr, PREC: tl.constexpr, GATED: tl.constexpr,
):
    """y (B, H, L) = [post ⊙] first L of circular_N(pad([pre ⊙] u), k); u, gates, y contiguous (B, H, L)."""
    N = N1 * N2  # constexpr
    DOT = tl.float32 if DOT_FP32 else u_ptr.dtype.element_ty  # tl.dot operand dtype (constexpr)
    pid = tl.program_id(0).to(tl.int64)
    h = pid // n_chunks
    chunk = pid % n_chunks
    n = tl.arange(0, N1)[:, None] * N2 + tl.arange(0, N2)[None, :]  # (N1, N2): time n1·N2+n2 / freq slot f1·N2+f2
    mask_n = n < L
    f1r, f1i, f2r, f2i, twr, twi = _load_plan(dft1_ptr, dft2_ptr, tw_ptr, N1, N2, DOT)
    Kr = tl.load(k_f_ptr + h * 2 * N + n)  # (N1, N2) fp32, k_f (H, 2, N) permuted order
    Ki = tl.load(k_f_ptr + h * 2 * N + N + n)
    for p in range(0, pairs_per_prog):
        b0 = 2 * (chunk * pairs_per_prog + p)
        ur, ui = _load_pair(u_ptr, b0, h, H, L, n, mask_n, B)
        if GATED:
            ur, ui = _gate(ur, ui, pre_ptr, b0, h, H, L, n, mask_n, B)  # v = pre ⊙ u
        zr, zi = _monarch_fwd(ur, ui, f1r, f1i, f2r, f2i, twr, twi, DOT, PREC)
        yr = zr * Kr - zi * Ki  # Z ⊙ K
        yi = zr * Ki + zi * Kr
        yr, yi = _monarch_adj(yr, yi, f1r, f1i, f2r, f2i, twr, twi, DOT, PREC)
        if GATED:
            yr, yi = _gate(yr, yi, post_ptr, b0, h, H, L, n, mask_n, B)  # y = post ⊙ conv(v, k)
        _store_pair(y_ptr, yr, yi, b0, h, H, L, n, mask_n, B)


@triton.jit
def flash_butterfly_bwd_kernel(
    # pointers
    u_ptr, dy_ptr, pre_ptr, post_ptr, du_ptr, dpre_ptr, dpost_ptr, dk_ptr, k_f_ptr, dft1_ptr, dft2_ptr, tw_ptr,
    # sizes
    B, H, L, Lk, n_chunks, pairs_per_prog, sqrt_N,
    # meta-parameters
    N1: tl.constexpr, N2: tl.constexpr, DOT_FP32: tl.constexpr, PREC: tl.constexpr, GATED: tl.constexpr,
    COMPUTE_DU: tl.constexpr, COMPUTE_DK: tl.constexpr, COMPUTE_DPRE: tl.constexpr, COMPUTE_DPOST: tl.constexpr,
):
    """du, dpre, dpost (B, H, L) in u's dtype; dk_partial (n_chunks, H, Lk) fp32 = Σ_{b in chunk} corr(g_b, v_b)."""
    N = N1 * N2  # constexpr
    DOT = tl.float32 if DOT_FP32 else u_ptr.dtype.element_ty  # tl.dot operand dtype (constexpr)
    NEED_DV: tl.constexpr = COMPUTE_DU or COMPUTE_DPRE  # gradient of v = pre ⊙ u
    NEED_ZV: tl.constexpr = COMPUTE_DK or COMPUTE_DPOST  # v's spectrum, recomputed
    pid = tl.program_id(0).to(tl.int64)
    h = pid // n_chunks
    chunk = pid % n_chunks
    n = tl.arange(0, N1)[:, None] * N2 + tl.arange(0, N2)[None, :]  # (N1, N2)
    mask_n = n < L
    f1r, f1i, f2r, f2i, twr, twi = _load_plan(dft1_ptr, dft2_ptr, tw_ptr, N1, N2, DOT)
    Kr = tl.load(k_f_ptr + h * 2 * N + n)  # (N1, N2) fp32
    Ki = tl.load(k_f_ptr + h * 2 * N + N + n)
    Pr = tl.zeros((N1, N2), dtype=tl.float32)  # Σ conj(Zv) ⊙ Zg over the chunk's pairs
    Pi = tl.zeros((N1, N2), dtype=tl.float32)
    for p in range(0, pairs_per_prog):
        b0 = 2 * (chunk * pairs_per_prog + p)
        dyr, dyi = _load_pair(dy_ptr, b0, h, H, L, n, mask_n, B)
        gr, gi = dyr, dyi
        if GATED:
            gr, gi = _gate(gr, gi, post_ptr, b0, h, H, L, n, mask_n, B)  # g = post ⊙ dy: the gradient of conv
        gr, gi = _monarch_fwd(gr, gi, f1r, f1i, f2r, f2i, twr, twi, DOT, PREC)  # Zg
        if NEED_DV:
            xr = gr * Kr + gi * Ki  # Zg ⊙ conj(K)
            xi = gi * Kr - gr * Ki
            xr, xi = _monarch_adj(xr, xi, f1r, f1i, f2r, f2i, twr, twi, DOT, PREC)  # dv = corr(g, k)
            if GATED:
                if COMPUTE_DU:
                    wr, wi = _gate(xr, xi, pre_ptr, b0, h, H, L, n, mask_n, B)  # du = pre ⊙ dv
                    _store_pair(du_ptr, wr, wi, b0, h, H, L, n, mask_n, B)
                if COMPUTE_DPRE:
                    wr, wi = _gate(xr, xi, u_ptr, b0, h, H, L, n, mask_n, B)  # dpre = u ⊙ dv
                    _store_pair(dpre_ptr, wr, wi, b0, h, H, L, n, mask_n, B)
            else:
                _store_pair(du_ptr, xr, xi, b0, h, H, L, n, mask_n, B)
        if NEED_ZV:
            ur, ui = _load_pair(u_ptr, b0, h, H, L, n, mask_n, B)
            if GATED:
                ur, ui = _gate(ur, ui, pre_ptr, b0, h, H, L, n, mask_n, B)  # v = pre ⊙ u
            ur, ui = _monarch_fwd(ur, ui, f1r, f1i, f2r, f2i, twr, twi, DOT, PREC)  # Zv
            if COMPUTE_DK:
                Pr += ur * gr + ui * gi  # conj(Zv) ⊙ Zg
                Pi += ur * gi - ui * gr
            if COMPUTE_DPOST:
                yr = ur * Kr - ui * Ki  # Zv ⊙ K
                yi = ur * Ki + ui * Kr
                yr, yi = _monarch_adj(yr, yi, f1r, f1i, f2r, f2i, twr, twi, DOT, PREC)  # conv(v, k), recomputed
                yr, yi = _gate(yr, yi, dy_ptr, b0, h, H, L, n, mask_n, B)  # dpost = dy ⊙ conv(v, k)
                _store_pair(dpost_ptr, yr, yi, b0, h, H, L, n, mask_n, B)
    if COMPUTE_DK:  # one inverse pass for the whole chunk: Re of the inverse of Σ conj(Zv) ⊙ Zg is corr_a + corr_b
        _dk_from_spectrum(Pr, Pi, dk_ptr, dft1_ptr, dft2_ptr, tw_ptr, chunk, h, H, Lk, n, sqrt_N, N1, N2)


# ---------------------------------------------------------------------------------------------------------------
# Learned-forward kernels: u's forward transform uses learned blocks A1 (N1, N1), A2 (N2, N2) at blk*_ptr +
# h·blk*_stride (stride 0: shared by all channels); k's spectrum and the inverse stay exact. The output is
# y = Re(F^{-1}(K ⊙ A(u))) row by row: A(u) is not Hermitian, so two rows cannot share one complex pass (the
# real-input trick would mix batch elements); each row is a real tile (the first dot of each pass is half price).
# Grid: one program per (channel h, chunk of rows).
# ---------------------------------------------------------------------------------------------------------------


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
):
    """y (B, H, L) = [post ⊙] Re(F^{-1}(K ⊙ A([pre ⊙] u)))[:L] row by row; A = learned Monarch pass."""
    N = N1 * N2  # constexpr
    DOT = tl.float32 if DOT_FP32 else u_ptr.dtype.element_ty  # tl.dot operand dtype (constexpr)
    pid = tl.program_id(0).to(tl.int64)
    h = pid // n_chunks
    chunk = pid % n_chunks
    n = tl.arange(0, N1)[:, None] * N2 + tl.arange(0, N2)[None, :]  # (N1, N2)
    mask_n = n < L
    f1r, f1i, f2r, f2i, twr, twi = _load_plan(dft1_ptr, dft2_ptr, tw_ptr, N1, N2, DOT)  # fixed: the inverse
    a1r, a1i = _load_block(blk1_ptr + h * blk1_stride, N1, DOT, False)  # learned A1, A2
    a2r, a2i = _load_block(blk2_ptr + h * blk2_stride, N2, DOT, False)
    Kr = tl.load(k_f_ptr + h * 2 * N + n)  # (N1, N2) fp32
    Ki = tl.load(k_f_ptr + h * 2 * N + N + n)
    for r in range(0, rows_per_prog):
        b = chunk * rows_per_prog + r
        v = _load_row(u_ptr, b, h, H, L, n, mask_n, B)
        if GATED:
            v = v * _load_row(pre_ptr, b, h, H, L, n, mask_n, B)
        _, _, zr, zi = _real_fwd(v, a1r, a1i, a2r, a2i, twr, twi, DOT, PREC)
        yr = zr * Kr - zi * Ki  # Z ⊙ K
        yi = zr * Ki + zi * Kr
        y = _real_adj(yr, yi, f1r, f1i, f2r, f2i, twr, twi, DOT, PREC)
        if GATED:
            y = y * _load_row(post_ptr, b, h, H, L, n, mask_n, B)
        _store_row(y_ptr, y, b, h, H, L, n, mask_n, B)


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
    COMPUTE_DBLK: tl.constexpr,
):
    """du, dpre, dpost (B, H, L); dk_partial (n_chunks, H, Lk), dblk1/2_partial (n_chunks, H, 2, M, M) fp32."""
    N = N1 * N2  # constexpr
    DOT = tl.float32 if DOT_FP32 else u_ptr.dtype.element_ty  # tl.dot operand dtype (constexpr)
    NEED_DV: tl.constexpr = COMPUTE_DU or COMPUTE_DPRE or COMPUTE_DBLK  # gradient of v = pre ⊙ u
    NEED_ZV: tl.constexpr = COMPUTE_DK or COMPUTE_DPOST or COMPUTE_DBLK  # v's spectrum, recomputed
    pid = tl.program_id(0).to(tl.int64)
    h = pid // n_chunks
    chunk = pid % n_chunks
    n = tl.arange(0, N1)[:, None] * N2 + tl.arange(0, N2)[None, :]  # (N1, N2)
    mask_n = n < L
    f1r, f1i, f2r, f2i, twr, twi = _load_plan(dft1_ptr, dft2_ptr, tw_ptr, N1, N2, DOT)
    a1r, a1i = _load_block(blk1_ptr + h * blk1_stride, N1, DOT, False)  # A1
    a2r, a2i = _load_block(blk2_ptr + h * blk2_stride, N2, DOT, False)  # A2
    t1r, t1i = _load_block(blk1_ptr + h * blk1_stride, N1, DOT, True)  # A1^T (conjugated inside the dots)
    t2r, t2i = _load_block(blk2_ptr + h * blk2_stride, N2, DOT, True)  # A2^T
    Kr = tl.load(k_f_ptr + h * 2 * N + n)  # (N1, N2) fp32
    Ki = tl.load(k_f_ptr + h * 2 * N + N + n)
    Pr = tl.zeros((N1, N2), dtype=tl.float32)  # Σ conj(Zv) ⊙ Zg → dk
    Pi = tl.zeros((N1, N2), dtype=tl.float32)
    G1r = tl.zeros((N1, N1), dtype=tl.float32)  # Σ gB @ v^T → dA1
    G1i = tl.zeros((N1, N1), dtype=tl.float32)
    G2r = tl.zeros((N2, N2), dtype=tl.float32)  # Σ C^H @ gZ → dA2
    G2i = tl.zeros((N2, N2), dtype=tl.float32)
    for r in range(0, rows_per_prog):
        b = chunk * rows_per_prog + r
        dy = _load_row(dy_ptr, b, h, H, L, n, mask_n, B)
        g = dy
        if GATED:
            g = g * _load_row(post_ptr, b, h, H, L, n, mask_n, B)  # g = post ⊙ dy
        _, _, gr, gi = _real_fwd(g, f1r, f1i, f2r, f2i, twr, twi, DOT, PREC)  # Zg = F g: gradient of Y = Z ⊙ K
        u = _load_row(u_ptr, b, h, H, L, n, mask_n, B)  # (dead loads are removed when no output needs them)
        v = u
        pre = u
        if GATED:
            pre = _load_row(pre_ptr, b, h, H, L, n, mask_n, B)
            v = u * pre  # v = pre ⊙ u
        if NEED_DV:
            xr = gr * Kr + gi * Ki  # gZ = Zg ⊙ conj(K)
            xi = gi * Kr - gr * Ki
            er, ei = _cdot_conj_rhs(xr.to(DOT), xi.to(DOT), t2r, t2i, PREC)  # gZ @ A2^H   (N1, N2)
            br = er * twr + ei * twi  # gB = (gZ @ A2^H) ⊙ conj(tw)
            bi = ei * twr - er * twi
            dv = tl.dot(t1r, br.to(DOT), input_precision=PREC, out_dtype=tl.float32)  # Re(A1^H @ gB)
            dv += tl.dot(t1i, bi.to(DOT), input_precision=PREC, out_dtype=tl.float32)
            if GATED:
                if COMPUTE_DU:
                    _store_row(du_ptr, dv * pre, b, h, H, L, n, mask_n, B)  # du = pre ⊙ dv
                if COMPUTE_DPRE:
                    _store_row(dpre_ptr, dv * u, b, h, H, L, n, mask_n, B)  # dpre = u ⊙ dv
            else:
                if COMPUTE_DU:
                    _store_row(du_ptr, dv, b, h, H, L, n, mask_n, B)
        if NEED_ZV:
            cr, ci, zr, zi = _real_fwd(v, a1r, a1i, a2r, a2i, twr, twi, DOT, PREC)  # C, Zv = C @ A2
            if COMPUTE_DK:
                Pr += zr * gr + zi * gi  # conj(Zv) ⊙ Zg
                Pi += zr * gi - zi * gr
            if COMPUTE_DPOST:
                yr = zr * Kr - zi * Ki  # Zv ⊙ K
                yi = zr * Ki + zi * Kr
                c = _real_adj(yr, yi, f1r, f1i, f2r, f2i, twr, twi, DOT, PREC)  # conv, recomputed
                _store_row(dpost_ptr, c * dy, b, h, H, L, n, mask_n, B)  # dpost = dy ⊙ conv
            if COMPUTE_DBLK:
                qr, qi = _cdot_conj_lhs(tl.trans(cr.to(DOT)), tl.trans(ci.to(DOT)), xr.to(DOT), xi.to(DOT),
                                        PREC)  # C^H @ gZ   (N2, N1)·(N1, N2)
                G2r += qr
                G2i += qi
                vt = tl.trans(v.to(DOT))  # (N2, N1)
                G1r += tl.dot(br.to(DOT), vt, input_precision=PREC, out_dtype=tl.float32)  # gB @ v^T
                G1i += tl.dot(bi.to(DOT), vt, input_precision=PREC, out_dtype=tl.float32)
    if COMPUTE_DK:
        _dk_from_spectrum(Pr, Pi, dk_ptr, dft1_ptr, dft2_ptr, tw_ptr, chunk, h, H, Lk, n, sqrt_N, N1, N2)
    if COMPUTE_DBLK:
        r1 = tl.arange(0, N1)
        r2 = tl.arange(0, N2)
        i11 = r1[:, None] * N1 + r1[None, :]  # (N1, N1)
        i22 = r2[:, None] * N2 + r2[None, :]  # (N2, N2)
        base1 = (chunk * H + h) * 2 * N1 * N1
        base2 = (chunk * H + h) * 2 * N2 * N2
        tl.store(dblk1_ptr + base1 + i11, G1r)
        tl.store(dblk1_ptr + base1 + N1 * N1 + i11, G1i)
        tl.store(dblk2_ptr + base2 + i22, G2r)
        tl.store(dblk2_ptr + base2 + N2 * N2 + i22, G2i)
