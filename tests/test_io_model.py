"""kernels.io_model: HBM bytes and FLOPs of the unfused and fused FFT convolutions, against hand-counted cases."""
import pytest
import torch

from kernels.io_model import (Transfer, conv_flops, flash_butterfly_io, io_ratio, monarch_fft_flops, on_chip_bytes,
                              radix2_fft_flops, roofline_ms, torch_fft_conv_io, total_bytes)


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
    """Same sizes: k → k_f in PyTorch, then the kernel reads u, k_f and the (2, 4) tables once and writes y."""
    steps = by_step(flash_butterfly_io(8, 2, 1, torch.float16))
    assert steps == {
        "pad k to N (fill zeros, copy)": (16, 48),
        "fft(k) (cuFFT r2c, one half)": (32, 40),
        "fft(k) (fill the other half by symmetry)": (24, 24),
        "k_f[..., perm] (gather to permuted order, int64 index)": (64 + 64, 64),
        "k_f re/im planes (stack)": (64, 64),
        "fused kernel: read u": (2 * 2 * 4, 0),
        "fused kernel: read k_f (once per program)": (8 * 8, 0),
        "fused kernel: read DFT + twiddle tables": (8 * (2 * 2 + 4 * 4 + 2 * 4), 0),
        "fused kernel: write y": (0, 2 * 2 * 4),
    }
    assert total_bytes(flash_butterfly_io(8, 2, 1, torch.float16)) == 568 + 256


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
    parts = on_chip_bytes(4096, torch.float16)
    assert parts["F1, F2 (dot dtype)"] == 2 * 2 * (64 * 64 * 2)
    assert parts["total"] == 32768 + 3 * 8 * 4096
    assert on_chip_bytes(4096, torch.float32)["F1, F2 (dot dtype)"] == 2 * parts["F1, F2 (dot dtype)"]


def test_flops_hand_count():
    assert radix2_fft_flops(8) == 5 * 8 * 3
    assert monarch_fft_flops(8, (2, 4)) == 8 * 8 * 2 + 8 * 8 * 4 + 6 * 8
    assert monarch_fft_flops(8) == monarch_fft_flops(8, (2, 4))  # the kernel's default split
    assert monarch_fft_flops(4096, (16, 16, 16)) == 3 * 8 * 4096 * 16 + 2 * 6 * 4096
    assert conv_flops(8, 2, 1, "radix2") == 2 * (120 + 6 * 5)  # two rows: half-size rfft + irfft, 5 bins multiply
    assert conv_flops(8, 3, 1, "monarch") == 2 * (2 * 432 + 6 * 8)  # three rows → two packed pairs
    assert conv_flops(4096, 2, 1, "monarch") / conv_flops(4096, 2, 1, "radix2") > 10  # the price of dense blocks


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
