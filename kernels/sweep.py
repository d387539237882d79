"""python -m lconv.kernels.sweep: time launch settings of the fused fixed-FFT kernels on a GPU, side by side in one run.

For each FFT size N (fp16, B = 64, H = 768, L = N) and pass (fwd; du and dk, the backward's two kernels), every
combination of num_warps, num_stages (`--stages 1 2 3`: software-pipelined prefetch), the row loop of the forward
and du kernel (`--rows-per-iter 1 2 4`, `--early-loads`: kernels.launch.LOOP_TUNING) and PROGRAMS_PER_SM (how finely the batch is split into programs) is checked against
torch's fp32 rfft convolution (max |error|, NaN fails) and timed (triton.testing.do_bench, median ms). Prints one
table per N, best first, with the bandwidth of moving u, y (du: dy, du; dk: u, dy) once; `--out DIR` writes the
rows as JSON with provenance. The chosen settings go into lconv.kernels.launch.TUNING by hand, with the sweep's numbers in
the commit that changes them (`python -m lconv.kernels.probe` says, without a GPU, which settings spill).
"""
from __future__ import annotations

import argparse
import itertools
import os

import torch

from . import flash_butterfly as fb, launch as kl
from .bench import torch_fft_conv


def sweep(N: int, B: int = 64, H: int = 768, warps=(2, 4, 8), per_sm=(4, 16),
          passes=("fwd", "du", "dk"), stages=(1,), rows_per_iter=(1,), early_loads=(False,)) -> list[dict]:
    """Rows: N, pass, num_warps, num_stages, PROGRAMS_PER_SM, ms, GB/s, max_err (fwd: y, du: du, dk: dk) for each
    setting (num_stages > 1: Triton's software pipelining, cp.async prefetch of the next row's loads)."""
    from triton.testing import do_bench

    dev = torch.device("cuda")
    u = (torch.randn(B, H, N, device=dev) * 0.02).half()
    dy = (torch.randn(B, H, N, device=dev) * 0.02).half()
    k = torch.randn(H, N, device=dev)
    k_f = kl.k_f_planes(k, N)
    y_ref = torch_fft_conv(u.float(), k, N)  # fp32 reference (output in its input's dtype)
    du_ref = torch.fft.irfft(torch.fft.rfft(dy.float()) * torch.fft.rfft(k).conj(), n=N)  # circular corr(dy, k)
    dk_ref = torch.fft.irfft(torch.fft.rfft(dy.float()) * torch.fft.rfft(u.float()).conj(), n=N).sum(0)  # Σ_b corr
    saved = (kl.TUNING[N], kl.PROGRAMS_PER_SM, dict(kl.LOOP_TUNING))
    rows = []
    try:
        for pass_, w, st, ps, rpi, early in itertools.product(passes, warps, stages, per_sm, rows_per_iter,
                                                              early_loads):
            if pass_ == "dk" and (rpi, early) != (1, False):
                continue  # the row-loop knobs are flash_butterfly_fwd_kernel's (fwd and du)
            kl.TUNING[N] = {**saved[0], pass_: {"num_warps": w, "num_stages": st}}
            kl.PROGRAMS_PER_SM = ps
            kl.LOOP_TUNING[(N, pass_)] = {"ROWS": rpi, "EARLY_LOADS": early}
            if pass_ == "fwd":
                fn = lambda: fb._fwd(u, k_f, N)  # noqa: E731
                out, ref = fn()[0], y_ref
            else:
                need = (pass_ == "du", pass_ == "dk", False, False, False, False)
                fn = lambda: fb._bwd(u, dy, k_f, N, N, need=need)  # noqa: E731
                out, ref = fn()[0 if pass_ == "du" else 1], (du_ref if pass_ == "du" else dk_ref)
            nbytes = 2 * u.numel() * 2  # fwd: u, y; du: dy, du; dk: u, dy (dk itself is H·N)
            err = (out.float() - ref).abs().max().item()
            ms = do_bench(fn, warmup=10, rep=50, return_mode="median")
            rows.append(dict(N=N, pass_=pass_, num_warps=w, num_stages=st, PROGRAMS_PER_SM=ps, rows_per_iter=rpi,
                             early_loads=early, ms=ms, GBps=nbytes / ms / 1e6, max_err=err))
            print(f"N={N:5d} {pass_} warps={w} stages={st} per_sm={ps:2d} rows/iter={rpi} early={early:d}: {ms:.3f} ms "
                  f"{nbytes / ms / 1e6:6.0f} GB/s err {err:.2e}", flush=True)
    finally:
        kl.TUNING[N], kl.PROGRAMS_PER_SM = saved[:2]
        kl.LOOP_TUNING.clear()
        kl.LOOP_TUNING.update(saved[2])
    return rows


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m lconv.kernels.sweep", description=__doc__.split("\n")[0])
    parser.add_argument("--N", type=int, nargs="+", default=[256, 1024, 4096])
    parser.add_argument("--warps", type=int, nargs="+", default=[2, 4, 8])
    parser.add_argument("--per-sm", type=int, nargs="+", default=[4, 16])
    parser.add_argument("--stages", type=int, nargs="+", default=[1], help="num_stages values (e.g. 1 2 3)")
    parser.add_argument("--rows-per-iter", type=int, nargs="+", default=[1], help="rows unrolled per iteration")
    parser.add_argument("--early-loads", action="store_true", help="also time the output gates loaded early")
    parser.add_argument("--passes", nargs="+", default=["fwd", "du", "dk"], choices=["fwd", "du", "dk"])
    parser.add_argument("--out", default=None, help="directory for sweep-<UTC time>.json")
    args = parser.parse_args(argv)
    if not torch.cuda.is_available():
        print("no GPU: skipping")
        return 0
    rows = []
    for N in args.N:
        rows += sweep(N, warps=args.warps, per_sm=args.per_sm, passes=args.passes, stages=args.stages,
                      rows_per_iter=args.rows_per_iter, early_loads=(False, True) if args.early_loads else (False,))
    print("\nbest per (N, pass), against the current TUNING (PROGRAMS_PER_SM 4):")
    for (N, p), group in itertools.groupby(sorted(rows, key=lambda r: (r["N"], r["pass_"], r["ms"])),
                                           key=lambda r: (r["N"], r["pass_"])):
        g = list(group)
        cur = kl.TUNING[N][p]
        now = [r for r in g if (r["num_warps"], r["num_stages"], r["PROGRAMS_PER_SM"], r["rows_per_iter"],
                                r["early_loads"]) == (cur["num_warps"], cur["num_stages"], 4, 1, False)]
        b = g[0]
        print(f"N={N:5d} {p}: best warps={b['num_warps']} stages={b['num_stages']} per_sm={b['PROGRAMS_PER_SM']} "
              f"rows/iter={b['rows_per_iter']} early={b['early_loads']:d} "
              f"{b['ms']:.3f} ms {b['GBps']:.0f} GB/s" + (f"; current {now[0]['ms']:.3f} ms" if now else ""))
    if args.out:
        os.makedirs(args.out, exist_ok=True)
        from lconv.results import provenance, write_json_atomic
        prov = provenance()
        stamp = prov["date"].replace("-", "").replace(":", "")[:15]
        write_json_atomic(os.path.join(args.out, f"sweep-{stamp}.json"), {"provenance": prov, "rows": rows})
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
