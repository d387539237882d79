"""python -m kernels.bench: PyTorch fp32 FFT conv vs FlashButterfly, B=64, H=768, fp16 u, N = 1K and 4K, on one GPU.

Times forward and forward+backward with triton.testing.do_bench (median ms), reports effective HBM bandwidth of the
forward (u read + y written + k_f read), checks the outputs agree, and writes results/bench_flashbutterfly.json with
lconv.results.provenance(). Expect nothing on CPU: it prints "no GPU: skipping" and exits 0.
The peer's numbers (flash-fft-conv, H100, gated conv) are stored beside ours for reference, not as our result.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch

# flash-fft-conv README, H100, B=64, H=768, fp16, gated conv (see /work/shared/PAPER.md): N → (PyTorch ms, peer ms)
PEER_MS = {1024: (2.30, 0.29), 4096: (9.49, 1.43)}


def torch_fft_conv(u: torch.Tensor, k: torch.Tensor, N: int) -> torch.Tensor:
    """The baseline: fp32 rfft convolution at FFT size N, output in u's dtype (the peer's 'PyTorch FFT conv')."""
    L = u.shape[-1]
    u_f = torch.fft.rfft(u.float(), n=N)  # (B, H, N/2+1)
    k_f = torch.fft.rfft(k, n=N)  # (H, N/2+1)
    return torch.fft.irfft(u_f * k_f, n=N)[..., :L].to(u.dtype)  # (B, H, L)


def bench_one(N: int, B: int, H: int, dtype: torch.dtype, device: torch.device) -> dict:
    """Timings (ms) of both implementations at one FFT size, causal (L = N/2)."""
    from triton.testing import do_bench

    from kernels import FlashButterflyConv

    L = N // 2
    u = (torch.randn(B, H, L, device=device) * 0.02).to(dtype).requires_grad_()
    k = torch.randn(H, L, device=device, requires_grad=True)
    dy = (torch.randn(B, H, L, device=device) * 0.02).to(dtype)
    fb = FlashButterflyConv(N, dtype=dtype)
    err = (fb(u, k).float() - torch_fft_conv(u, k, N).float()).abs().max().item()

    def fwd_bwd(fn):
        return lambda: fn(u, k).backward(dy)

    with torch.no_grad():
        ms_torch = do_bench(lambda: torch_fft_conv(u, k, N))
        ms_fb = do_bench(lambda: fb(u, k))
    ms_torch_fb = do_bench(fwd_bwd(lambda u, k: torch_fft_conv(u, k, N)), grad_to_none=[u, k])
    ms_fb_fb = do_bench(fwd_bwd(fb), grad_to_none=[u, k])
    gbytes = (2 * u.numel() * u.element_size() + H * 2 * N * 4) / 1e9  # u in, y out, k_f in
    return {"N": N, "L": L, "B": B, "H": H, "dtype": str(dtype), "max_abs_diff": err,
            "torch_fwd_ms": ms_torch, "flashbutterfly_fwd_ms": ms_fb, "speedup_fwd": ms_torch / ms_fb,
            "torch_fwd_bwd_ms": ms_torch_fb, "flashbutterfly_fwd_bwd_ms": ms_fb_fb,
            "speedup_fwd_bwd": ms_torch_fb / ms_fb_fb, "flashbutterfly_fwd_GBps": gbytes / (ms_fb * 1e-3),
            "peer_torch_ms": PEER_MS.get(N, (None, None))[0], "peer_flashfftconv_ms": PEER_MS.get(N, (None, None))[1]}


def main(argv=None) -> int:
    """Run the benchmark; 0 on success or when there is no GPU."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--B", type=int, default=64)
    parser.add_argument("--H", type=int, default=768)
    parser.add_argument("--N", type=int, nargs="+", default=[1024, 4096])
    parser.add_argument("--out", default=str(Path(__file__).resolve().parents[1] / "results"))
    args = parser.parse_args(argv)
    if not torch.cuda.is_available():
        print("no GPU: skipping")
        return 0
    from lconv.results import provenance, write_json_atomic

    device = torch.device("cuda")
    rows = []
    for N in args.N:
        row = bench_one(N, args.B, args.H, torch.float16, device)
        rows.append(row)
        print(f"N={N:5d}  torch {row['torch_fwd_ms']:.3f} ms  FlashButterfly {row['flashbutterfly_fwd_ms']:.3f} ms  "
              f"({row['speedup_fwd']:.2f}×; fwd+bwd {row['speedup_fwd_bwd']:.2f}×; "
              f"{row['flashbutterfly_fwd_GBps']:.0f} GB/s; max |diff| {row['max_abs_diff']:.2e})")
    path = write_json_atomic(Path(args.out) / "bench_flashbutterfly.json",
                             {"benchmark": "kernels.bench", "provenance": provenance(device), "rows": rows})
    print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
