r"""The IO and FLOP model of an FFT convolution: bytes moved to and from GPU memory (HBM), unfused vs fused.

Why FlashButterfly can be faster although it does *more* arithmetic: a long convolution is memory-bound. The unfused
PyTorch path (the baseline of kernels.bench, `irfft(rfft(u.float(), n=N) · rfft(k, n=N), n=N)[..., :L].to(dtype)`)
launches one kernel per step, and each step reads its input from HBM and writes its output back; the fused kernel
reads u and k_f once and writes y once, everything in between stays on chip.

What is counted (the model; not a measurement)
----------------------------------------------
Every step reads each input element once and writes each output element once — a lower bound on HBM traffic (no
cache misses counted twice, no cache hits subtracted). The unfused steps follow what PyTorch's CUDA path dispatches
(aten SpectralOps.cpp / PadNd.cpp):

  - `u.float()`: a cast kernel when u is fp16/bf16 (read L·s, write 4L per row; s = bytes per element of u).
  - `rfft(x, n=N)` with L < N pads first with `constant_pad_nd`: fill N zeros, then copy L values (read 4L, write
    4(N+L)); cuFFT then reads 4N and writes 8(N/2+1) (one pass: cuFFT may take several passes at large N, so this is
    a lower bound).
  - `u_f · k_f`: reads both spectra, writes one (k_f read once; broadcast over B assumed cached).
  - `irfft`: cuFFT's complex-to-real transform may overwrite its input, so PyTorch clones it first (read and write
    8(N/2+1)); cuFFT reads 8(N/2+1), writes 4N; the 1/N normalisation is a separate in-place multiply (read, write 4N).
  - `[..., :L].to(dtype)`: a cast kernel when u is fp16/bf16 (read 4L, write L·s); for fp32 the slice is a free view.
  - k's spectrum (include_k): pad + rfft of k, per call, as the baseline does.

The fused kernel (kernels/flash_butterfly.py) reads u (masked loads: the zero padding is free), reads k_f[h] once per
program (n_chunks programs per channel), reads the DFT/twiddle tables (once: a few KB, L2-resident) and writes y;
gated, it reads both gates too, and writes w = conv(pregate ⊙ u, k) when postgate needs a gradient. Its k_f is made
per call: counted by default as one Triton kernel that reads k (H, Lk) fp32 once and writes k_f (H, 2, N) fp32 once
(`k_f_kernel_io`; issue 20, that kernel is being written), or, `k_f_prep="torch"`, as the PyTorch pipeline of
kernels.launch.k_f_planes today (pad, FFT, gather to the kernel's order, split re/im), in the same lower-bound way.

The backward (`flash_butterfly_bwd_io`; `fwd_bwd_io` adds the forward) is two kernels: the du kernel, the forward
kernel run on dy with conj(K) (reads dy, the gates, u for dpregate, w for dpostgate, k_f once per program; writes
du, dpregate, dpostgate), and the dk kernel (reads dy and u, and the gates; writes n_chunks fp32 partial sums of
dk, which PyTorch sums when n_chunks > 1). k_f is the forward's (saved, not remade).

The three-pass kernel (kernels/three_pass.py, N > 4096) moves an intermediate between its passes (`three_pass_io`):
each batch row's outer rows f0 = 0 … N0/2 (R = N0/2 + 1 of N0), 2·R·M values per row of N points, in u's dtype for
fp16/bf16 (4·R·M bytes) with fp32 factors per block and row: with fp16 u and y, u + y + four buffer transfers
make 2 + 4·2·(1 + 2/N0) + 2 = 13 bytes per element at N0 = 16 (→ 12 as N0 grows) where fp32 buffers made 22 (→ 20);
its k_f is rfft(k) plus one gather kernel over the stored rows only.

What issue 14's per-row design costs against the packed-pair design it replaced (two batch rows as one complex
sequence; `packed=True` / method="monarch_pairs" keep its numbers):
  - fused kernel, HBM bytes: unchanged (u read once, y written once, k_f once per program; the DFT tables are the
    half-length ones, smaller);
  - fused kernel, FLOPs per row: 8·N·(N1' + N2') in the dots, (N1', N2') = half_sizes(N), against
    8·N·(N1 + N2), (N1, N2) = default_sizes(N): 0.67–0.75× (the half-length transforms have smaller blocks), plus
    23 FLOPs per point of pointwise work (split, ⊙ k_f at f and f + N/2, merge) against 3, and four `tl.gather` of
    N/2 values per forward transform through shared memory; on tensor cores from N = 512, fp32 FMAs at N = 256;
  - three-pass kernel: the intermediate buffers and the inner convolutions of pass 2 grow by R/(N0/2) = 1 + 2/N0
    (+12.5 % at N ≤ 64K where N0 = 16, +0.8 % at 1M), the outer passes' dot work per row is unchanged.

FLOPs: a radix-2 complex FFT costs 5·N·log2(N) real FLOPs (the textbook count); a real FFT about half. A Monarch FFT
of sizes (N1, …, Nm) does, per factor, N/N_i dense complex (N_i × N_i) matrix-vector products = 8·N·N_i real FLOPs,
plus 6·N per twiddle multiply between factors — more FLOPs, but on tensor cores.
"""
from __future__ import annotations

import dataclasses
import math

import torch

from lconv.butterfly import default_sizes, half_sizes, three_pass_sizes

from .launch import outer_blocks

# Bytes per element of u / y.
DTYPE_BYTES = {torch.float32: 4, torch.float16: 2, torch.bfloat16: 2}

# Approximate datasheet peaks of an H100 SXM (dense, no sparsity): HBM3 bandwidth, fp16 tensor cores, fp32 CUDA cores.
H100_SXM = {"hbm_bytes_per_s": 3.35e12, "fp16_tensor_flops": 989e12, "fp32_flops": 67e12}


@dataclasses.dataclass(frozen=True)
class Transfer:
    """One step of an FFT convolution and the bytes it reads from and writes to GPU memory."""

    step: str
    read: int
    write: int

    @property
    def total(self) -> int:
        return self.read + self.write



def _split(N: int, sizes) -> tuple[int, ...]:
    """`sizes` as a tuple (default: the kernel's two-factor split of N); raise unless they multiply to N."""
    sizes = default_sizes(N) if sizes is None else tuple(int(x) for x in sizes)
    if math.prod(sizes) != N:
        raise ValueError(f"sizes {sizes} multiply to {math.prod(sizes)}, not N={N}")
    return sizes

def _dtype_bytes(dtype) -> int:
    if dtype not in DTYPE_BYTES:
        raise ValueError(f"dtype={dtype}: use torch.float32, torch.float16 or torch.bfloat16")
    return DTYPE_BYTES[dtype]


def _check_sizes(N, B, H, L, Lk) -> tuple[int, int]:
    """Validate the sizes; return (L, Lk) with the causal defaults L = Lk = N/2."""
    for name, value in (("N", N), ("B", B), ("H", H)):
        if not isinstance(value, int) or value < 1:
            raise ValueError(f"{name}={value!r} must be a positive int")
    if N < 2 or N & (N - 1):
        raise ValueError(f"FFT size N={N} must be a power of two ≥ 2")
    L = N // 2 if L is None else L
    Lk = L if Lk is None else Lk
    if not (1 <= L <= N and 1 <= Lk <= N):
        raise ValueError(f"L={L} and Lk={Lk} must lie in 1 … N={N} (L = N/2 gives a causal convolution)")
    return L, Lk


def _pad_then_rfft(rows: int, L: int, N: int, what: str) -> list[Transfer]:
    """torch.fft.rfft(x (rows, L) fp32, n=N) on CUDA: constant_pad_nd (when L < N), then one cuFFT r2c pass."""
    out = []
    if L < N:
        out.append(Transfer(f"pad {what} to N (fill zeros, copy)", 4 * rows * L, 4 * rows * (N + L)))
    out.append(Transfer(f"rfft({what}) (cuFFT r2c)", 4 * rows * N, 8 * rows * (N // 2 + 1)))
    return out


def torch_fft_conv_io(N: int, B: int, H: int, dtype=torch.float16, L: int | None = None, Lk: int | None = None,
                      include_k: bool = True) -> list[Transfer]:
    """HBM transfers of the unfused PyTorch FFT convolution (kernels.bench.torch_fft_conv), forward, step by step.

    u (B, H, L) of `dtype`, k (H, Lk) fp32, FFT size N; L = Lk = N/2 by default (causal).
    """
    L, Lk = _check_sizes(N, B, H, L, Lk)
    s = _dtype_bytes(dtype)
    P, M = B * H, N // 2 + 1  # rows of u; length of a one-sided spectrum
    steps = []
    if s != 4:
        steps.append(Transfer("u.float() (cast)", s * P * L, 4 * P * L))
    steps += _pad_then_rfft(P, L, N, "u")
    if include_k:
        steps += _pad_then_rfft(H, Lk, N, "k")
    steps.append(Transfer("u_f ⊙ k_f", 8 * P * M + 8 * H * M, 8 * P * M))
    steps.append(Transfer("clone spectrum (cuFFT c2r overwrites its input)", 8 * P * M, 8 * P * M))
    steps.append(Transfer("irfft (cuFFT c2r)", 8 * P * M, 4 * P * N))
    steps.append(Transfer("scale by 1/N (in place)", 4 * P * N, 4 * P * N))
    if s != 4:
        steps.append(Transfer("y[..., :L].to(dtype) (cast)", 4 * P * L, s * P * L))
    return steps


def _k_spectrum_io(N: int, H: int, Lk: int) -> list[Transfer]:
    """k → k_f (H, 2, N) fp32 planes in PyTorch, per call: pad, FFT, one gather to the kernel's order, split re/im."""
    steps = []
    if Lk < N:
        steps.append(Transfer("pad k to N (fill zeros, copy)", 4 * H * Lk, 4 * H * (N + Lk)))
    return steps + [Transfer("fft(k) (cuFFT r2c, one half)", 4 * H * N, 8 * H * (N // 2 + 1)),
                    Transfer("fft(k) (fill the other half by symmetry)", 8 * H * (N // 2 - 1), 8 * H * (N // 2 - 1)),
                    Transfer("k_f[..., perm] (gather to permuted order, int64 index)", 8 * H * N + 8 * N, 8 * H * N),
                    Transfer("k_f re/im planes (stack)", 8 * H * N, 8 * H * N)]


K_F_PREP = ("kernel", "torch")  # how the fused path makes k_f: one Triton kernel, or PyTorch (k_f_planes, today)


def k_f_kernel_io(N: int, H: int, Lk: int) -> list[Transfer]:
    """k → k_f (H, 2, N) fp32 planes by one Triton kernel: k (H, Lk) fp32 read once, k_f written once."""
    return [Transfer("k → k_f (one Triton kernel)", 4 * H * Lk, 8 * H * N)]


def _tables(N: int, sizes) -> tuple[int, int]:
    """(N1, N2) of the half-length tile, N1·N2 = N/2 (default: the kernel's half_sizes(N))."""
    if sizes is None:
        if N < 8:
            raise ValueError(f"FFT size N={N}: the fused kernel's half-length trick needs N ≥ 8")
        sizes = half_sizes(N)
    return _split(N // 2, sizes)


def _table_bytes(N1: int, N2: int) -> int:
    """F1, F2, the twiddles and ω_N^f as fp32 re/im planes (read once per launch: a few KB, L2-resident)."""
    return 8 * (N1 * N1 + N2 * N2 + 2 * N1 * N2)


def _check_chunks(n_chunks) -> None:
    if not isinstance(n_chunks, int) or n_chunks < 1:
        raise ValueError(f"n_chunks={n_chunks!r} must be a positive int (programs per channel)")


def flash_butterfly_io(N: int, B: int, H: int, dtype=torch.float16, L: int | None = None, Lk: int | None = None,
                       include_k: bool = True, n_chunks: int = 1, sizes: tuple[int, int] | None = None,
                       gated: bool = False, save_w: bool = False, k_f_prep: str = "kernel") -> list[Transfer]:
    """HBM transfers of the fused FlashButterfly forward (kernels.flash_butterfly: lconv::flash_butterfly_fwd), step
    by step.

    n_chunks: programs per channel (each loads its channel's k_f); sizes: (N1, N2) of the DFT tables, N1·N2 = N/2
    (default: the kernel's half_sizes(N)); the tables are F1, F2, the twiddles and ω_N^f. gated: pregate and
    postgate read too; save_w: w = conv(pregate ⊙ u, k) written for the backward (when postgate needs a gradient).
    k_f_prep (include_k): "kernel", one Triton kernel (k read once, k_f written once: `k_f_kernel_io`, what the
    fused path's k_f costs once k_f_planes is that kernel), or "torch", the PyTorch pipeline of
    kernels.launch.k_f_planes (pad, FFT, gather, stack).
    """
    L, Lk = _check_sizes(N, B, H, L, Lk)
    s = _dtype_bytes(dtype)
    _check_chunks(n_chunks)
    if k_f_prep not in K_F_PREP:
        raise ValueError(f"k_f_prep={k_f_prep!r}: use one of {K_F_PREP}")
    N1, N2 = _tables(N, sizes)
    P = B * H
    steps = ((k_f_kernel_io if k_f_prep == "kernel" else _k_spectrum_io)(N, H, Lk)) if include_k else []
    steps.append(Transfer("fused kernel: read u", s * P * L, 0))
    if gated:
        steps.append(Transfer("fused kernel: read pregate, postgate", 2 * s * P * L, 0))
    steps += [Transfer("fused kernel: read k_f (once per program)", 8 * H * N * n_chunks, 0),
              Transfer("fused kernel: read DFT + twiddle tables", _table_bytes(N1, N2), 0),
              Transfer("fused kernel: write y", 0, s * P * L)]
    if gated and save_w:
        steps.append(Transfer("fused kernel: write w = conv(pregate ⊙ u, k) (for dpostgate)", 0, s * P * L))
    return steps


def flash_butterfly_bwd_io(N: int, B: int, H: int, dtype=torch.float16, L: int | None = None, Lk: int | None = None,
                           gated: bool = False, need=None, n_chunks: int = 1,
                           sizes: tuple[int, int] | None = None) -> list[Transfer]:
    """HBM transfers of the fused backward, step by step: the du kernel (the forward kernel on dy with conj(K):
    du = pregate ⊙ corr(postgate ⊙ dy, k), dpregate = u ⊙ corr(…), dpostgate = dy ⊙ w), then the dk kernel (per row
    two forward transforms of postgate ⊙ dy and pregate ⊙ u, one inverse per program into n_chunks fp32 partial sums
    of dk, summed by PyTorch when n_chunks > 1). k_f comes from the forward (no new k → k_f).

    need: (du, dk, dpregate, dpostgate) flags, default all that exist (the gates' only when gated).
    """
    L, Lk = _check_sizes(N, B, H, L, Lk)
    s = _dtype_bytes(dtype)
    _check_chunks(n_chunks)
    N1, N2 = _tables(N, sizes)
    need_du, need_dk, need_dpre, need_dpost = (True, True, gated, gated) if need is None else need
    need_dpre, need_dpost = gated and need_dpre, gated and need_dpost
    row = s * B * H * L  # bytes of one (B, H, L) tensor
    steps = []
    conv = need_du or need_dpre
    if conv or need_dpost:
        steps.append(Transfer("du kernel: read dy", row, 0))
        if conv and gated:
            steps.append(Transfer("du kernel: read postgate", row, 0))
        if need_du and gated:
            steps.append(Transfer("du kernel: read pregate", row, 0))
        if need_dpre:
            steps.append(Transfer("du kernel: read u (for dpregate)", row, 0))
        if need_dpost:
            steps.append(Transfer("du kernel: read w (for dpostgate)", row, 0))
        if conv:
            steps += [Transfer("du kernel: read k_f (once per program)", 8 * H * N * n_chunks, 0),
                      Transfer("du kernel: read DFT + twiddle tables", _table_bytes(N1, N2), 0)]
        for flag, name in ((need_du, "du"), (need_dpre, "dpregate"), (need_dpost, "dpostgate")):
            if flag:
                steps.append(Transfer(f"du kernel: write {name}", 0, row))
    if need_dk:
        steps.append(Transfer("dk kernel: read dy, u", 2 * row, 0))
        if gated:
            steps.append(Transfer("dk kernel: read postgate, pregate", 2 * row, 0))
        steps += [Transfer("dk kernel: read DFT + twiddle tables", _table_bytes(N1, N2), 0),
                  Transfer("dk kernel: write dk partial sums (fp32)", 0, 4 * n_chunks * H * Lk)]
        if n_chunks > 1:
            steps.append(Transfer("sum dk over chunks (PyTorch)", 4 * n_chunks * H * Lk, 4 * H * Lk))
    return steps


def fwd_bwd_io(N: int, B: int, H: int, dtype=torch.float16, L: int | None = None, Lk: int | None = None,
               gated: bool = False, need=None, include_k: bool = True, n_chunks: int = 1,
               k_f_prep: str = "kernel") -> list[Transfer]:
    """Forward (k → k_f, the fused kernel, + w when dpostgate is needed) then backward (du kernel, dk kernel)."""
    need = (True, True, gated, gated) if need is None else tuple(need)
    fwd = flash_butterfly_io(N, B, H, dtype, L, Lk, include_k, n_chunks, gated=gated,
                             save_w=gated and bool(need[3]), k_f_prep=k_f_prep)
    return fwd + flash_butterfly_bwd_io(N, B, H, dtype, L, Lk, gated, need, n_chunks)


def three_pass_io(N: int, B: int, H: int, dtype=torch.float16, L: int | None = None, Lk: int | None = None,
                  include_k: bool = True, packed: bool = False) -> list[Transfer]:
    """HBM transfers of the three-pass forward (kernels.three_pass: N = 8192 … 2^20), step by step.

    Per batch row (packed=False, the kernel) the intermediate holds the outer rows it keeps, R = N0/2 + 1 rows of M
    points, in u's dtype for fp16/bf16 (fp32 for fp32) with fp32 factors per pass-1 column block and per pass-2 row;
    k_f is rfft(k) plus one gather kernel, the stored rows' segments only (R·M points). packed=True: the design it
    replaced (two rows per complex sequence, all N0 rows per pair, fp32 buffers, k_f by the PyTorch pipeline).
    """
    L, Lk = _check_sizes(N, B, H, L, Lk)
    s = _dtype_bytes(dtype)
    N0, M1, M2 = three_pass_sizes(N)
    M, R = M1 * M2, N0 // 2 + 1
    if packed:
        buf = 8 * H * -(-B // 2) * N0 * M  # bytes of one complex fp32 buffer
        steps = _k_spectrum_io(N, H, Lk) if include_k else []
        return steps + [Transfer("pass 1: read u", s * B * H * L, 0),
                        Transfer("pass 1: write the outer spectrum", 0, buf),
                        Transfer("pass 2: read and rewrite it in place", buf, buf),
                        Transfer("pass 2: read k_f", 8 * H * N, 0),
                        Transfer("pass 3: read it", buf, 0),
                        Transfer("pass 3: write y", 0, s * B * H * L),
                        Transfer("passes 1, 3: read the outer twiddles (L2 in practice)", 2 * 8 * N0 * M, 0)]
    buf = 2 * s * B * H * R * M  # complex planes in the buffer's dtype (u's; fp32 for fp32)
    blocks, rows = (4 * B * H * (M // outer_blocks(N0)["BM"]), 4 * B * H * R) if s < 4 else (0, 0)  # fp32 factors
    steps = []
    if include_k:
        if Lk < N:
            steps.append(Transfer("pad k to N (fill zeros, copy)", 4 * H * Lk, 4 * H * (N + Lk)))
        steps += [Transfer("rfft(k) (cuFFT r2c)", 4 * H * N, 8 * H * (N // 2 + 1)),
                  Transfer("k_f: one gather kernel (Hermitian fill, permutation, re/im split)",
                           8 * H * R * M + 4 * R * M, 8 * H * R * M)]
    return steps + [Transfer("pass 1: read u", s * B * H * L, 0),
                    Transfer("pass 1: write the outer spectrum", 0, buf + blocks),
                    Transfer("pass 2: read and rewrite it in place", buf + blocks, buf + rows),
                    Transfer("pass 2: read k_f", 8 * H * R * M, 0),
                    Transfer("pass 3: read it", buf + rows, 0),
                    Transfer("pass 3: write y", 0, s * B * H * L),
                    Transfer("passes 1, 2: read the outer twiddles (L2 in practice)", 8 * N0 * M + 8 * H * R * M, 0)]


def total_bytes(steps: list[Transfer]) -> int:
    """Bytes read plus bytes written over all steps."""
    return sum(t.total for t in steps)


def io_ratio(N: int, B: int, H: int, dtype=torch.float16, k_f_prep: str = "kernel", **kw) -> float:
    """HBM bytes of the unfused PyTorch FFT conv divided by those of the fused forward (same arguments to both;
    k_f_prep: how the fused path makes k_f, see flash_butterfly_io)."""
    return (total_bytes(torch_fft_conv_io(N, B, H, dtype, **kw))
            / total_bytes(flash_butterfly_io(N, B, H, dtype, k_f_prep=k_f_prep, **kw)))


def on_chip_bytes(N: int, dtype=torch.float16, sizes: tuple[int, int] | None = None) -> dict:
    """Live data of one fused program (registers/shared memory), by what it holds; a lower bound (no temporaries).

    F1, F2 (re/im planes in the dot dtype: fp32 for fp32 inputs) of the half-length split (N1·N2 = N/2, default
    half_sizes(N)), its twiddles and ω_N^f, K = k_f[h] at f and f + N/2 (fp32 planes), and one complex (N1, N2) fp32
    tile of the row in flight (its N/2 even + i·odd samples).
    """
    s = _dtype_bytes(dtype)
    N1, N2 = _split(N // 2, sizes or half_sizes(N))
    parts = {"F1, F2 (dot dtype)": 2 * s * (N1 * N1 + N2 * N2), "twiddle (fp32)": 4 * N, "ω_N^f (fp32)": 4 * N,
             "K = k_f[h] (fp32)": 8 * N, "sequence tile (fp32)": 4 * N}
    parts["total"] = sum(parts.values())
    return parts


# ---------------------------------------------------------------------------------------------------------------
# FLOPs
# ---------------------------------------------------------------------------------------------------------------

def radix2_fft_flops(N: int) -> float:
    """Real FLOPs of one complex radix-2 FFT of size N: 5·N·log2(N)."""
    if N < 2 or N & (N - 1):
        raise ValueError(f"N={N} must be a power of two ≥ 2 for a radix-2 FFT")
    return 5.0 * N * math.log2(N)


def block_flops(N: int, sizes=None) -> int:
    """Real FLOPs of the dense blocks of one complex Monarch FFT, Σ_i 8·N·N_i: what a learned Butterfly transform
    costs too (the blocks' values never enter; torch.utils.flop_counter counts a complex matmul as a quarter of this)."""
    return sum(8 * N * n for n in _split(N, sizes))


def monarch_fft_flops(N: int, sizes=None) -> int:
    """Real FLOPs of one complex Monarch FFT: Σ_i 8·N·N_i (dense blocks) + 6·N per twiddle multiply."""
    sizes = _split(N, sizes)
    return block_flops(N, sizes) + 6 * N * (len(sizes) - 1)


HALF_POINTWISE_FLOPS = 46  # per bin of the half-length trick: split 18, ⊙ k_f at f and f + N/2 12, merge 16


def conv_flops(N: int, B: int, H: int, method: str = "monarch", sizes=None) -> float:
    """Real FLOPs of a forward FFT convolution of B·H real rows at FFT size N.

    "radix2": per row a real FFT and a real inverse FFT (each half a complex one, 2.5·N·log2 N) and a complex
    multiply of the N/2+1 one-sided bins (6 FLOPs each). "monarch" (the fused kernel): per row the half-length
    trick, a forward and an inverse Monarch FFT of N/2 points (sizes: half_sizes(N)) and 46 FLOPs per bin of
    pointwise work (HALF_POINTWISE_FLOPS). "monarch_pairs" (the design it replaced): rows packed in pairs
    (⌈B/2⌉·H complex sequences), per pair a forward and an inverse N-point Monarch FFT and a complex multiply of N
    bins. "learned" (learned blocks, kernels' learned_fwd_kernel): per row a real-input forward Monarch FFT of N
    points (first factor on a real tile: half price), ⊙ k_f, the real-output inverse (last factor: half price).
    """
    if method == "radix2":
        return B * H * (2 * 0.5 * radix2_fft_flops(N) + 6 * (N // 2 + 1))
    if method == "monarch":
        return B * H * (2 * monarch_fft_flops(N // 2, sizes or half_sizes(N)) + HALF_POINTWISE_FLOPS * (N // 2))
    if method == "monarch_pairs":
        return -(-B // 2) * H * (2 * monarch_fft_flops(N, sizes) + 6 * N)
    if method == "learned":
        N1, N2 = _split(N, sizes)
        return B * H * (2 * (4 * N * N1 + 8 * N * N2) + 2 * 6 * N + 6 * N)  # 2 passes, twiddles, ⊙ k_f
    raise ValueError(f"method={method!r}: use 'radix2', 'monarch', 'monarch_pairs' or 'learned'")


def outer_dft_flops(N0: int, packed: bool = False) -> int:
    """Real FLOPs per point of the two outer passes (pass 1 with a real operand, pass 3 with a real result): dense,
    4·N0 each (8·N0 per complex point when packed); factored N0 = A·Bf (N0 ≥ 64): pass 1 2·2A + 6 + 2·4Bf, pass 3
    2·4A + 6 + 2·2Bf (the twiddle between the two factors, complex). The outer twiddle is counted separately."""
    if packed:
        return 2 * 8 * N0
    A = outer_blocks(N0)["A"]
    if not A:
        return 2 * 4 * N0
    Bf = N0 // A
    return (4 * A + 6 + 8 * Bf) + (8 * A + 6 + 4 * Bf)


def three_pass_flops(N: int, B: int, H: int, packed: bool = False) -> float:
    """Real FLOPs of the three-pass forward: the outer N0-point DFT down the M-strided rows in pass 1 and back in
    pass 3 (`outer_dft_flops`), twiddles, and one inner M-point convolution (two Monarch FFTs and ⊙ k_f) per stored
    outer row: R = N0/2 + 1 per row (N0 per pair when packed)."""
    N0, M1, M2 = three_pass_sizes(N)
    M = M1 * M2
    inner = 2 * monarch_fft_flops(M, (M1, M2)) + 6 * M
    if packed:
        return -(-B // 2) * H * (outer_dft_flops(N0, packed=True) * N + 2 * 6 * N + N0 * inner)
    R = N0 // 2 + 1
    return B * H * (outer_dft_flops(N0) * N + 2 * 6 * R * M + R * inner)  # pass 1 computes all N0 rows, stores R


def roofline_ms(nbytes: float, flops: float, bytes_per_s: float, flops_per_s: float) -> float:
    """Lower bound on the time (ms) of a kernel: max(bytes / bandwidth, FLOPs / peak)."""
    return 1e3 * max(nbytes / bytes_per_s, flops / flops_per_s)
