"""kernels.io_model: HBM bytes and FLOPs of the unfused and fused FFT convolutions, against hand-counted cases."""
import pytest
import torch

from lconv.kernels.io_model import (HALF_POINTWISE_FLOPS, Transfer, conv_flops, flash_butterfly_bwd_io,
                                    flash_butterfly_io, fwd_bwd_io, io_ratio, k_f_kernel_io, monarch_fft_flops,
                                    on_chip_bytes, outer_dft_flops, radix2_fft_flops, roofline_ms, three_pass_flops,
                                    three_pass_io, torch_fft_conv_io, total_bytes)
from lconv.butterfly import default_sizes, half_sizes


def by_step(steps):
    return {t.step: (t.read, t.write) for t in steps}


def test_unfused_hand_count_fp16():
    """N=8, B=2, H=1, L=Lk=4, fp16: P=2 rows, one-sided spectrum M=5 bins, every step counted by hand."""
    steps = by_step(torch_fft_conv_io(8, 2, 1, torch.float16))
    assert steps == {
        "u.float() (cast)": (2 * 2 * 4, 4 * 2 * 4),  # read 2 rows·4 fp16, write 2 rows·4 fp32
        "pad u to N (fill zeros, copy)": (4 * 2 * 4, 4 * 2 * (8 + 4)),  # fill 8 zeros then copy 4 values, per row
        "rfft(u) (cuFFT r2c)": (4 * 2 * 8, 8 * 2 * 5),
        "pad k to N (fill zeros, copy)": (4 * 4, 4 * 12),
        "rfft(k) (cuFFT r2c)": (4 * 8, 8 * 5),
        "u_f ⊙ k_f": (80 + 40, 80),
        "clone spectrum (cuFFT c2r overwrites its input)": (80, 80),
        "irfft (cuFFT c2r)": (80, 4 * 2 * 8),
        "scale by 1/N (in place)": (64, 64),
        "y[..., :L].to(dtype) (cast)": (4 * 2 * 4, 2 * 2 * 4),
    }
    assert total_bytes(torch_fft_conv_io(8, 2, 1, torch.float16)) == 536 + 600


def test_fused_hand_count_fp16():
    """Same sizes: k → k_f in PyTorch (k_f_planes today), then the kernel reads u, k_f and the half-length (2, 2)
    tables (F1, F2, twiddles, ω_N^f) once and writes y."""
    steps = by_step(flash_butterfly_io(8, 2, 1, torch.float16, k_f_prep="torch"))
    assert steps == {
        "pad k to N (fill zeros, copy)": (16, 48),
        "fft(k) (cuFFT r2c, one half)": (32, 40),
        "fft(k) (fill the other half by symmetry)": (24, 24),
        "k_f[..., perm] (gather to permuted order, int64 index)": (64 + 64, 64),
        "k_f re/im planes (stack)": (64, 64),
        "fused kernel: read u": (2 * 2 * 4, 0),
        "fused kernel: read k_f (once per program)": (8 * 8, 0),
        "fused kernel: read DFT + twiddle tables": (8 * (2 * 2 + 2 * 2 + 2 * 2 * 2), 0),
        "fused kernel: write y": (0, 2 * 2 * 4),
    }
    assert total_bytes(flash_butterfly_io(8, 2, 1, torch.float16, k_f_prep="torch")) == 568 + 256 - 96


def test_k_f_by_one_triton_kernel_reads_k_once_and_writes_k_f_once():
    """The fused path's k_f cost (the default): one kernel reads k (H, Lk) fp32 and writes k_f (H, 2, N) fp32."""
    assert by_step(k_f_kernel_io(8, 1, 4)) == {"k → k_f (one Triton kernel)": (4 * 4, 8 * 8)}
    fused = by_step(flash_butterfly_io(8, 2, 1, torch.float16))
    assert fused["k → k_f (one Triton kernel)"] == (16, 64) and "fft(k) (cuFFT r2c, one half)" not in fused
    assert total_bytes(flash_butterfly_io(8, 2, 1, torch.float16)) == 80 + 16 + 64 + 128 + 16
    per_call = {p: total_bytes(flash_butterfly_io(4096, 64, 768, k_f_prep=p)) -
                total_bytes(flash_butterfly_io(4096, 64, 768, include_k=False)) for p in ("kernel", "torch")}
    assert per_call["torch"] > 5 * per_call["kernel"]  # pad, FFT, symmetric fill, gather, stack: ~5.6× the bytes


def test_fwd_bwd_hand_count_gated_fp16():
    """N=8, B=2, H=1, L=Lk=4, fp16, gated, every gradient, two chunks per channel: the forward adds w; the du kernel
    reads dy, both gates, u (dpregate), w (dpostgate), k_f per program and writes three gradients; the dk kernel
    reads dy, u and both gates and writes two fp32 partial sums of dk, which PyTorch sums."""
    row = 2 * 2 * 4  # one (B, H, L) fp16 tensor
    tables = 8 * (2 * 2 + 2 * 2 + 2 * 2 * 2)
    steps = by_step(fwd_bwd_io(8, 2, 1, torch.float16, gated=True, n_chunks=2))
    assert steps == {
        "k → k_f (one Triton kernel)": (16, 64),
        "fused kernel: read u": (row, 0),
        "fused kernel: read pregate, postgate": (2 * row, 0),
        "fused kernel: read k_f (once per program)": (2 * 64, 0),
        "fused kernel: read DFT + twiddle tables": (tables, 0),
        "fused kernel: write y": (0, row),
        "fused kernel: write w = conv(pregate ⊙ u, k) (for dpostgate)": (0, row),
        "du kernel: read dy": (row, 0),
        "du kernel: read postgate": (row, 0),
        "du kernel: read pregate": (row, 0),
        "du kernel: read u (for dpregate)": (row, 0),
        "du kernel: read w (for dpostgate)": (row, 0),
        "du kernel: read k_f (once per program)": (2 * 64, 0),
        "du kernel: read DFT + twiddle tables": (tables, 0),
        "du kernel: write du": (0, row),
        "du kernel: write dpregate": (0, row),
        "du kernel: write dpostgate": (0, row),
        "dk kernel: read dy, u": (2 * row, 0),
        "dk kernel: read postgate, pregate": (2 * row, 0),
        "dk kernel: read DFT + twiddle tables": (tables, 0),
        "dk kernel: write dk partial sums (fp32)": (0, 2 * 4 * 4),
        "sum dk over chunks (PyTorch)": (2 * 4 * 4, 4 * 4),
    }


def test_backward_bytes_follow_what_is_needed():
    """Only what a gradient needs is moved: no w without dpostgate, no transform in the du kernel for dpostgate
    alone, no dk kernel without dk, no PyTorch sum with one chunk; plain fwd+bwd at large B·H ≈ 3× the forward."""
    plain = by_step(flash_butterfly_bwd_io(256, 4, 2))
    assert set(plain) == {"du kernel: read dy", "du kernel: read k_f (once per program)",
                          "du kernel: read DFT + twiddle tables", "du kernel: write du", "dk kernel: read dy, u",
                          "dk kernel: read DFT + twiddle tables", "dk kernel: write dk partial sums (fp32)"}
    dpost_only = by_step(flash_butterfly_bwd_io(256, 4, 2, gated=True, need=(False, False, False, True)))
    assert set(dpost_only) == {"du kernel: read dy", "du kernel: read w (for dpostgate)",
                               "du kernel: write dpostgate"}
    no_w = by_step(fwd_bwd_io(256, 4, 2, gated=True, need=(True, True, True, False)))
    assert not any("w " in name or name.endswith(" w") for name in no_w)
    big = dict(N=4096, B=64, H=768, include_k=False)
    ratio = total_bytes(fwd_bwd_io(**big)) / total_bytes(flash_butterfly_io(**big))
    assert 2.9 < ratio < 3.1  # fwd: u, y; bwd: dy, du + dy, u; k_f and tables are small


def test_fp32_circular_has_no_cast_or_pad():
    """fp32 u needs no cast kernels; L = N (circular) needs no padding copy."""
    names = [t.step for t in torch_fft_conv_io(16, 1, 1, torch.float32, L=16, Lk=16, include_k=False)]
    assert names == ["rfft(u) (cuFFT r2c)", "u_f ⊙ k_f", "clone spectrum (cuFFT c2r overwrites its input)",
                     "irfft (cuFFT c2r)", "scale by 1/N (in place)"]
    fused = flash_butterfly_io(16, 3, 2, torch.float32, include_k=False, n_chunks=2)
    assert by_step(fused)["fused kernel: read u"] == (4 * 3 * 2 * 8, 0)
    assert by_step(fused)["fused kernel: read k_f (once per program)"] == (2 * 8 * 2 * 16, 0)


def test_ratio_grows_to_the_per_row_limit():
    """Large B·H, k excluded: per row the unfused path moves ≈ 54·N bytes (fp16, L = N/2), the fused ≈ 2·N."""
    r = io_ratio(4096, 64, 768, torch.float16, include_k=False)
    assert 25 < r < 26
    assert io_ratio(4096, 64, 768, torch.float16, k_f_prep="torch") < r - 5  # k → k_f per call in PyTorch
    assert r - 2 < io_ratio(4096, 64, 768, torch.float16) < r  # by one Triton kernel: a small cost
    assert io_ratio(4096, 64, 768, torch.float32) < r  # no casts, and u/y themselves are twice as big
    assert io_ratio(256, 1, 1, include_k=False) < r  # tiny problems: k's FFT and the tables weigh in
    unfused = total_bytes(torch_fft_conv_io(4096, 64, 768, include_k=False))
    assert unfused == pytest.approx(54 * 4096 * 64 * 768, rel=2e-3)  # + the (N/2+1)-th bins


def test_on_chip_bytes_4096_fp16():
    """The half-length tile (32, 64): F1, F2 in fp16, twiddles and ω (N/2 complex fp32 each), K at f and f + N/2,
    the row's N/2 complex samples."""
    parts = on_chip_bytes(4096, torch.float16)
    assert parts["F1, F2 (dot dtype)"] == 2 * 2 * (32 * 32 + 64 * 64)
    assert parts["total"] == 20480 + 5 * 4 * 4096
    assert on_chip_bytes(4096, torch.float32)["F1, F2 (dot dtype)"] == 2 * parts["F1, F2 (dot dtype)"]


def test_flops_hand_count():
    assert radix2_fft_flops(8) == 5 * 8 * 3
    assert monarch_fft_flops(8, (2, 4)) == 8 * 8 * 2 + 8 * 8 * 4 + 6 * 8
    assert monarch_fft_flops(8) == monarch_fft_flops(8, (2, 4))  # the kernel's default split
    assert monarch_fft_flops(4096, (16, 16, 16)) == 3 * 8 * 4096 * 16 + 2 * 6 * 4096
    assert conv_flops(8, 2, 1, "radix2") == 2 * (120 + 6 * 5)  # two rows: half-size rfft + irfft, 5 bins multiply
    assert conv_flops(8, 3, 1, "monarch_pairs") == 2 * (2 * 432 + 6 * 8)  # three rows → two packed pairs
    assert monarch_fft_flops(4, (2, 2)) == 8 * 4 * 2 * 2 + 6 * 4
    assert conv_flops(8, 3, 1, "monarch") == 3 * (2 * 152 + 46 * 4)  # per row: two 4-point FFTs, 46 per bin
    assert conv_flops(8, 1, 1, "learned") == 2 * (4 * 8 * 2 + 8 * 8 * 4) + 18 * 8
    assert conv_flops(4096, 2, 1, "monarch") / conv_flops(4096, 2, 1, "radix2") > 10  # the price of dense blocks


def test_per_row_design_costs_against_the_packed_pairs_it_replaced():
    """Issue 14's per-row fused kernel: the same HBM bytes, 0.67–0.75× the dot FLOPs per row (half-length blocks),
    23 FLOPs per point of pointwise work instead of 3; the three-pass buffers and inner convs: × (1 + 2/N0)."""
    for N in (512, 1024, 2048, 4096):
        (a, b), (c, d) = half_sizes(N), default_sizes(N)
        dots_new, dots_old = 8 * N * (a + b), 8 * N * (c + d)
        assert 0.66 < dots_new / dots_old <= 0.75
        new, old = conv_flops(N, 64, 1, "monarch"), conv_flops(N, 64, 1, "monarch_pairs")
        assert new == 64 * (dots_new + 2 * 6 * (N // 2) + HALF_POINTWISE_FLOPS * (N // 2))  # + the twiddles
        assert new < old
    assert HALF_POINTWISE_FLOPS * (4096 // 2) / 4096 == 23
    for N, N0 in ((8192, 16), (65536, 16), (1 << 20, 256)):
        per_row = {t.step: t.total for t in three_pass_io(N, 64, 4, torch.float32, include_k=False)}
        packed = {t.step: t.total for t in three_pass_io(N, 64, 4, torch.float32, include_k=False, packed=True)}
        grow = per_row["pass 2: read and rewrite it in place"] / packed["pass 2: read and rewrite it in place"]
        assert grow == pytest.approx(1 + 2 / N0)  # fp32 buffers: R rows per row against N0 per pair
        assert per_row["pass 1: read u"] == packed["pass 1: read u"] == 4 * 64 * 4 * (N // 2)
    for N in (8192, 65536):  # the dense outer DFT (N0 = 16)
        assert 1.0 < three_pass_flops(N, 64, 4) / three_pass_flops(N, 64, 4, packed=True) < 1.12


def test_three_pass_16_bit_buffers_and_factored_outer_dft():
    """Issue 20: fp16/bf16 buffers halve the bytes between the passes (plus fp32 factors, < 1 %), 22 → 13 bytes per
    element over the three passes at N0 = 16; the outer DFT factored 16 × N0/16 for N0 ≥ 64 (396 instead of 2048 FLOPs
    per point at N0 = 256); k_f only for the stored rows."""
    B, H, N = 64, 4, 1 << 16
    half = {t.step: t.total for t in three_pass_io(N, B, H, torch.float16, L=N, include_k=False)}
    full = {t.step: t.total for t in three_pass_io(N, B, H, torch.float32, L=N, include_k=False)}
    between = ("pass 1: write the outer spectrum", "pass 2: read and rewrite it in place", "pass 3: read it")
    assert 0.5 < sum(half[s] for s in between) / sum(full[s] for s in between) < 0.51
    per_element = sum(half[s] for s in ("pass 1: read u", *between, "pass 3: write y")) / (B * H * N)
    assert 13 < per_element < 13.1  # 2 + 4·2·(1 + 2/16) + 2 = 13, and the factors
    assert outer_dft_flops(16) == 8 * 16 and outer_dft_flops(32) == 8 * 32  # dense below 64
    assert outer_dft_flops(256) == (4 * 16 + 6 + 8 * 16) + (8 * 16 + 6 + 4 * 16) == 396
    assert outer_dft_flops(64) == (4 * 16 + 6 + 8 * 4) + (8 * 16 + 6 + 4 * 4) < 8 * 64
    k = {t.step: t for t in three_pass_io(1 << 20, 1, 1, torch.float16)}
    R_M = (256 // 2 + 1) * 4096
    assert k["k_f: one gather kernel (Hermitian fill, permutation, re/im split)"].write == 8 * R_M


def test_three_pass_hand_count():
    """N = 8192 = 16·(16·32), B = 2 rows, H = 1, fp16, L = 4096: R = 9 of 16 outer rows of M = 512 per row."""
    steps = by_step(three_pass_io(8192, 2, 1, torch.float16, include_k=False))
    buf = 2 * 2 * 2 * 9 * 512  # re, im in fp16
    blocks, rows = 4 * 2 * (512 // 64), 4 * 2 * 9  # fp32 factors: pass 1's column blocks (BM = 64), pass 2's rows
    assert steps["pass 1: write the outer spectrum"] == (0, buf + blocks)
    assert steps["pass 2: read and rewrite it in place"] == (buf + blocks, buf + rows)
    assert steps["pass 3: write y"] == (0, 2 * 2 * 4096)


def test_roofline():
    assert roofline_ms(1e9, 1.0, 1e12, 1e15) == pytest.approx(1.0)  # memory-bound: 1 GB at 1 TB/s
    assert roofline_ms(1.0, 2e12, 1e12, 1e15) == pytest.approx(2.0)  # compute-bound


@pytest.mark.parametrize("kwargs,match", [
    (dict(N=100, B=1, H=1), "power of two"),
    (dict(N=8, B=0, H=1), "B=0"),
    (dict(N=8, B=1, H=1, L=9), "L=9"),
    (dict(N=8, B=1, H=1, dtype=torch.float64), "dtype"),
])
def test_bad_input_raises(kwargs, match):
    with pytest.raises(ValueError, match=match):
        torch_fft_conv_io(**kwargs)
    with pytest.raises(ValueError, match=match):
        flash_butterfly_io(**kwargs)


def test_bad_sizes_and_method():
    with pytest.raises(ValueError, match="multiply"):
        flash_butterfly_io(16, 1, 1, sizes=(4, 8))
    with pytest.raises(ValueError, match="n_chunks"):
        flash_butterfly_io(16, 1, 1, n_chunks=0)
    with pytest.raises(ValueError, match="method"):
        conv_flops(16, 1, 1, "fftw")
    assert Transfer("x", 1, 2).total == 3
