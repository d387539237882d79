"""python -m lconv.kernels.bench: FlashButterfly against PyTorch FFT convolutions, N = 256 … 1M, on one GPU.

What it measures, per FFT size N, dtype (fp16, bf16) and mode, in one row set:
  - "plain"  L = N (circular, the peer's setting), "gated" L = N with pregate and postgate (the peer's published
    benchmark), "causal" L = N/2 (zero-padded linear convolution, the paper's setting), "learned" (on request) the
    fused kernel with learned Butterfly blocks (dft1/dft2 = DFT + 0.01·noise, their gradients included);
  - three passes, side by side: "fwd" per call (triton.testing.do_bench: Python, k's FFT, launches and kernel, with
    do_bench's L2 flush), "fwd_graph" (triton.testing.do_bench_cudagraph: the same calls replayed from a CUDA graph,
    the GPU's time alone) and "fwd_bwd" per call; peak GPU memory of one call;
  - host µs per forward call on its own (`host_us`: the GPU queue blocked with torch.cuda._sleep, the host loop timed,
    then synchronize), in results["host"];
  - ours: kernels.FlashButterflyConv (fused kernel, N ≤ 4096) or kernels.three_pass_conv (N > 4096);
  - baselines measured in the same run: `torch_complex_conv` (fp32 complex FFT of u and k, multiply, inverse FFT: the
    peer's PyTorch baseline) and `torch_rfft_conv` (lconv.conv.fft_conv with check_finite=False, cuFFT real FFTs: the
    paper's baseline; for L = N, where fft_conv would pad to 2N, the same rfft maths at size N, `torch_fft_conv`);
    in causal mode also NVIDIA's cuDNN `cudnn.ops.fft_causal_conv1d` when cuDNN ≥ 9.26 and the cuDNN frontend
    package are installed (`cudnn_peer` says why not otherwise; nothing is installed);
  - absolute ms against the peer's published table (lconv.paper.PEER_MS: flash-fft-conv, H100, gated, fp16, B = 64,
    H = 768): each row's ms scaled linearly to that grid (ms_ours_full_grid) next to the peer's ms;
  - achieved memory bandwidth = bytes of u, y, k (and gates) moved once / time, against the device's peak
    (`PEAK_BANDWIDTH`: H100 SXM 3.35 TB/s, H100 PCIe 2.0, H200 4.8, A100 80GB 2.0); "fwd_bwd" rows count u, y, dy,
    du, k, dk (and gates, their gradients) once;
  - the paper's 128K comparison: S4D kernel generation (lconv.layers.S4DKernel) + FFT conv against a long conv
    with the kernel given (ours).
The grid keeps B ≥ 8 and even at every N (`scale_batch`: H shrinks first, down to MIN_H, then B down to 8, then H;
the peer's benchmark does the same with its set_B_H); B·H·L ≤ --max-elems (default 2^28, about 14 GB for the fp32
complex baseline's fwd+bwd); every row reports ns per element and the time scaled linearly to the full B = 64,
H = 768 grid. The targets (lconv.paper.TARGET_*) are judged by `check_targets`: MET, NOT MET, or NOT MEASURED (a
target whose every N and dtype was not measured is never MET).
Results: results/bench-<device>-<UTC time>.{json,csv,png}, written atomically, with lconv.results.provenance().
`--no-graph` skips the CUDA-graph rows, `--merge a.json b.json …` combines runs of one device into one results set.
Without CUDA it prints "no GPU: skipping" and exits 0. `python -m lconv.kernels.device_check` (`make device-check`)
runs this grid with the kernel tests, time-boxed. Notebooks show the latest results without a GPU through
`load_latest`, `recorded_report` and `plot_results`.
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

from lconv.paper import (PEER_MS, PEER_SPEEDUP, TARGET_BW_FRACTION, TARGET_BW_MIN_N,  # noqa: F401
                         TARGET_FWD_BWD_VS_RFFT, TARGET_FWD_VS_RFFT, TARGET_HOST_US, TARGET_LEARNED_VS_FIXED,
                         TARGET_MIN_B, TARGET_S4D_128K, TARGET_SPEEDUP_MAX_N, TARGET_THREE_PASS_VS_RFFT)
from lconv.results import RESULTS_DIR, atomic_write, load_latest_bench as load_latest  # noqa: F401  (kernels.bench.load_latest)

FULL_B, FULL_H = 64, 768
MODES = ("plain", "gated", "causal")  # the default grid
ALL_MODES = MODES + ("learned",)  # "learned": learned Butterfly blocks (dft1/dft2), fused sizes only, on request
LEARNED_NOISE = 0.01  # learned blocks timed at DFT + 0.01·(randn + i·randn), as lconv.learned_butterfly initialises
DTYPES = {"float16": torch.float16, "bfloat16": torch.bfloat16, "float32": torch.float32}
FULL_N = tuple(1 << e for e in range(8, 21))  # 256 … 1M
QUICK_N = (1024, 4096, 16384)
FUSED_MAX_N = 4096
MIN_H = 16  # scale_batch shrinks H to this before it shrinks B (the peer's set_B_H reaches H = 16 at 4M)
TARGET_DTYPES = ("float16", "bfloat16")  # the speed targets hold in both
SPEED_N = tuple(n for n in FULL_N if n <= TARGET_SPEEDUP_MAX_N)  # 256 … 64K: the 2.2× and 2× targets
THREE_PASS_GRID_N = tuple(n for n in FULL_N if n > FUSED_MAX_N)  # 8K … 1M
DEVICE_CHECK = "lconv.kernels.device_check"  # the "benchmark" field of `make device-check`'s results files
CUDNN_MIN_VERSION = 92600  # cudnn.ops.fft_causal_conv1d needs cuDNN ≥ 9.26.0 (NVIDIA's cuDNN frontend docs)

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
               "max_abs_diff", "peer_speedup", "peer_ms", "peer_torch_ms", "ms_cudnn_fft", "speedup_vs_cudnn", "note")


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


def scale_batch(B: int, H: int, L: int, max_elems: int, min_B: int = TARGET_MIN_B, min_H: int = MIN_H
                ) -> tuple[int, int]:
    """(B, H) shrunk so B·H·L ≤ max_elems, keeping B ≥ min_B and even: H first (down to min_H), then B (down to
    min_B, rounded down to even), then H again (never below 1). A B given below min_B is kept as it is."""
    if B * H * L <= max_elems:
        return B, H
    H2 = max(min(H, min_H), max_elems // (B * L))  # H first, not below min_H
    if B * H2 * L <= max_elems:
        return B, H2
    floor_B = min(B, max(min_B, 2))
    B2 = max(floor_B, max_elems // (H2 * L))
    B2 = max(floor_B, B2 - B2 % 2) if B2 > 1 else B2  # even
    if B2 * H2 * L <= max_elems:
        return B2, H2
    return B2, max(1, max_elems // (B2 * L))


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
    peer = PEER_MS.get(N) if (gated and case["dtype"] == "float16") else None  # the peer's table: gated fp16
    return {**case, "pass": pass_, "kernel": kernel, "ms_ours": ms.get("ours"), "ms_torch_complex": ms.get("complex"),
            "ms_torch_rfft": ms.get("rfft"), "speedup_vs_complex": _ratio(ms.get("complex"), ms.get("ours")),
            "speedup_vs_rfft": _ratio(ms.get("rfft"), ms.get("ours")), "ns_per_elem_ours": ns,
            "ms_ours_full_grid": full, "bytes": nbytes, "bw_ours_GBps": gbps, "bw_fraction_of_peak": frac,
            "peak_mem_ours_MB": mb.get("ours"), "peak_mem_complex_MB": mb.get("complex"),
            "peak_mem_rfft_MB": mb.get("rfft"), "max_abs_diff": max_abs_diff,
            "peer_speedup": PEER_SPEEDUP.get(N) if (gated and pass_ in ("fwd", "fwd_graph")) else None,
            "peer_ms": peer[1] if peer and pass_ in ("fwd", "fwd_graph") else None,
            "peer_torch_ms": peer[0] if peer and pass_ in ("fwd", "fwd_graph") else None,
            "ms_cudnn_fft": ms.get("cudnn"), "speedup_vs_cudnn": _ratio(ms.get("cudnn"), ms.get("ours")), "note": note}


STATUS = {True: "MET", False: "NOT MET", None: "NOT MEASURED"}


def target_status(target: dict) -> str:
    """MET / NOT MET / NOT MEASURED for one target of check_targets: nothing measured is never MET."""
    return STATUS[None] if target.get("ours") is None else STATUS[target.get("met")]


def _missing_text(missing) -> str:
    """'float16 N 512, 1024; bfloat16 N 256…65536 (9 N)' for a set of (N, dtype) pairs."""
    by_dtype = {}
    for n, d in sorted(missing, key=lambda nd: (nd[1], nd[0])):
        by_dtype.setdefault(d, []).append(n)
    parts = []
    for d, ns in by_dtype.items():
        parts.append(f"{d} N " + (", ".join(map(str, ns)) if len(ns) <= 3 else f"{ns[0]}…{ns[-1]} ({len(ns)} N)"))
    return "; ".join(parts)


def _judge(label: str, rows: list[dict], value, goal: float, higher: bool = True, need=None, where=None) -> dict:
    """One target: the worst value(row) over rows against goal (≥ goal when higher, else ≤). need: the (N, dtype)
    pairs the target covers; when some were not measured and none failed, it is NOT MEASURED (met None), not MET."""
    vals = [(r, value(r)) for r in rows if value(r) is not None]
    if not vals:
        return {"target": label, "ours": None, "where": "not measured", "met": None, "status": STATUS[None]}
    r, worst = (min if higher else max)(vals, key=lambda rv: rv[1])
    ok = worst >= goal if higher else worst <= goal
    missing = set(need or ()) - {(q["N"], q["dtype"]) for q, _ in vals}
    met = False if not ok else (None if missing else True)
    text = where(r) if where else f"worst at N={r['N']} {r['dtype']} {r['mode']} (B={r['B']}, H={r['H']})"
    if missing:
        text += f"; not measured: {_missing_text(missing)}"
    out = {"target": label, "ours": round(worst, 3), "where": text, "met": met}
    return {**out, "status": target_status(out)}


def check_targets(rows: list[dict], s4d: dict | None = None, host: list[dict] | None = None) -> list[dict]:
    """Each target (lconv.paper.TARGET_*) with what we measured and its standing: "met" True / False / None and
    "status" MET / NOT MET / NOT MEASURED. A target covering several N and dtypes is MET only when every one of them
    was measured and passed; a failure anywhere is NOT MET; no measurement is NOT MEASURED."""
    out = []

    def rows_of(pass_, mode=None, Nmax=None, Nmin=None):
        return [r for r in rows if r["pass"] == pass_ and (mode is None or r["mode"] == mode)
                and (Nmax is None or r["N"] <= Nmax) and (Nmin is None or r["N"] >= Nmin)]

    speed_need = {(n, d) for n in SPEED_N for d in TARGET_DTYPES}
    graph = any(r["pass"] == "fwd_graph" for r in rows)  # CUDA-graph forward rows: the same targets, GPU time only
    for pass_, target in (("fwd", TARGET_FWD_VS_RFFT), ("fwd_bwd", TARGET_FWD_BWD_VS_RFFT)) + (
            (("fwd_graph", TARGET_FWD_VS_RFFT),) if graph else ()):
        for mode in MODES:
            sel = [r for r in rows_of(pass_, mode, Nmax=TARGET_SPEEDUP_MAX_N) if r["speedup_vs_rfft"] is not None]
            Ns = sorted({r["N"] for r in sel})
            span = f"N {Ns[0]}…{Ns[-1]}" if Ns else f"every N {SPEED_N[0]}…{SPEED_N[-1]}"
            out.append(_judge(f"{pass_} ≥ {target}× over torch rfft conv, {span} ({mode})", sel,
                              lambda r: r["speedup_vs_rfft"], target, need=speed_need))
    tp_need = {(n, d) for n in THREE_PASS_GRID_N for d in TARGET_DTYPES}
    sel = [r for r in rows_of("fwd") if r["kernel"] == "three_pass" and r["mode"] in MODES and r["B"] >= TARGET_MIN_B]
    out.append(_judge(f"three-pass fwd not slower than torch rfft conv (≥ {TARGET_THREE_PASS_VS_RFFT}×), N "
                      f"{THREE_PASS_GRID_N[0]}…{THREE_PASS_GRID_N[-1]}, B ≥ {TARGET_MIN_B}", sel,
                      lambda r: r["speedup_vs_rfft"], TARGET_THREE_PASS_VS_RFFT, need=tp_need))
    for n, (_, peer_ms) in sorted(PEER_MS.items()):
        if n > FULL_N[-1]:
            continue  # the peer's 4M: beyond our kernels
        sel = [r for r in rows_of("fwd_graph", "gated") if r["N"] == n and r["dtype"] == "float16"]
        out.append(_judge(f"GPU time ≤ the peer's published {peer_ms} ms, gated fp16 N={n} (CUDA graph, scaled to "
                          f"B={FULL_B}, H={FULL_H})", sel, lambda r: r["ms_ours_full_grid"], peer_ms, higher=False,
                          where=lambda r: f"ms at B={r['B']}, H={r['H']}: {r['ms_ours']:.3f}"))
    for pass_ in ("fwd", "fwd_graph") if graph else ("fwd",):
        for r in rows_of(pass_, "gated"):
            ps = PEER_SPEEDUP.get(r["N"])  # the table, not the row: rows recorded before a column change agree
            if ps is not None and r["speedup_vs_complex"] is not None:
                out.append(_judge(f"gated {pass_} vs torch complex FFT ≥ peer's {ps}× (N={r['N']})", [r],
                                  lambda r: r["speedup_vs_complex"], ps, where=lambda r: r["dtype"]))
    bw_pass = "fwd_graph" if graph else "fwd"
    bw_need = {(n, d) for n in FULL_N if n >= TARGET_BW_MIN_N for d in TARGET_DTYPES}
    out.append(_judge(f"≥ {TARGET_BW_FRACTION:.0%} of peak HBM bandwidth, gated N ≥ {TARGET_BW_MIN_N} ({bw_pass})",
                      rows_of(bw_pass, "gated", Nmin=TARGET_BW_MIN_N), lambda r: r["bw_fraction_of_peak"],
                      TARGET_BW_FRACTION, need=bw_need))
    fixed = {(r["N"], r["dtype"], r["pass"]): r["ms_ours"] for r in rows if r["mode"] == "plain"}
    for pass_ in ("fwd", "fwd_bwd"):
        sel = [dict(r, ratio=r["ms_ours"] / fixed[(r["N"], r["dtype"], pass_)]) for r in rows_of(pass_, "learned")
               if r["ms_ours"] is not None and fixed.get((r["N"], r["dtype"], pass_))]
        out.append(_judge(f"learned Butterfly {pass_} within {TARGET_LEARNED_VS_FIXED}× of the fixed kernel", sel,
                          lambda r: r["ratio"], TARGET_LEARNED_VS_FIXED, higher=False,
                          where=lambda r: f"worst at N={r['N']} {r['dtype']}"))
    sel = [h for h in host or () if h.get("what") == "ours" and h.get("host_us") is not None]
    out.append(_judge(f"host time per forward call ≤ {TARGET_HOST_US:g} µs (GPU blocked)", sel,
                      lambda h: h["host_us"], TARGET_HOST_US, higher=False,
                      where=lambda h: f"worst at N={h['N']} {h['dtype']} {h['mode']}"))
    sp = (s4d or {}).get("speedup")
    s4d_row = [] if sp is None else [{"N": s4d.get("N"), "dtype": s4d.get("dtype"), "mode": "causal", "sp": sp}]
    out.append(_judge(f"128K: ≥ {TARGET_S4D_128K}× faster than S4D generation + FFT conv", s4d_row,
                      lambda r: r["sp"], TARGET_S4D_128K,
                      where=lambda r: f"B={s4d.get('B')} H={s4d.get('H')}"))
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
    host = [h for p in parts for h in p.get("host") or ()]
    s4d = next((p["s4d_128k"] for p in reversed(parts) if p.get("s4d_128k")), None)
    return {**parts[-1], "rows": rows, "host": host, "s4d_128k": s4d, "targets": check_targets(rows, s4d, host),
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


def cudnn_peer():
    """(fn, "") with fn(u, k, N) = NVIDIA's cudnn.ops.fft_causal_conv1d(u, k) — y[b, c, t] = Σ_j u[b, c, t−j]·k[c, j],
    k in FIR order as ours, k cast to u's dtype (its docs give one dtype for x and weight) — or (None, "not available:
    <reason>") when torch's cuDNN is older than 9.26 (CUDNN_MIN_VERSION), the cuDNN frontend package (`import cudnn`)
    is missing or has no ops.fft_causal_conv1d, or there is no GPU. Causal mode only (L = N/2). Nothing is installed."""
    if not torch.cuda.is_available():
        return None, "not available: no GPU"
    try:
        version = torch.backends.cudnn.version() if torch.backends.cudnn.is_available() else None
    except RuntimeError as exc:
        version, why = None, str(exc)
    else:
        why = "torch has no cuDNN"
    if version is None:
        return None, f"not available: {why}"
    if version < CUDNN_MIN_VERSION:
        return None, (f"not available: torch's cuDNN is {version}, fft_causal_conv1d needs ≥ {CUDNN_MIN_VERSION} "
                      "(cuDNN 9.26)")
    try:
        import cudnn
    except Exception as exc:  # ImportError, or the frontend failing to load its library
        return None, f"not available: the cuDNN frontend package does not import ({type(exc).__name__}: {exc})"
    op = getattr(getattr(cudnn, "ops", None), "fft_causal_conv1d", None)
    if op is None:
        return None, (f"not available: cudnn {getattr(cudnn, '__version__', '?')} has no cudnn.ops.fft_causal_conv1d")
    return (lambda u, k, N, *gates: op(u, k.to(u.dtype))), ""


def host_us(fn, calls: int = 50, block_ms: float = 200.0, block=None, sync=None, busy=None) -> dict:
    """Host time per call of fn(), µs, with the GPU queue blocked: one call first (compiles, caches), then
    block(block_ms) (torch.cuda._sleep: the GPU spins, so no call can wait for it), `calls` calls timed on the host,
    then sync(). Returns {"host_us", "calls", "gpu_busy"}: gpu_busy False means the GPU was idle before the loop ended
    (block_ms too short), and the number may include waits. block/sync/busy default to CUDA's (injectable for tests)."""
    import time

    if block is None:
        def block(ms):
            props = torch.cuda.get_device_properties(torch.cuda.current_device())
            rate = getattr(props, "clock_rate", 0) or 2_000_000  # kHz (cudaDeviceProp.clockRate); 2 GHz if unknown
            hz = rate * 1e3 if rate > 1e5 else rate * 1e6  # some builds report MHz
            torch.cuda._sleep(int(ms * 1e-3 * hz))
    sync = sync or torch.cuda.synchronize
    busy = busy or (lambda: not torch.cuda.current_stream().query())
    fn()
    sync()
    block(block_ms)
    t = time.perf_counter()
    for _ in range(calls):
        fn()
    dt = (time.perf_counter() - t) / calls
    still_busy = busy()
    sync()
    return {"host_us": dt * 1e6, "calls": calls, "gpu_busy": bool(still_busy)}


def _peak_memory(fn) -> int:
    """Peak bytes allocated above the current allocation while fn() runs once."""
    torch.cuda.synchronize()
    torch.cuda.reset_peak_memory_stats()
    base = torch.cuda.memory_allocated()
    fn()
    torch.cuda.synchronize()
    return torch.cuda.max_memory_allocated() - base


def case_inputs(case: dict, device, seed: int = 0):
    """u, k, [pregate, postgate], dy of one case: u, dy ~ 0.02·N(0, 1) in the case's dtype, k ~ N(0, 1) fp32."""
    gen = torch.Generator(device=device).manual_seed(seed)
    B, H, L = case["B"], case["H"], case["L"]
    dtype = DTYPES[case["dtype"]]
    u = (torch.randn(B, H, L, device=device, generator=gen) * 0.02).to(dtype)  # (B, H, L)
    k = torch.randn(H, L, device=device, generator=gen)  # (H, L)
    gates = ([torch.rand(B, H, L, device=device, generator=gen).to(dtype) for _ in range(2)]
             if case["mode"] == "gated" else [None, None])
    dy = (torch.randn(B, H, L, device=device, generator=gen) * 0.02).to(dtype)  # (B, H, L)
    return u, k, gates, dy


def case_impls(case: dict, device, cudnn_fn=None):
    """{name: fn(u, k, N, *gates)}, the reference for max_abs_diff, and the learned blocks (their grads are reset)."""
    N = case["N"]
    if case["mode"] == "learned":  # ours with learned blocks (their gradients too); the baselines time the plain conv
        from lconv.butterfly import learned_butterfly_conv

        blocks = [b.requires_grad_() for b in learned_blocks(N, device)]
        ref = lambda u, k, N, *g: learned_butterfly_conv(u.float(), k, N, *blocks)  # noqa: E731
        return {**IMPLS, "ours": lambda u, k, N, *g: ours(u, k, N, *g, blocks=blocks)}, ref, blocks
    impls = dict(IMPLS)
    if case["mode"] == "causal" and cudnn_fn is not None:
        impls["cudnn"] = cudnn_fn
    return impls, torch_complex_conv, []


def bench_case(case: dict, device: torch.device, peak: float | None, warmup: int = 25, rep: int = 100,
               graph: bool = False, backward: bool = True, cudnn_fn=None, timed: bool = True) -> list[dict]:
    """The rows of one case: "fwd" (per call), "fwd_graph" (CUDA-graph replays: the GPU's time without the host's
    per-call overhead, and without do_bench's L2 flush) and "fwd_bwd" (per call), for ours and the baselines (None
    where a run failed, with the reason in the row's note). timed=False (a CPU smoke run): every call runs once and
    is checked against the reference, nothing is timed (ms None)."""
    N = case["N"]
    u, k, gates, dy = case_inputs(case, device)
    gated = case["mode"] == "gated"
    kernel = "fused" if N <= FUSED_MAX_N else "three_pass"
    impls, ref, blocks = case_impls(case, device, cudnn_fn)
    cuda = device.type == "cuda"
    notes = []
    with torch.no_grad():
        try:
            diff = (impls["ours"](u, k, N, *gates).float() - ref(u, k, N, *gates).float()).abs().max().item()
        except torch.cuda.OutOfMemoryError:
            diff = None
            notes.append("diff: oom")
        if "cudnn" in impls:
            try:
                d = (impls["cudnn"](u, k, N).float() - ref(u, k, N).float()).abs().max().item()
                notes.append(f"cudnn max_abs_diff {d:.2e}")
            except Exception as exc:  # noqa: BLE001 (a peer that fails is reported, not fatal)
                notes.append(f"cudnn: {type(exc).__name__}: {str(exc)[:120]}")
                impls.pop("cudnn")
    if cuda:
        torch.cuda.empty_cache()
    ms = {"fwd": {}, "fwd_graph": {}, "fwd_bwd": {}}
    mem = {"fwd": {}, "fwd_graph": {}, "fwd_bwd": {}}

    def attempt(pass_, name, run):
        try:
            ms[pass_][name] = run()
        except torch.cuda.OutOfMemoryError:
            ms[pass_][name] = None
            notes.append(f"{name} {pass_}: oom")
        except Exception as exc:  # noqa: BLE001 (e.g. a graph capture that fails: report it, go on)
            ms[pass_][name] = None
            notes.append(f"{name} {pass_}: {type(exc).__name__}: {str(exc)[:120]}")
        if cuda:
            torch.cuda.empty_cache()

    for name, fn in impls.items():
        call = lambda: fn(u, k, N, *gates)  # noqa: E731
        with torch.no_grad():
            if not timed:
                attempt("fwd", name, lambda: (call(), None)[1])
            else:
                from triton.testing import do_bench, do_bench_cudagraph

                def per_call():
                    mem["fwd"][name] = mem["fwd_graph"][name] = _peak_memory(call)
                    return do_bench(call, warmup=warmup, rep=rep, return_mode="median")
                attempt("fwd", name, per_call)  # first: tables and compiled kernels exist before any capture
                if graph:
                    attempt("fwd_graph", name, lambda: do_bench_cudagraph(call, rep=rep, return_mode="median"))
        if not backward:
            continue
        leaves = [t.detach().requires_grad_() for t in (u, k, *[g for g in gates if g is not None])]

        def step():
            for t in leaves + blocks:
                t.grad = None
            fn(leaves[0], leaves[1], N, *(leaves[2:] if gated else [])).backward(dy)

        if not timed:
            attempt("fwd_bwd", name, lambda: (step(), None)[1])
        else:
            from triton.testing import do_bench

            def fwd_bwd():
                mem["fwd_bwd"][name] = _peak_memory(step)
                return do_bench(step, warmup=warmup, rep=rep, grad_to_none=leaves + blocks, return_mode="median")
            attempt("fwd_bwd", name, fwd_bwd)
    note = "; ".join(notes)
    passes = ["fwd"] + (["fwd_graph"] if graph and timed else []) + (["fwd_bwd"] if backward else [])
    return [finish_row(case, p, kernel, ms[p], mem[p], peak, diff, note + ("; cuda graph" if p == "fwd_graph" else ""))
            for p in passes]


def host_case(case: dict, device, calls: int = 50, block_ms: float = 200.0, timed: bool = True) -> list[dict]:
    """Host µs per forward call (no autograd) of ours and torch's rfft conv for one case (`host_us`); timed=False
    runs each call once and records host_us None."""
    N = case["N"]
    u, k, gates, _ = case_inputs(case, device)
    out = []
    for what, fn in (("ours", ours), ("rfft", torch_rfft_conv)):
        row = {k_: case[k_] for k_ in ("N", "L", "B", "H", "dtype", "mode")}
        row["what"] = what
        with torch.no_grad():
            if timed:
                row.update(host_us(lambda: fn(u, k, N, *gates), calls=calls, block_ms=block_ms))
            else:
                fn(u, k, N, *gates)
                row.update(host_us=None, calls=1, gpu_busy=None)
        out.append(row)
    return out


def bench_three_pass_passes(device, N: int, B: int, H: int, dtype=torch.float16, warmup: int = 5, rep: int = 20,
                            timed: bool = True) -> list[dict]:
    """The three-pass forward split into its launches (k_f: rfft + gather; pass 1, 2, 3), each timed on its own
    (triton.testing.do_bench, median ms; None when not timed) with the bytes kernels.io_model.three_pass_io counts for
    it and the bandwidth they imply: where the time of N > 4096 goes. Gated, L = N, k scaled so |k_f| ≤ 1 (pass 2 runs
    in place, repeatedly: the values stay bounded). Rows: N, B, H, dtype, pass, ms, bytes, GBps."""
    from . import three_pass as tp
    from .io_model import three_pass_io

    torch.manual_seed(0)
    u = torch.randn(B, H, N, device=device).to(dtype)
    pre, post = torch.rand_like(u), torch.rand_like(u)
    k = torch.randn(H, N, device=device)
    k = k / torch.fft.rfft(k).abs().amax(dim=-1, keepdim=True)  # |k_f| ≤ 1
    k_f = tp.k_f_three_pass(k, N)
    z, zs1 = tp._pass1(u, pre, N, dtype)
    zs2 = tp._pass2(z, zs1, k_f, N, u)
    y = torch.empty_like(u)
    steps = {t.step: t.total for t in three_pass_io(N, B, H, dtype, L=N)}
    gate = u.numel() * u.element_size()  # pregate read by pass 1, postgate by pass 3 (three_pass_io counts no gates)
    io = {"k_f": sum(v for s, v in steps.items() if s.startswith(("pad k", "rfft(k)", "k_f:"))),
          "pass1": steps["pass 1: read u"] + steps["pass 1: write the outer spectrum"] + gate,
          "pass2": steps["pass 2: read and rewrite it in place"] + steps["pass 2: read k_f"],
          "pass3": steps["pass 3: read it"] + steps["pass 3: write y"] + gate}
    fns = {"k_f": lambda: tp.k_f_three_pass(k, N), "pass1": lambda: tp._pass1(u, pre, N, dtype),
           "pass2": lambda: tp._pass2(z, zs1, k_f, N, u), "pass3": lambda: tp._pass3(z, zs2, N, B, N, y, gate1=post)}
    rows = []
    for name, fn in fns.items():
        fn()
        ms = None
        if timed:
            from triton.testing import do_bench

            ms = do_bench(fn, warmup=warmup, rep=rep, return_mode="median")
        rows.append(dict(N=N, B=B, H=H, dtype=str(dtype).removeprefix("torch."), pass_=name, ms=ms, bytes=io[name],
                         GBps=None if ms is None else io[name] / ms / 1e6))
    return rows


def bench_s4d_128k(device: torch.device, B: int = 4, H: int = 256, L: int = 1 << 17, dtype=torch.float16,
                   warmup: int = 10, rep: int = 50, timed: bool = True) -> dict:
    """Forward ms of S4D (kernel generation by lconv.layers.S4DKernel + lconv.conv.fft_conv) vs ours (k given);
    timed=False runs each once (ms None)."""
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
            if not timed:
                fn()
                out[f"ms_{name}"] = None
                continue
            from triton.testing import do_bench
            try:
                out[f"ms_{name}"] = do_bench(fn, warmup=warmup, rep=rep, return_mode="median")
            except torch.cuda.OutOfMemoryError:
                out[f"ms_{name}"] = None
            torch.cuda.empty_cache()
    out["speedup"] = _ratio(out["ms_s4d_gen_plus_fft_conv"], out["ms_ours_kernel_given"])
    return out


def side_by_side(results: dict, dtype: str = "float16") -> str:
    """One markdown table per mode and N: ours and torch rfft per call and in a CUDA graph, host µs per call, the
    ratios, ours scaled to the peer's grid next to the peer's published ms (gated fp16), cuDNN's fft conv (causal)."""
    from lconv.results import markdown_table

    by = {(r["N"], r["mode"], r["pass"]): r for r in results["rows"] if r["dtype"] == dtype}
    host = {(h["N"], h["mode"], h["what"]): h.get("host_us") for h in results.get("host") or ()
            if h["dtype"] == dtype}
    table = []
    for (n, mode) in sorted({(r["N"], r["mode"]) for r in results["rows"] if r["dtype"] == dtype},
                            key=lambda nm: (ALL_MODES.index(nm[1]), nm[0])):
        f, g, fb = (by.get((n, mode, p)) or {} for p in ("fwd", "fwd_graph", "fwd_bwd"))
        base = f or g or fb
        table.append({"N": n, "mode": mode, "B": base.get("B"), "H": base.get("H"),
                      "ours ms": f.get("ms_ours"), "ours graph ms": g.get("ms_ours"),
                      "ours host µs": host.get((n, mode, "ours")), "rfft ms": f.get("ms_torch_rfft"),
                      "rfft graph ms": g.get("ms_torch_rfft"), "× rfft": f.get("speedup_vs_rfft"),
                      "× rfft graph": g.get("speedup_vs_rfft"), "fwd+bwd × rfft": fb.get("speedup_vs_rfft"),
                      "graph ms at B=64,H=768": g.get("ms_ours_full_grid"), "peer ms": g.get("peer_ms") or f.get("peer_ms"),
                      "cuDNN fft ms": f.get("ms_cudnn_fft"), "× cuDNN": f.get("speedup_vs_cudnn"),
                      "GB/s (graph)": g.get("bw_ours_GBps")})
    prov = results.get("provenance", {})
    head = (f"{dtype} — {prov.get('device', '?')}, torch {prov.get('torch', '?')}, triton {prov.get('triton', '?')}, "
            f"CUDA {prov.get('cuda', '?')}, cuDNN {prov.get('cudnn', '?')}, commit {prov.get('commit', '?')}, "
            f"{prov.get('date', '?')}")
    cols = tuple(table[0]) if table else ("N", "mode")
    return head + "\n\n" + markdown_table(table, columns=cols)


def print_targets(targets: list[dict]) -> None:
    """Where we stand against each target, honestly: MET, NOT MET, or NOT MEASURED (never MET unmeasured)."""
    print("\nTargets:")
    for t in targets:
        ours = "–" if t["ours"] is None else t["ours"]
        print(f"  [{target_status(t):<12}] {t['target']}: ours {ours} ({t['where']})")


def main(argv=None) -> int:
    """Run the benchmark grid; 0 on success or when there is no GPU."""
    parser = argparse.ArgumentParser(prog="python -m lconv.kernels.bench", description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help=f"short grid: N in {QUICK_N}, fp16 only")
    parser.add_argument("--out", default=str(RESULTS_DIR), help="results directory (default: results/)")
    parser.add_argument("--N", type=int, nargs="+", default=None, help="FFT sizes (default: 256 … 1M)")
    parser.add_argument("--dtypes", nargs="+", default=["float16", "bfloat16"], choices=sorted(DTYPES))
    parser.add_argument("--modes", nargs="+", default=list(MODES), choices=ALL_MODES,
                        help="plain, gated, causal (default: these three); learned: learned Butterfly blocks, N ≤ 4096")
    parser.add_argument("--max-elems", type=int, default=1 << 28, help="cap on B·H·L (H, then B ≥ 8, scaled down)")
    parser.add_argument("--no-s4d", action="store_true", help="skip the 128K S4D comparison")
    parser.add_argument("--no-host", action="store_true", help="skip the host µs per call (GPU blocked)")
    parser.add_argument("--warmup", type=int, default=None, help="do_bench warm-up, ms (default 25; quick 10)")
    parser.add_argument("--rep", type=int, default=None, help="do_bench repetitions, ms (default 100; quick 30)")
    parser.add_argument("--no-graph", action="store_true", help="skip the CUDA-graph forward rows")
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
    cudnn_fn, why = cudnn_peer()
    print("cuDNN fft_causal_conv1d: " + ("joins the causal rows" if cudnn_fn else why))
    cases = grid(args.quick, args.N, tuple(args.dtypes), tuple(args.modes), max_elems=args.max_elems)
    warmup = args.warmup if args.warmup is not None else (10 if args.quick else 25)
    rep = args.rep if args.rep is not None else (30 if args.quick else 100)
    stamp = _dt.datetime.now(_dt.timezone.utc).strftime("%Y%m%dT%H%M%SZ")
    results = {"benchmark": "lconv.kernels.bench", "provenance": prov, "peak_bandwidth_Bps": peak,
               "args": vars(args), "rows": [], "host": [], "s4d_128k": None, "cudnn": why or "measured",
               "targets": []}
    for case in cases:
        for row in bench_case(case, device, peak, warmup, rep, graph=not args.no_graph, cudnn_fn=cudnn_fn):
            results["rows"].append(row)
            print(row_line(row), flush=True)
        if not args.no_host and case["dtype"] == "float16" and case["mode"] != "learned":
            results["host"] += host_case(case, device)
        write_results(results, args.out, stamp, plot=False)  # checkpoint: a run cut short keeps its rows
    if not args.no_s4d:
        results["s4d_128k"] = bench_s4d_128k(device, warmup=5 if args.quick else 10, rep=20 if args.quick else 50)
        s = results["s4d_128k"]
        print(f"128K: S4D generation + FFT conv {s['ms_s4d_gen_plus_fft_conv']} ms, ours (kernel given) "
              f"{s['ms_ours_kernel_given']} ms: {s['speedup']}×")
    results["targets"] = check_targets(results["rows"], results["s4d_128k"], results["host"])
    print("\n" + side_by_side(results))
    print_targets(results["targets"])
    paths = write_results(results, args.out, stamp)
    print("wrote " + ", ".join(str(p) for p in paths.values()))
    return 0


def row_line(row: dict) -> str:
    """One printed line per result row."""
    fmt = lambda x, f=".3f": "  –  " if x is None else format(x, f)  # noqa: E731
    return (f"N={row['N']:>7} L={row['L']:>7} B={row['B']:>2} H={row['H']:>3} {row['dtype']:>8} {row['mode']:>7} "
            f"{row['pass']:>9}: ours {fmt(row['ms_ours'])} ms, complex {fmt(row['ms_torch_complex'])}, rfft "
            f"{fmt(row['ms_torch_rfft'])}  ({fmt(row['speedup_vs_complex'], '.2f')}× / "
            f"{fmt(row['speedup_vs_rfft'], '.2f')}×; {fmt(row['bw_ours_GBps'], '.0f')} GB/s "
            f"{fmt(row['bw_fraction_of_peak'], '.0%')}) {row['note']}")


if __name__ == "__main__":
    sys.exit(main())


# ---------------------------------------------------------------------------------------------------------------
# Reading recorded results back (notebooks 03 and 04)
# ---------------------------------------------------------------------------------------------------------------

def load_shown(results_dir=RESULTS_DIR) -> dict | None:
    """What notebook 03 shows without a GPU: the newest `make device-check` results in results_dir (benchmark
    DEVICE_CHECK), else the newest benchmark there (the recorded H100 run), else None. Smoke runs never count."""
    from lconv.results import load_latest_bench

    return load_latest_bench(results_dir, benchmark=DEVICE_CHECK) or load_latest_bench(results_dir)


def recorded_report(shown, label, results_dir=RESULTS_DIR) -> tuple[str, list[dict]]:
    """(text, rows) for a loaded benchmark (load_latest; None: nothing recorded): the fp16 tables per pass, the
    targets, the 128K S4D comparison and the host overhead, in words; rows: Results.add keyword dicts of the causal
    forward speed-ups against the paper's target (lconv.paper.TARGET_FWD_VS_RFFT)."""
    if shown is None:
        return (f"There are NO recorded GPU results yet in {results_dir}: this workbook has not been benchmarked on a "
                "GPU.\nTo produce them, run `make device-check` (python -m lconv.kernels.device_check) or `make bench` "
                "on a machine with an NVIDIA GPU and commit the results/bench-*.json|csv|png it writes."), []
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        print(f"{label} — {shown['path']}")
        for pass_ in ("fwd", "fwd_graph", "fwd_bwd"):  # per call (host overhead included); CUDA graph; fwd+bwd
            if any(r["pass"] == pass_ and r["dtype"] == "float16" for r in shown["rows"]):
                print(f"\n### {pass_}\n" + results_table(shown, pass_, "float16"))
        print("\n### side by side: per call, CUDA graph, host µs, the peer's published ms\n" + side_by_side(shown))
        print("\nThe targets judged now on these rows (lconv.paper's current targets; a target not measured at every N "
              "and dtype it covers is NOT MEASURED, never MET):")
        print_targets(check_targets(shown["rows"], shown.get("s4d_128k"), shown.get("host")))
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
    lines += [f"  [{target_status(t)}] {t['target']}: {t['ours']} ({t['where']})"
              for t in check_targets(recorded["rows"]) if t["target"].startswith("learned")]
    return "\n".join(lines)
