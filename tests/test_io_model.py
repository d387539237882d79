"""kernels.io_model: HBM bytes and FLOPs of the unfused and fused FFT convolutions, against hand-counted cases."""
import pytest
import torch

from lconv.kernels.io_model import (HALF_POINTWISE_FLOPS, Transfer, conv_flops, flash_butterfly_io, io_ratio,
                              monarch_fft_flops, on_chip_bytes, radix2_fft_flops, roofline_ms, three_pass_flops,
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
    """Same sizes: k → k_f in PyTorch, then the kernel reads u, k_f and the half-length (2, 2) tables (F1, F2,
    twiddles, ω_N^f) once and writes y."""
    steps = by_step(flash_butterfly_io(8, 2, 1, torch.float16))
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
    assert total_bytes(flash_butterfly_io(8, 2, 1, torch.float16)) == 568 + 256 - 96  # smaller tables


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
    assert io_ratio(4096, 64, 768, torch.float16) < r - 5  # k → k_f per call (PyTorch, unfused) costs the kernel
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
        per_row = {t.step: t.total for t in three_pass_io(N, 64, 4, include_k=False)}
        packed = {t.step: t.total for t in three_pass_io(N, 64, 4, include_k=False, packed=True)}
        grow = per_row["pass 2: read and rewrite it in place"] / packed["pass 2: read and rewrite it in place"]
        assert grow == pytest.approx(1 + 2 / N0)
        assert per_row["pass 1: read u"] == packed["pass 1: read u"] == 2 * 64 * 4 * (N // 2)
        assert 1.0 < three_pass_flops(N, 64, 4) / three_pass_flops(N, 64, 4, packed=True) < 1.12


def test_three_pass_hand_count():
    """N = 8192 = 16·(16·32), B = 2 rows, H = 1, fp16, L = 4096: R = 9 of 16 outer rows of M = 512 per row."""
    steps = by_step(three_pass_io(8192, 2, 1, torch.float16, include_k=False))
    buf = 8 * 2 * 9 * 512
    assert steps["pass 1: write the outer spectrum (fp32)"] == (0, buf)
    assert steps["pass 2: read and rewrite it in place"] == (buf, buf)
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
