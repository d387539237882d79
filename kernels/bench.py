"""python -m lconv.kernels.bench: FlashButterfly against PyTorch FFT convolutions, N = 256 … 1M, on one GPU.

What it measures (triton.testing.do_bench, median ms), per FFT size N, dtype (fp16, bf16) and mode:
  - "plain"  L = N (circular, the peer's setting), "gated" L = N with pregate and postgate (the peer's published
    benchmark), "causal" L = N/2 (zero-padded linear convolution, the paper's setting);
  - forward and forward+backward; peak GPU memory of one call;
  - ours: kernels.FlashButterflyConv (fused kernel, N ≤ 4096) or kernels.three_pass_conv (N > 4096);
  - baselines: `torch_complex_conv` (fp32 complex FFT of u and k, multiply, inverse FFT: the peer's PyTorch
    baseline) and `torch_rfft_conv` (lconv.conv.fft_conv with check_finite=False, cuFFT real FFTs: the paper's
    baseline; for L = N, where fft_conv would pad to 2N, the same rfft maths at size N, `torch_fft_conv`);
  - achieved memory bandwidth = bytes of u, y, k (and gates) moved once / time, against the device's peak
    (`PEAK_BANDWIDTH`); "fwd_bwd" rows count u, y, dy, du, k, dk (and gates, their gradients) once;
  - the paper's 128K comparison: S4D kernel generation (lconv.layers.S4DKernel) + FFT conv against a long conv
    with the kernel given (ours).
B·H is scaled down where B·H·L would exceed --max-elems (default 2^28, about 14 GB for the fp32 complex baseline's
fwd+bwd); every row reports ns per element and the time scaled linearly to the full B = 64, H = 768 grid.
Results: results/bench-<device>-<UTC time>.{json,csv,png}, written atomically, with lconv.results.provenance().
`--modes learned` adds rows of the fused kernel with learned Butterfly blocks (dft1/dft2 = DFT + 0.01·noise, their
gradients included) and a target comparing them with the fixed kernel at the same N and dtype (run it with plain).
`--graph` times the forward passes as CUDA-graph replays instead (rows with pass "fwd_graph": GPU time without the
host's per-call overhead); `--merge a.json b.json …` combines runs of one device into one results set.
Without CUDA it prints "no GPU: skipping" and exits 0. Notebooks show the latest recorded results without a GPU
through `load_latest`, `results_table` and `plot_results`.
"""
from __future__ import annotations

import argparse
import contextlib
import csv
import datetime as _dt
import io
import json
import math
import sys
from pathlib import Path

import torch

from lconv.paper import (PEER_MS, PEER_SPEEDUP, TARGET_BW_FRACTION, TARGET_FWD_BWD_VS_RFFT,  # noqa: F401
                         TARGET_FWD_VS_RFFT, TARGET_LEARNED_VS_FIXED, TARGET_S4D_128K)
from lconv.results import RESULTS_DIR, atomic_write, load_latest_bench as load_latest  # noqa: F401  (kernels.bench.load_latest)

FULL_B, FULL_H = 64, 768
MODES = ("plain", "gated", "causal")  # the default grid
ALL_MODES = MODES + ("learned",)  # "learned": learned Butterfly blocks (dft1/dft2), fused sizes only, on request
LEARNED_NOISE = 0.01  # learned blocks timed at DFT + 0.01·(randn + i·randn), as lconv.learned_butterfly initialises
DTYPES = {"float16": torch.float16, "bfloat16": torch.bfloat16, "float32": torch.float32}
FULL_N = tuple(1 << e for e in range(8, 21))  # 256 … 1M
QUICK_N = (1024, 4096, 16384)
FUSED_MAX_N = 4096

# Peak HBM bandwidth (bytes/s) by device name: (substrings that must all appear, lower case) → peak.
PEAK_BANDWIDTH = (
    (("h100", "pcie"), 2.0e12),
    (("h100", "nvl"), None),  # not in our table: unknown
    (("h100",), 3.35e12),  # H100 SXM (HBM3)
    (("h200",), 4.8e12),
    (("a100", "80gb"), 2.0e12),
)

# The peer's timings and the speed targets: lconv.paper (each number of the paper once, with its source tag).

CSV_COLUMNS = ("N", "L", "B", "H", "dtype", "mode", "pass", "kernel", "ms_ours", "ms_torch_complex", "ms_torch_rfft",
               "speedup_vs_complex", "speedup_vs_rfft", "ns_per_elem_ours", "ms_ours_full_grid", "bytes",
               "bw_ours_GBps", "bw_fraction_of_peak", "peak_mem_ours_MB", "peak_mem_complex_MB", "peak_mem_rfft_MB",
               "max_abs_diff", "peer_speedup", "note")


# ---------------------------------------------------------------------------------------------------------------
# The grid and the arithmetic (no GPU needed; tested on CPU)
# ---------------------------------------------------------------------------------------------------------------

def peak_bandwidth(device_name: str) -> float | None:
    """Peak HBM bandwidth in bytes/s for a device name from PEAK_BANDWIDTH, or None when unknown."""
    name = device_name.lower()
    for keys, peak in PEAK_BANDWIDTH:
        if all(key in name for key in keys):
            return peak
    return None


def scale_batch(B: int, H: int, L: int, max_elems: int) -> tuple[int, int]:
    """(B, H) shrunk so B·H·L ≤ max_elems: B first, then H (never below 1)."""
    if B * H * L <= max_elems:
        return B, H
    B = max(1, max_elems // (H * L))
    if B * H * L > max_elems:
        H = max(1, max_elems // L)
    return B, H


def grid(quick: bool = False, Ns=None, dtypes=("float16", "bfloat16"), modes=MODES, B: int = FULL_B,
         H: int = FULL_H, max_elems: int = 1 << 28) -> list[dict]:
    """The benchmark cases: one dict (N, L, B, H, dtype, mode) per FFT size, dtype and mode."""
    Ns = Ns or (QUICK_N if quick else FULL_N)
    dtypes = ("float16",) if quick and dtypes == ("float16", "bfloat16") else dtypes
    cases = []
    for N in Ns:
        for dtype in dtypes:
            for mode in modes:
                if mode not in ALL_MODES:
                    raise ValueError(f"mode={mode!r}: use one of {ALL_MODES}")
                if mode == "learned" and N > FUSED_MAX_N:
                    continue  # learned blocks exist in the fused kernels only
                L = N // 2 if mode == "causal" else N
                b, h = scale_batch(B, H, L, max_elems)
                cases.append({"N": N, "L": L, "B": b, "H": h, "dtype": dtype, "mode": mode})
    return cases


def io_bytes(B: int, H: int, L: int, Lk: int, elem_size: int, gated: bool, backward: bool = False) -> int:
    """Bytes that must cross HBM once: u in, y out, k in (fp32) (+ both gates); backward adds dy, du, dk (+ dgates)."""
    n_bh = (2 + (2 if gated else 0)) * B * H * L * elem_size + 4 * H * Lk
    if backward:
        n_bh += (2 + (2 if gated else 0)) * B * H * L * elem_size + 4 * H * Lk
    return n_bh


def bandwidth(nbytes: int, ms: float | None, peak: float | None) -> tuple[float | None, float | None]:
    """(achieved GB/s, fraction of peak or None) for nbytes moved in ms."""
    if ms is None or ms <= 0:
        return None, None
    bps = nbytes / (ms * 1e-3)
    return bps / 1e9, (bps / peak if peak else None)


def normalise(ms: float | None, B: int, H: int, L: int, full_B: int = FULL_B, full_H: int = FULL_H):
    """(ns per element of u, ms scaled linearly to the full B·H grid) for a time measured at (B, H, L)."""
    if ms is None:
        return None, None
    return ms * 1e6 / (B * H * L), ms * (full_B * full_H) / (B * H)


def _ratio(a, b):
    return a / b if (a is not None and b) else None


def finish_row(case: dict, pass_: str, kernel: str, ms: dict, peak_mem: dict, peak: float | None,
               max_abs_diff=None, note: str = "") -> dict:
    """One result row from the raw timings `ms` {"ours", "complex", "rfft"} (None where it failed)."""
    B, H, L, N = case["B"], case["H"], case["L"], case["N"]
    gated = case["mode"] == "gated"
    nbytes = io_bytes(B, H, L, L, torch.empty(0, dtype=DTYPES[case["dtype"]]).element_size(), gated,
                      backward=pass_ == "fwd_bwd")
    gbps, frac = bandwidth(nbytes, ms.get("ours"), peak)
    ns, full = normalise(ms.get("ours"), B, H, L)
    mb = {k: (None if v is None else v / 2 ** 20) for k, v in peak_mem.items()}
    return {**case, "pass": pass_, "kernel": kernel, "ms_ours": ms.get("ours"), "ms_torch_complex": ms.get("complex"),
            "ms_torch_rfft": ms.get("rfft"), "speedup_vs_complex": _ratio(ms.get("complex"), ms.get("ours")),
            "speedup_vs_rfft": _ratio(ms.get("rfft"), ms.get("ours")), "ns_per_elem_ours": ns,
            "ms_ours_full_grid": full, "bytes": nbytes, "bw_ours_GBps": gbps, "bw_fraction_of_peak": frac,
            "peak_mem_ours_MB": mb.get("ours"), "peak_mem_complex_MB": mb.get("complex"),
            "peak_mem_rfft_MB": mb.get("rfft"), "max_abs_diff": max_abs_diff,
            "peer_speedup": PEER_SPEEDUP.get(N) if (gated and pass_ in ("fwd", "fwd_graph")) else None, "note": note}


def check_targets(rows: list[dict], s4d: dict | None = None) -> list[dict]:
    """Each target with what we measured and whether it is met (None: not measured)."""
    out = []

    def rows_of(pass_, mode=None, Nmax=None, Nmin=None):
        return [r for r in rows if r["pass"] == pass_ and (mode is None or r["mode"] == mode)
                and (Nmax is None or r["N"] <= Nmax) and (Nmin is None or r["N"] >= Nmin)]

    graph = any(r["pass"] == "fwd_graph" for r in rows)  # CUDA-graph forward rows: the same targets, GPU time only
    for pass_, target in (("fwd", TARGET_FWD_VS_RFFT), ("fwd_bwd", TARGET_FWD_BWD_VS_RFFT)) + (
            (("fwd_graph", TARGET_FWD_VS_RFFT),) if graph else ()):
        for mode in MODES:
            sel = [r for r in rows_of(pass_, mode, Nmax=65536) if r["speedup_vs_rfft"] is not None]
            worst = min(sel, key=lambda r: r["speedup_vs_rfft"]) if sel else None
            Ns = sorted({r["N"] for r in sel})
            span = f"N {Ns[0]}…{Ns[-1]}" if Ns else "every N 256…64K"
            out.append({"target": f"{pass_} ≥ {target}× over torch rfft conv, {span} ({mode})",
                        "ours": None if worst is None else round(worst["speedup_vs_rfft"], 3),
                        "where": None if worst is None else f"worst at N={worst['N']} {worst['dtype']}",
                        "met": None if worst is None else worst["speedup_vs_rfft"] >= target})
    for pass_ in ("fwd", "fwd_graph") if graph else ("fwd",):
        for r in rows_of(pass_, "gated"):
            ps = PEER_SPEEDUP.get(r["N"])  # the table, not the row: rows recorded before a column change agree
            if ps is not None and r["speedup_vs_complex"] is not None:
                out.append({"target": f"gated {pass_} vs torch complex FFT ≥ peer's {ps}× (N={r['N']})",
                            "ours": round(r["speedup_vs_complex"], 3), "where": r["dtype"],
                            "met": r["speedup_vs_complex"] >= ps})
        sel = [r for r in rows_of(pass_, Nmax=4096) if r["bw_fraction_of_peak"] is not None]
        worst = min(sel, key=lambda r: r["bw_fraction_of_peak"]) if sel else None
        out.append({"target": f"{pass_} ≥ {TARGET_BW_FRACTION:.0%} of peak bandwidth, N ≤ 4K",
                    "ours": None if worst is None else round(worst["bw_fraction_of_peak"], 3),
                    "where": None if worst is None else f"worst at N={worst['N']} {worst['dtype']} {worst['mode']}",
                    "met": None if worst is None else worst["bw_fraction_of_peak"] >= TARGET_BW_FRACTION})
    fixed = {(r["N"], r["dtype"], r["pass"]): r["ms_ours"] for r in rows if r["mode"] == "plain"}
    pairs = [(r, fixed.get((r["N"], r["dtype"], r["pass"]))) for r in rows if r["mode"] == "learned"]
    ratios = [(r, r["ms_ours"] / f) for r, f in pairs if r["ms_ours"] is not None and f]
    for pass_ in sorted({r["pass"] for r, _ in ratios}):
        r, worst = max(((r, x) for r, x in ratios if r["pass"] == pass_), key=lambda rx: rx[1])
        out.append({"target": f"learned Butterfly {pass_} within {TARGET_LEARNED_VS_FIXED}× of the fixed kernel",
                    "ours": round(worst, 3), "where": f"worst at N={r['N']} {r['dtype']}",
                    "met": worst <= TARGET_LEARNED_VS_FIXED})
    if s4d is not None:
        sp = s4d.get("speedup")
        out.append({"target": f"128K: ≥ {TARGET_S4D_128K}× faster than S4D generation + FFT conv",
                    "ours": None if sp is None else round(sp, 3), "where": f"B={s4d.get('B')} H={s4d.get('H')}",
                    "met": None if sp is None else sp >= TARGET_S4D_128K})
    return out


# ---------------------------------------------------------------------------------------------------------------
# Writing and reading results (atomic, with provenance)
# ---------------------------------------------------------------------------------------------------------------

def rows_to_csv(rows: list[dict]) -> str:
    """The rows as CSV text with CSV_COLUMNS (empty cells for None)."""
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=CSV_COLUMNS, extrasaction="ignore", lineterminator="\n")
    writer.writeheader()
    for r in rows:
        writer.writerow({c: ("" if r.get(c) is None else r.get(c)) for c in CSV_COLUMNS})
    return buf.getvalue()


def write_results(results: dict, out_dir, stamp: str | None = None, plot: bool = True) -> dict:
    """Write results {"provenance", "rows", ...} as bench-<device>-<stamp>.json/.csv(/.png); returns the paths."""
    from lconv.results import slug, write_json_atomic

    out_dir = Path(out_dir)
    stamp = stamp or _dt.datetime.now(_dt.timezone.utc).strftime("%Y%m%dT%H%M%SZ")
    stem = f"bench-{slug(results['provenance'].get('device', 'device'), 'device')}-{stamp}"
    paths = {"json": write_json_atomic(out_dir / f"{stem}.json", results),
             "csv": atomic_write(out_dir / f"{stem}.csv", lambda f: f.write(rows_to_csv(results["rows"])), mode="w")}
    if plot:
        fig = plot_results(results)
        try:
            paths["png"] = atomic_write(out_dir / f"{stem}.png",
                                        lambda f: fig.savefig(f, format="png", dpi=120, bbox_inches="tight"))
        finally:
            import matplotlib.pyplot as plt
            plt.close(fig)
    return paths


def merge_results(parts: list[dict]) -> dict:
    """One results dict from several runs on the same device (e.g. fp16 and bf16 in separate calls): rows and
    S4D comparison combined, targets recomputed, each part's provenance kept under "parts"."""
    devices = {p["provenance"].get("device") for p in parts}
    if len(devices) != 1:
        raise ValueError(f"merge_results: runs from different devices {sorted(map(str, devices))}; timings are only "
                         "comparable on one device, merge runs per device")
    rows = [r for p in parts for r in p["rows"]]
    s4d = next((p["s4d_128k"] for p in reversed(parts) if p.get("s4d_128k")), None)
    return {**parts[-1], "rows": rows, "s4d_128k": s4d, "targets": check_targets(rows, s4d),
            "parts": [{"path": p.get("path"), "provenance": p["provenance"], "args": p.get("args")} for p in parts]}


def results_table(results: dict, pass_: str = "fwd", dtype: str = "float16", modes=MODES) -> str:
    """A markdown table of one pass and dtype: ms, speedups, bandwidth, memory; provenance in the caption line."""
    from lconv.results import markdown_table

    cols = ("N", "L", "B", "H", "mode", "kernel", "ms_ours", "ms_torch_complex", "ms_torch_rfft",
            "speedup_vs_complex", "speedup_vs_rfft", "ms_ours_full_grid", "bw_ours_GBps", "bw_fraction_of_peak",
            "peak_mem_ours_MB", "peer_speedup")
    rows = sorted((r for r in results["rows"] if r["pass"] == pass_ and r["dtype"] == dtype and r["mode"] in modes),
                  key=lambda r: (MODES.index(r["mode"]), r["N"]))
    prov = results.get("provenance", {})
    head = (f"{pass_}, {dtype} — {prov.get('device', '?')}, torch {prov.get('torch', '?')}, triton "
            f"{prov.get('triton', '?')}, commit {prov.get('commit', '?')}, {prov.get('date', '?')}")
    return head + "\n\n" + markdown_table(rows, columns=cols)


def plot_results(results: dict, dtype: str = "float16", ax=None):
    """Two panels: forward ns per element vs N (ours and both baselines), and speedups vs N with the targets."""
    import matplotlib.pyplot as plt

    if ax is None:
        fig, ax = plt.subplots(1, 2, figsize=(12, 4.2))
    else:
        fig = ax[0].figure
    styles = {"plain": "-", "gated": "--", "causal": ":"}
    rows = [r for r in results["rows"] if r["dtype"] == dtype and r["pass"] == "fwd"]
    for mode in MODES:
        sel = sorted((r for r in rows if r["mode"] == mode), key=lambda r: r["N"])
        if not sel:
            continue
        Ns = [r["N"] for r in sel]
        for key, label, color in (("ms_ours", "ours", "C0"), ("ms_torch_complex", "torch complex FFT", "C1"),
                                  ("ms_torch_rfft", "torch rfft (cuFFT)", "C2")):
            ys = [None if r[key] is None else r[key] * 1e6 / (r["B"] * r["H"] * r["L"]) for r in sel]
            ax[0].plot(Ns, [math.nan if y is None else y for y in ys], styles[mode], color=color, marker=".",
                       label=f"{label}, {mode}")
        for key, label, color in (("speedup_vs_complex", "vs complex FFT", "C1"),
                                  ("speedup_vs_rfft", "vs rfft", "C2")):
            ax[1].plot(Ns, [math.nan if r[key] is None else r[key] for r in sel], styles[mode], color=color,
                       marker=".", label=f"{label}, {mode}")
    peer = sorted(PEER_SPEEDUP.items())
    ax[1].plot([n for n, _ in peer], [s for _, s in peer], "k*", label="peer (gated, vs complex FFT)")
    ax[1].axhline(TARGET_FWD_VS_RFFT, color="gray", lw=0.8, ls="-.", label=f"target {TARGET_FWD_VS_RFFT}× vs rfft")
    ax[1].axhline(1.0, color="gray", lw=0.5)
    for a, ylabel in zip(ax, ("forward ns per element of u", "forward speedup (×)")):
        a.set_xscale("log", base=2)
        a.set_xlabel("FFT size N")
        a.set_ylabel(ylabel)
        a.grid(alpha=0.3)
    ax[0].set_yscale("log")
    ax[1].legend(fontsize=7, ncol=2)
    ax[0].legend(fontsize=7, ncol=1)
    prov = results.get("provenance", {})
    fig.suptitle(f"FlashButterfly vs PyTorch, {dtype} — {prov.get('device', '?')} ({prov.get('date', '?')})",
                 fontsize=10)
    return fig


# ---------------------------------------------------------------------------------------------------------------
# The implementations under test (GPU)
# ---------------------------------------------------------------------------------------------------------------

def torch_fft_conv(u: torch.Tensor, k: torch.Tensor, N: int) -> torch.Tensor:
    """fp32 rfft convolution at FFT size N (circular for L = N), output in u's dtype."""
    L = u.shape[-1]
    return torch.fft.irfft(torch.fft.rfft(u.float(), n=N) * torch.fft.rfft(k, n=N), n=N)[..., :L].to(u.dtype)


def torch_complex_conv(u, k, N, pregate=None, postgate=None):
    """The peer's PyTorch baseline: fp32 complex FFT of u and k, multiply, inverse FFT; gates in u's dtype."""
    L = u.shape[-1]
    v = u if pregate is None else u * pregate
    u_f = torch.fft.fft(v.to(torch.complex64), n=N)  # (B, H, N)
    k_f = torch.fft.fft(k.to(torch.complex64), n=N)  # (H, N)
    y = torch.fft.ifft(u_f * k_f, n=N).real[..., :L].to(u.dtype)  # (B, H, L)
    return y if postgate is None else y * postgate


def torch_rfft_conv(u, k, N, pregate=None, postgate=None):
    """The paper's baseline: lconv.conv.fft_conv (cuFFT rfft, fp32) when L, Lk ≤ N/2, else the rfft maths at N."""
    from lconv.conv import fft_conv

    v = u if pregate is None else u * pregate
    if 2 * v.shape[-1] <= N and 2 * k.shape[-1] <= N:
        y = fft_conv(v, k, check_finite=False)
    else:
        y = torch_fft_conv(v, k, N)
    return y if postgate is None else y * postgate


def ours(u, k, N, pregate=None, postgate=None, blocks=None):
    """FlashButterflyConv (fused) for N ≤ 4096, the three-pass kernels above; `blocks` (dft1, dft2): learned."""
    if N <= FUSED_MAX_N:
        from .conv import flash_butterfly_conv

        dft1, dft2 = blocks or (None, None)
        return flash_butterfly_conv(u, k, N, pregate, postgate, dft1=dft1, dft2=dft2)  # FlashButterflyConv's call
    from .conv import three_pass_conv

    return three_pass_conv(u, k, N, pregate, postgate)


IMPLS = {"ours": ours, "complex": torch_complex_conv, "rfft": torch_rfft_conv}


def learned_blocks(N: int, device, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """Shared learned blocks for FFT size N: (N1, N1), (N2, N2) complex64 = DFT + LEARNED_NOISE·(randn + i·randn)."""
    from lconv import butterfly

    gen = torch.Generator().manual_seed(seed)

    def block(M):
        noise = torch.complex(torch.randn(M, M, generator=gen), torch.randn(M, M, generator=gen))
        return (butterfly.dft_matrix(M, dtype=torch.complex64) + LEARNED_NOISE * noise).to(device)

    N1, N2 = butterfly.default_sizes(N)
    return block(N1), block(N2)


def _peak_memory(fn) -> int:
    """Peak bytes allocated above the current allocation while fn() runs once."""
    torch.cuda.synchronize()
    torch.cuda.reset_peak_memory_stats()
    base = torch.cuda.memory_allocated()
    fn()
    torch.cuda.synchronize()
    return torch.cuda.max_memory_allocated() - base


def bench_case(case: dict, device: torch.device, peak: float | None, warmup: int = 25, rep: int = 100,
               graph: bool = False) -> list[dict]:
    """Forward and forward+backward rows of one case, ours and both baselines (None where a run ran out of memory).

    graph=True: forward only, timed as replays of a CUDA graph (triton.testing.do_bench_cudagraph) — the GPU's time
    without the host's per-call overhead (Python, launches), and without do_bench's L2 flush between calls."""
    from triton.testing import do_bench, do_bench_cudagraph

    N, L, B, H = case["N"], case["L"], case["B"], case["H"]
    dtype = DTYPES[case["dtype"]]
    gated = case["mode"] == "gated"
    u = (torch.randn(B, H, L, device=device) * 0.02).to(dtype)
    k = torch.randn(H, L, device=device)
    gates = [torch.rand(B, H, L, device=device).to(dtype) for _ in range(2)] if gated else [None, None]
    dy = (torch.randn(B, H, L, device=device) * 0.02).to(dtype)
    kernel = "fused" if N <= FUSED_MAX_N else "three_pass"
    impls, blocks, ref = IMPLS, [], torch_complex_conv
    if case["mode"] == "learned":  # ours with learned blocks (their gradients too); the baselines time the plain conv
        from lconv.butterfly import learned_butterfly_conv

        blocks = [b.requires_grad_() for b in learned_blocks(N, device)]
        impls = {**IMPLS, "ours": lambda u, k, N, *g: ours(u, k, N, *g, blocks=blocks)}
        ref = lambda u, k, N, *g: learned_butterfly_conv(u.float(), k, N, *blocks)  # noqa: E731
    notes = []
    with torch.no_grad():
        try:
            diff = (impls["ours"](u, k, N, *gates).float() - ref(u, k, N, *gates).float()).abs().max().item()
        except torch.cuda.OutOfMemoryError:
            diff = None
            notes.append("diff: oom")
    torch.cuda.empty_cache()
    fwd_ms, fwd_mem, fb_ms, fb_mem = {}, {}, {}, {}
    for name, fn in impls.items():
        try:
            with torch.no_grad():
                fwd_mem[name] = _peak_memory(lambda: fn(u, k, N, *gates))
                if graph:
                    fwd_ms[name] = do_bench_cudagraph(lambda: fn(u, k, N, *gates), rep=rep, return_mode="median")
                else:
                    fwd_ms[name] = do_bench(lambda: fn(u, k, N, *gates), warmup=warmup, rep=rep,
                                            return_mode="median")
        except torch.cuda.OutOfMemoryError:
            fwd_ms[name] = fwd_mem[name] = None
            notes.append(f"{name} fwd: oom")
        torch.cuda.empty_cache()
        if graph:
            continue
        leaves = [t.detach().requires_grad_() for t in (u, k, *[g for g in gates if g is not None])]

        def step():
            fn(leaves[0], leaves[1], N, *(leaves[2:] if gated else [])).backward(dy)  # noqa: F821 (del'd after use)

        try:
            fb_mem[name] = _peak_memory(step)
            fb_ms[name] = do_bench(step, warmup=warmup, rep=rep, grad_to_none=leaves + blocks, return_mode="median")
        except torch.cuda.OutOfMemoryError:
            fb_ms[name] = fb_mem[name] = None
            notes.append(f"{name} fwd_bwd: oom")
        del leaves
        torch.cuda.empty_cache()
    if graph:
        return [finish_row(case, "fwd_graph", kernel, fwd_ms, fwd_mem, peak, diff, "; ".join(notes + ["cuda graph"]))]
    note = "; ".join(notes)
    return [finish_row(case, "fwd", kernel, fwd_ms, fwd_mem, peak, diff, note),
            finish_row(case, "fwd_bwd", kernel, fb_ms, fb_mem, peak, diff, note)]


def bench_s4d_128k(device: torch.device, B: int = 4, H: int = 256, L: int = 1 << 17, dtype=torch.float16,
                   warmup: int = 10, rep: int = 50) -> dict:
    """Forward ms of S4D (kernel generation by lconv.layers.S4DKernel + lconv.conv.fft_conv) vs ours (k given)."""
    from triton.testing import do_bench

    from lconv.conv import fft_conv
    from lconv.layers import S4DKernel

    N = 2 * L
    s4d = S4DKernel(H, L).to(device)
    u = (torch.randn(B, H, L, device=device) * 0.02).to(dtype)
    k = torch.randn(H, L, device=device) * 0.02
    out = {"B": B, "H": H, "L": L, "N": N, "dtype": str(dtype).replace("torch.", ""), "d_state": s4d.d_state}
    with torch.no_grad():
        for name, fn in (("s4d_gen_plus_fft_conv", lambda: fft_conv(u, s4d()[0].float(), check_finite=False)),
                         ("s4d_gen_only", lambda: s4d()),
                         ("ours_kernel_given", lambda: ours(u, k, N))):
            try:
                out[f"ms_{name}"] = do_bench(fn, warmup=warmup, rep=rep, return_mode="median")
            except torch.cuda.OutOfMemoryError:
                out[f"ms_{name}"] = None
            torch.cuda.empty_cache()
    out["speedup"] = _ratio(out["ms_s4d_gen_plus_fft_conv"], out["ms_ours_kernel_given"])
    return out


def print_targets(targets: list[dict]) -> None:
    """Where we stand against each target, honestly (not measured ≠ met)."""
    print("\nTargets:")
    for t in targets:
        status = {True: "MET    ", False: "NOT MET", None: "n/a    "}[t["met"]]
        print(f"  [{status}] {t['target']}: ours {t['ours']} ({t['where']})")


def main(argv=None) -> int:
    """Run the benchmark grid; 0 on success or when there is no GPU."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help=f"short grid: N in {QUICK_N}, fp16 only")
    parser.add_argument("--out", default=str(RESULTS_DIR), help="results directory (default: results/)")
    parser.add_argument("--N", type=int, nargs="+", default=None, help="FFT sizes (default: 256 … 1M)")
    parser.add_argument("--dtypes", nargs="+", default=["float16", "bfloat16"], choices=sorted(DTYPES))
    parser.add_argument("--modes", nargs="+", default=list(MODES), choices=ALL_MODES,
                        help="plain, gated, causal (default: all three); learned: learned Butterfly blocks, N ≤ 4096")
    parser.add_argument("--max-elems", type=int, default=1 << 28, help="cap on B·H·L (B, then H, scaled down)")
    parser.add_argument("--no-s4d", action="store_true", help="skip the 128K S4D comparison")
    parser.add_argument("--warmup", type=int, default=None, help="do_bench warm-up, ms (default 25; quick 10)")
    parser.add_argument("--rep", type=int, default=None, help="do_bench repetitions, ms (default 100; quick 30)")
    parser.add_argument("--graph", action="store_true",
                        help="forward only, timed as CUDA-graph replays: GPU time without host overhead")
    parser.add_argument("--merge", nargs="+", default=None, metavar="JSON",
                        help="no timing: merge earlier result files of one device into one set of results files")
    args = parser.parse_args(argv)
    if args.merge:
        parts = [{**json.loads(Path(f).read_text()), "path": str(f)} for f in args.merge]
        merged = merge_results(parts)
        print_targets(merged["targets"])
        paths = write_results(merged, args.out)
        print("wrote " + ", ".join(str(p) for p in paths.values()))
        return 0
    if not torch.cuda.is_available():
        print("no GPU: skipping")
        return 0
    from lconv.results import provenance

    device = torch.device("cuda")
    prov = provenance(device)
    peak = peak_bandwidth(prov["device"])
    print(f"{prov['device']}: peak bandwidth {'unknown' if peak is None else f'{peak / 1e12:.2f} TB/s'}")
    cases = grid(args.quick, args.N, tuple(args.dtypes), tuple(args.modes), max_elems=args.max_elems)
    warmup = args.warmup if args.warmup is not None else (10 if args.quick else 25)
    rep = args.rep if args.rep is not None else (30 if args.quick else 100)
    stamp = _dt.datetime.now(_dt.timezone.utc).strftime("%Y%m%dT%H%M%SZ")
    results = {"benchmark": "kernels.bench", "provenance": prov, "peak_bandwidth_Bps": peak,
               "args": vars(args), "rows": [], "s4d_128k": None, "targets": []}
    for case in cases:
        for row in bench_case(case, device, peak, warmup, rep, graph=args.graph):
            results["rows"].append(row)
            fmt = lambda x, f=".3f": "  –  " if x is None else format(x, f)  # noqa: E731
            print(f"N={row['N']:>7} L={row['L']:>7} B={row['B']:>2} H={row['H']:>3} {row['dtype']:>8} "
                  f"{row['mode']:>6} {row['pass']:>7}: ours {fmt(row['ms_ours'])} ms, complex "
                  f"{fmt(row['ms_torch_complex'])}, rfft {fmt(row['ms_torch_rfft'])}  "
                  f"({fmt(row['speedup_vs_complex'], '.2f')}× / {fmt(row['speedup_vs_rfft'], '.2f')}×; "
                  f"{fmt(row['bw_ours_GBps'], '.0f')} GB/s {fmt(row['bw_fraction_of_peak'], '.0%')}) {row['note']}",
                  flush=True)
        write_results(results, args.out, stamp, plot=False)  # checkpoint: a run cut short keeps its rows
    if not args.no_s4d:
        results["s4d_128k"] = bench_s4d_128k(device, warmup=5 if args.quick else 10, rep=20 if args.quick else 50)
        s = results["s4d_128k"]
        print(f"128K: S4D generation + FFT conv {s['ms_s4d_gen_plus_fft_conv']} ms, ours (kernel given) "
              f"{s['ms_ours_kernel_given']} ms: {s['speedup']}×")
    results["targets"] = check_targets(results["rows"], results["s4d_128k"])
    print_targets(results["targets"])
    paths = write_results(results, args.out, stamp)
    print("wrote " + ", ".join(str(p) for p in paths.values()))
    return 0


if __name__ == "__main__":
    sys.exit(main())


# ---------------------------------------------------------------------------------------------------------------
# Reading recorded results back (notebooks 03 and 04)
# ---------------------------------------------------------------------------------------------------------------

def recorded_report(shown, label, results_dir=RESULTS_DIR) -> tuple[str, list[dict]]:
    """(text, rows) for a loaded benchmark (load_latest; None: nothing recorded): the fp16 tables per pass, the
    targets, the 128K S4D comparison and the host overhead, in words; rows: Results.add keyword dicts of the causal
    forward speed-ups against the paper's target (lconv.paper.TARGET_FWD_VS_RFFT)."""
    if shown is None:
        return (f"There are NO recorded GPU results yet in {results_dir}: this workbook has not been benchmarked on a "
                "GPU.\nTo produce them, run `make bench` (python -m lconv.kernels.bench) on a machine with an NVIDIA GPU and "
                "commit the results/bench-*.json|csv|png it writes."), []
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        print(f"{label} — {shown['path']}")
        for pass_ in ("fwd", "fwd_graph", "fwd_bwd"):  # per call (host overhead included); CUDA graph; fwd+bwd
            if any(r["pass"] == pass_ and r["dtype"] == "float16" for r in shown["rows"]):
                print(f"\n### {pass_}\n" + results_table(shown, pass_, "float16"))
        print_targets(shown.get("targets") or check_targets(shown["rows"], shown.get("s4d_128k")))
        s4d = shown.get("s4d_128k")
        if s4d:
            print(f"\n128K (B={s4d['B']}, H={s4d['H']}): S4D kernel generation + FFT conv "
                  f"{s4d['ms_s4d_gen_plus_fft_conv']:.2f} ms (generation alone {s4d['ms_s4d_gen_only']:.2f}), long "
                  f"conv with FlashButterfly {s4d['ms_ours_kernel_given']:.2f} ms: {s4d['speedup']:.2f}x")
        per_call = {(r["N"], r["mode"]): r["ms_ours"] for r in shown["rows"]
                    if r["pass"] == "fwd" and r["dtype"] == "float16" and r["ms_ours"]}
        graph = {(r["N"], r["mode"]): r["ms_ours"] for r in shown["rows"]
                 if r["pass"] == "fwd_graph" and r["dtype"] == "float16" and r["ms_ours"]}
        if graph:
            print("\nours, per call minus CUDA-graph replay (host time not hidden by the GPU), plain, ms: "
                  + ", ".join(f"N={n}: {per_call[(n, m)] - t:+.3f}" for (n, m), t in sorted(graph.items())
                              if m == "plain" and (n, m) in per_call))
    rows = [dict(claim="FlashButterfly speeds up long convolutions", metric="fwd speedup vs torch rfft conv",
                 ours=row["speedup_vs_rfft"], paper=TARGET_FWD_VS_RFFT,
                 task=f"N={row['N']}, B={row['B']}, H={row['H']}, fp16",
                 note=f"{label.lower()}: {shown['provenance'].get('device')}, commit {shown['provenance'].get('commit')}",
                 device=str(shown["provenance"].get("device")) + ("" if label == "MEASURED NOW" else " (recorded)"),
                 profile="make bench")  # the GPU that produced it, not this run's device
            for row in shown["rows"]
            if row["pass"] == "fwd" and row["mode"] == "causal" and row["dtype"] == "float16" and row["speedup_vs_rfft"]]
    return out.getvalue().rstrip("\n"), rows


def learned_report(recorded) -> str:
    """The recorded GPU timings of the learned-Butterfly kernel against the fixed one (N ≤ 4096), in words; says so
    plainly when none are recorded."""
    rows = [r for r in (recorded or {}).get("rows", []) if r["mode"] in ("plain", "learned") and r["N"] <= FUSED_MAX_N]
    learned_rows = [r for r in rows if r["mode"] == "learned"]
    if not learned_rows:
        return ("No GPU timings of the learned Butterfly kernel are recorded in results/ yet: the fixed-vs-learned "
                "runtime claim is untested here. On a GPU: python -m lconv.kernels.bench --modes plain learned --N 256 1024 "
                "4096 (writes results/ with provenance; merge it with earlier runs by --merge).")
    prov = recorded["provenance"]
    lines = [f"RECORDED, NOT MEASURED NOW — {recorded['path']}: {prov.get('device')}, commit {prov.get('commit')}"]
    fixed = {(r["N"], r["dtype"], r["pass"]): r["ms_ours"] for r in rows if r["mode"] == "plain"}
    for r in sorted(learned_rows, key=lambda r: (r["dtype"], r["pass"], r["N"])):
        f = fixed.get((r["N"], r["dtype"], r["pass"]))
        ratio = f"{r['ms_ours'] / f:.2f}x the fixed kernel" if f and r["ms_ours"] else "no fixed row to compare"
        lines.append(f"  N={r['N']:5d} {r['dtype']:>8} {r['pass']:>7}: learned {r['ms_ours']:.3f} ms, {ratio}")
    lines += [f"  [{'MET' if t['met'] else 'NOT MET'}] {t['target']}: {t['ours']} ({t['where']})"
              for t in recorded.get("targets", []) if t["target"].startswith("learned")]
    return "\n".join(lines)
