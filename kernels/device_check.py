"""python -m lconv.kernels.device_check (`make device-check`): everything a GPU session should check, in one command.

On one GPU, in at most --budget-s seconds (default 540, i.e. 9 minutes, Triton compiles included), stage by stage:

  environment  provenance (device, torch, triton, CUDA, cuDNN, commit, date), peak HBM bandwidth, whether NVIDIA's
               cuDNN fft_causal_conv1d can join as a second peer (`bench.cudnn_peer`), whether pytest is there;
  tests        the kernel tests compiled on the GPU (tests/conftest.py's `kernel_device` puts their tensors on CUDA):
               TEST_FILES, in that order — fused and three-pass, fp32/fp16/bf16, forward and backward, gates, learned
               blocks — in a pytest subprocess with its own time box, spread over pytest-xdist workers (one core
               each: the stage is bound by Triton's compiles); a box that runs out reports the tests that finished
               and says how many did not run;
  host         host µs per forward call with the GPU blocked (`bench.host_us`), ours and torch's rfft conv;
  s4d_128k     the paper's 128K comparison: S4D kernel generation + FFT conv against a long conv with k given;
  passes       the three-pass forward split into its launches (k_f, pass 1, 2, 3) at PASSES_N, each timed alone with
               the bytes kernels.io_model counts for it: where the time of N > 4096 goes (no target; a diagnosis);
  bench        the benchmark grid (`bench.grid`, B ≥ 8 and even at every N): per call, CUDA graph and fwd+bwd rows side
               by side, fp16 and bf16, plain / gated / causal at N = 256 … 1M, learned blocks at N ≤ 4096, cuDNN's
               fft conv in the causal rows when available; smallest N first, so a box that runs out loses the
               largest N (reported), not the targets at small N.
Each stage runs in its own Python process with a timeout (a crash, a hang or a CUDA error in one stage cannot take the
others down); the bench stage also stops itself between cases before its deadline. After every stage the results file
is rewritten atomically — results/bench-<device>-<UTC time>.{json,csv} (+ .png at the end), the format of
lconv.kernels.bench with "host", "stages", "tests" and "cudnn" added — so a run cut short keeps what it measured.
At the end it prints the side-by-side table and every target (lconv.paper.TARGET_*, judged by bench.check_targets)
as MET / NOT MET / NOT MEASURED with the number.

GPU machine without a venv or internet: `make device-check SYSTEM_PYTHON=1` (its own torch and triton; only the
repository and /tmp are written: Triton's, CUDA's and matplotlib's caches go to /tmp unless set). Set LCONV_COMMIT to
the commit hash where the copy has no .git. `--smoke` (CPU, Triton's interpreter, tiny sizes, a handful of tests, no
timings: every speed target reads NOT MEASURED) checks the plumbing; tests/test_device_check.py runs it.
"""
from __future__ import annotations

import argparse
import datetime as _dt
import json
import os
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]  # kernels/ → the repository root (also through the symlink lconv/kernels)
TMP = Path(tempfile.gettempdir())
STAGES = ("environment", "tests", "host", "s4d_128k", "passes", "bench")
# The kernel tests, most basic first (a box that runs out cuts the end of the list).
TEST_FILES = ("tests/test_kernels.py", "tests/test_host_path.py", "tests/test_gates.py", "tests/test_learned_kernel.py",
              "tests/test_three_pass.py")
SMOKE_TESTS = ("tests/test_kernels.py::test_forward_backward_match_fp64[N256-L127-float16]",
               "tests/test_gates.py::test_gated_forward_backward_match_fp64[N256-L127-float16]",
               "tests/test_learned_kernel.py::test_per_channel_blocks_with_gates",
               "tests/test_three_pass.py::test_issue14_raw_pixels_do_not_overflow[False-dtype0]")
# Seconds per stage (GPU): the bench stage gets whatever the others leave of the budget.
MAX_TEST_WORKERS = 12  # pytest-xdist processes of the tests stage (each compiles Triton kernels on its own core)
BOXES = {"tests": 170, "host": 45, "s4d_128k": 40, "passes": 30}
PASSES_N = (16384, 1 << 18, 1 << 20)  # the three-pass forward split into its launches at these N (fp16, B = 8)
RESERVE_S = 15  # kept back for writing results and the plot
HOST_N = (256, 1024, 4096, 16384, 262144)  # host µs per call at these N (fp16, each mode; ours and rfft)
SMOKE_CASES = dict(N=(256, 8192), B=2, H=2)


# ---------------------------------------------------------------------------------------------------------------
# The plan (no GPU needed; tested on CPU)
# ---------------------------------------------------------------------------------------------------------------

def bench_cases(smoke: bool = False) -> list[dict]:
    """The device-check grid, smallest N first: plain/gated/causal in fp16 and bf16 at N = 256 … 1M, learned blocks
    at the fused sizes. smoke: N = 256 (fused) and 8192 (three-pass), fp16, B = 2, H = 2."""
    from .bench import ALL_MODES, FULL_N, MODES, grid

    if smoke:
        return grid(Ns=SMOKE_CASES["N"], dtypes=("float16",), modes=ALL_MODES, B=SMOKE_CASES["B"],
                    H=SMOKE_CASES["H"])
    cases = grid(Ns=FULL_N, dtypes=("float16", "bfloat16"), modes=MODES + ("learned",))
    return sorted(cases, key=lambda c: c["N"])  # stable: per N, fp16 before bf16, modes in order


def host_cases(smoke: bool = False) -> list[dict]:
    """The cases whose host µs per call are measured: fp16, every mode, N in HOST_N (smoke: N = 256, B = H = 2)."""
    from .bench import MODES, grid

    if smoke:
        return grid(Ns=(256,), dtypes=("float16",), modes=MODES, B=SMOKE_CASES["B"], H=SMOKE_CASES["H"])
    return grid(Ns=HOST_N, dtypes=("float16",), modes=MODES)


def stage_timeout(stage: str, remaining: float, later: list[str]) -> float:
    """Seconds stage may run: its box (the bench stage: all that is left), never more than remaining minus what the
    later stages' boxes and RESERVE_S need at least (a quarter of each box), never below 0."""
    keep = RESERVE_S + sum(BOXES.get(s, 60) / 4 for s in later)
    box = BOXES.get(stage, remaining)
    return max(0.0, min(box, remaining - keep))


_OUTCOMES = "PASSED|FAILED|ERROR|SKIPPED|XFAIL|XPASS"
_RESULT = re.compile(rf"^(tests/\S.*?::.+?) ({_OUTCOMES})\b")  # pytest -v
_RESULT_XDIST = re.compile(rf"^\[gw\d+\] \[\s*\d+%\] ({_OUTCOMES}) (tests/\S.*?::.+?)\s*$")  # pytest -v -n W
_COLLECTED = re.compile(r"collected (\d+) items?|\d+ workers \[(\d+) items?\]")


def parse_pytest(output: str) -> dict:
    """Counts and failing node ids from `pytest -v` output, serial or through pytest-xdist (finished or cut
    short)."""
    counts, failed = {}, []
    for line in output.splitlines():
        line = line.strip()
        m = _RESULT.match(line)
        node, outcome = (m.group(1), m.group(2)) if m else (None, None)
        if m is None and (m := _RESULT_XDIST.match(line)):
            node, outcome = m.group(2), m.group(1)
        if outcome:
            counts[outcome] = counts.get(outcome, 0) + 1
            if outcome in ("FAILED", "ERROR"):
                failed.append(node)
    collected = _COLLECTED.search(output)
    return {"counts": counts, "failed": failed,
            "collected": int(collected.group(1) or collected.group(2)) if collected else None,
            "finished": sum(counts.values())}


def pytest_workers(smoke: bool) -> int:
    """pytest-xdist workers for the tests stage: 0 (serial) in smoke mode or without xdist, else the CPUs this process
    may use less two, between 2 and MAX_TEST_WORKERS. The stage is bound by Triton compiles, not the GPU: the
    selection launches 366 distinct kernel specialisations, 1–15 s each to compile on one core (sm_90, measured
    on the 2-core CPU machine, `make compile-check`: 387 s in all), far past the stage's box one after another."""
    import importlib.util

    if smoke or importlib.util.find_spec("xdist") is None:
        return 0
    return max(2, min(MAX_TEST_WORKERS, len(os.sched_getaffinity(0)) - 2))


# ---------------------------------------------------------------------------------------------------------------
# Stages that run in a child process: python -m lconv.kernels.device_check --stage NAME --part FILE
# ---------------------------------------------------------------------------------------------------------------

def _pass_line(r: dict) -> str:
    """One three-pass launch of the passes stage: ms and GB/s ('–' where not timed) and the bytes io_model counts."""
    ms = "–" if r["ms"] is None else f"{r['ms']:.3f}"
    gbps = "–" if r["GBps"] is None else f"{r['GBps']:.0f}"
    return f"{r['pass_']:>5}: {ms} ms, {r['bytes'] / 1e6:.1f} MB, {gbps} GB/s"


def _write_part(path, part: dict) -> None:
    from lconv.results import write_json_atomic

    write_json_atomic(path, part)


def run_child_stage(stage: str, part_path: str, smoke: bool, deadline_s: float) -> int:
    """One measuring stage in this (child) process; its results go to part_path after every unit of work."""
    import torch

    from . import bench

    t_end = time.monotonic() + deadline_s
    device = torch.device("cpu" if smoke else "cuda")
    timed = not smoke
    part = {"stage": stage, "rows": [], "host": [], "s4d_128k": None, "complete": False, "notes": []}
    if stage == "bench":
        from lconv.results import device_name

        peak = bench.peak_bandwidth(device_name(device))
        cudnn_fn, why = bench.cudnn_peer()
        part["cudnn"] = why or "measured in the causal rows"
        cases = bench_cases(smoke)
        for i, case in enumerate(cases):
            if time.monotonic() > t_end:
                part["notes"].append(f"stopped before its deadline: {len(cases) - i} of {len(cases)} cases not run, "
                                     f"from N={case['N']} {case['dtype']} {case['mode']}")
                break
            rows = bench.bench_case(case, device, peak, warmup=5, rep=20, graph=timed, cudnn_fn=cudnn_fn, timed=timed)
            part["rows"] += rows
            for row in rows:
                print(bench.row_line(row), flush=True)
            _write_part(part_path, part)
        else:
            part["complete"] = True
    elif stage == "host":
        for case in host_cases(smoke):
            if time.monotonic() > t_end:
                part["notes"].append(f"stopped before its deadline at N={case['N']} {case['mode']}")
                break
            calls = 10 if case["N"] >= 1 << 18 else 50  # the GPU runs the queued calls after the block
            part["host"] += bench.host_case(case, device, calls=calls, timed=timed)
            for h in part["host"][-2:]:
                print(f"host N={h['N']:>7} {h['mode']:>6} {h['what']:>5}: {h['host_us']} µs "
                      f"(GPU still busy after the loop: {h['gpu_busy']})", flush=True)
            _write_part(part_path, part)
        else:
            part["complete"] = True
    elif stage == "passes":
        for N in ((8192,) if smoke else PASSES_N):
            if time.monotonic() > t_end:
                part["notes"].append(f"stopped before its deadline at N={N}")
                break
            B, H = (2, 2) if smoke else bench.scale_batch(bench.TARGET_MIN_B, bench.FULL_H, N, 1 << 26)
            rows = bench.bench_three_pass_passes(device, N, B, H, timed=timed)
            part["passes"] = part.get("passes", []) + rows
            for r in rows:
                print(f"passes N={N:>7} B={B} H={H} {_pass_line(r)}", flush=True)
            _write_part(part_path, part)
        else:
            part["complete"] = True
    elif stage == "s4d_128k":
        kw = dict(B=2, H=2, L=128, timed=False) if smoke else dict(warmup=5, rep=20)
        part["s4d_128k"] = bench.bench_s4d_128k(device, **kw)
        part["complete"] = True
        print(f"s4d_128k: {part['s4d_128k']}", flush=True)
    else:
        raise ValueError(f"unknown child stage {stage!r}")
    _write_part(part_path, part)
    return 0


# ---------------------------------------------------------------------------------------------------------------
# The parent: runs the stages, merges their parts, writes results, prints the targets
# ---------------------------------------------------------------------------------------------------------------

def child_env(smoke: bool) -> dict:
    """The environment of every child: caches under /tmp (nothing written outside the repository and /tmp), the
    repository importable without installation, Triton's interpreter in smoke runs."""
    env = dict(os.environ)
    for var, sub in (("TRITON_CACHE_DIR", "lconv-triton-cache"), ("MPLCONFIGDIR", "lconv-matplotlib"),
                     ("CUDA_CACHE_PATH", "lconv-cuda-cache"), ("TORCHINDUCTOR_CACHE_DIR", "lconv-inductor-cache")):
        env.setdefault(var, str(TMP / sub))
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(REPO), env.get("PYTHONPATH", "")) if p)
    env["PYTHONDONTWRITEBYTECODE"] = "1"
    if smoke:
        env["TRITON_INTERPRET"] = "1"
    return env


def run_process(cmd: list[str], timeout: float, env: dict, log_path: Path) -> tuple[str, int | None, str]:
    """Run cmd with its output streamed to log_path; (status "ok" | "failed" | "timed out", rc, output)."""
    with open(log_path, "w") as log:
        proc = subprocess.Popen(cmd, cwd=REPO, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        try:
            rc = proc.wait(timeout=max(1.0, timeout))
            status = "ok" if rc == 0 else "failed"
        except subprocess.TimeoutExpired:
            import signal

            try:
                os.killpg(proc.pid, signal.SIGKILL)  # the stage's own process group only
            except ProcessLookupError:
                pass
            proc.wait()
            rc, status = None, "timed out"
    return status, rc, log_path.read_text(errors="replace")


def environment(smoke: bool) -> dict:
    """Provenance, the peak bandwidth, the second peer's availability, pytest's presence."""
    import importlib.util

    from lconv.results import provenance

    from . import bench

    prov = provenance("cpu" if smoke else "auto")
    _, why = bench.cudnn_peer()
    return {"provenance": prov, "peak_bandwidth_Bps": bench.peak_bandwidth(prov["device"]),
            "cudnn": why or "available: cudnn.ops.fft_causal_conv1d joins the causal rows",
            "pytest": importlib.util.find_spec("pytest") is not None}


def run(out_dir, budget_s: float = 540.0, smoke: bool = False, stages=STAGES, tests=None,
        python: str = sys.executable) -> dict:
    """Run the stages within budget_s seconds; returns the results dict (also written to out_dir as it goes)."""
    from . import bench

    t0 = time.monotonic()
    stamp = _dt.datetime.now(_dt.timezone.utc).strftime("%Y%m%dT%H%M%SZ")
    env = child_env(smoke)
    os.environ.update({k: env[k] for k in ("MPLCONFIGDIR",)})  # the plot at the end, in this process
    work = Path(tempfile.mkdtemp(prefix="lconv-device-check-"))
    info = environment(smoke)
    results = {"benchmark": bench.DEVICE_CHECK, "smoke": smoke, "provenance": info["provenance"],
               "peak_bandwidth_Bps": info["peak_bandwidth_Bps"], "cudnn": info["cudnn"],
               "args": {"budget_s": budget_s, "smoke": smoke, "stages": list(stages)},
               "rows": [], "host": [], "s4d_128k": None, "passes": [], "tests": None, "stages": [], "targets": []}
    print(f"device-check {'(smoke: CPU, interpreter, no timings) ' if smoke else ''}on {info['provenance']['device']}: "
          f"torch {info['provenance']['torch']}, triton {info['provenance']['triton']}, CUDA "
          f"{info['provenance']['cuda']}, cuDNN {info['provenance']['cudnn']}, commit {info['provenance']['commit']}; "
          f"budget {budget_s:.0f} s; results in {out_dir}", flush=True)
    print(f"  cuDNN fft_causal_conv1d: {info['cudnn']}", flush=True)
    results["stages"].append({"stage": "environment", "status": "ok", "seconds": round(time.monotonic() - t0, 1),
                              "detail": f"pytest {'present' if info['pytest'] else 'MISSING'}"})

    def save(plot=False):
        results["targets"] = bench.check_targets(results["rows"], results["s4d_128k"], results["host"])
        try:
            return bench.write_results(results, out_dir, stamp, plot=plot)
        except ImportError as exc:  # no matplotlib on this machine: JSON and CSV only
            results["stages"].append({"stage": "plot", "status": "skipped", "seconds": 0, "detail": str(exc)})
            return bench.write_results(results, out_dir, stamp, plot=False)

    paths = save()
    todo = [s for s in stages if s != "environment"]
    for i, stage in enumerate(todo):
        remaining = budget_s - (time.monotonic() - t0)
        timeout = stage_timeout(stage, remaining, todo[i + 1:])
        t_stage = time.monotonic()
        record = {"stage": stage}
        if timeout < 5:
            record.update(status="skipped", seconds=0, detail=f"no time left in the {budget_s:.0f} s budget")
        elif stage == "tests":
            if not info["pytest"]:
                record.update(status="skipped", seconds=0, detail="not available: pytest is not installed")
            else:
                selection = list(tests or (SMOKE_TESTS if smoke else TEST_FILES))
                # -o addopts=: pyproject's --timeout needs pytest-timeout, which a GPU machine may lack (the stage
                # has its own time box)
                workers = pytest_workers(smoke)
                cmd = [python, "-m", "pytest", "-v", "-o", "addopts=", "-p", "no:cacheprovider", "--tb=line",
                       "-W", "ignore", *(["-n", str(workers)] if workers else []), *selection]
                status, rc, output = run_process(cmd, timeout, env, work / "tests.log")
                summary = parse_pytest(output)
                summary["selection"] = selection
                summary["workers"] = workers
                summary["tail"] = output[-2000:]
                results["tests"] = summary
                n_bad = summary["counts"].get("FAILED", 0) + summary["counts"].get("ERROR", 0)
                not_run = (summary["collected"] - summary["finished"]) if summary["collected"] else None
                status = "failed" if (n_bad or (status == "failed" and rc not in (0, 5))) else status
                record.update(status=status, detail=(
                    f"{summary['counts'].get('PASSED', 0)} passed, {n_bad} failed, "
                    f"{summary['counts'].get('SKIPPED', 0)} skipped of {summary['collected']} collected"
                    + (f"; {not_run} not run (time box {timeout:.0f} s)" if status == "timed out" else "")
                    + (f"; failing: {', '.join(summary['failed'][:5])}" if summary["failed"] else "")))
        else:
            part_path = work / f"{stage}.json"
            cmd = [python, "-m", "lconv.kernels.device_check", "--stage", stage, "--part", str(part_path),
                   "--deadline-s", str(max(1.0, timeout - (20 if not smoke else 5)))] + (["--smoke"] if smoke else [])
            status, rc, output = run_process(cmd, timeout, env, work / f"{stage}.log")
            part = json.loads(part_path.read_text()) if part_path.exists() else {}
            results["rows"] += part.get("rows", [])
            results["host"] += part.get("host", [])
            results["s4d_128k"] = part.get("s4d_128k") or results["s4d_128k"]
            results["passes"] += part.get("passes", [])
            if part.get("cudnn"):
                results["cudnn"] = part["cudnn"]
            if status == "ok" and not part.get("complete"):
                status = "timed out"
            n = (len(part.get("rows", [])) or len(part.get("host", [])) or len(part.get("passes", []))
                 or (1 if part.get("s4d_128k") else 0))
            kept = f"{n} results kept" if not smoke else f"{n} rows kept (smoke: run, not timed)"
            record.update(status=status, detail="; ".join(part.get("notes", []) + [kept]
                                                         + ([f"rc {rc}: {output[-600:]}"] if status == "failed" else [])))
        record["seconds"] = round(time.monotonic() - t_stage, 1)
        results["stages"].append(record)
        print(f"[{record['status']:>9}] {stage} ({record['seconds']:.0f} s): {record['detail'][:400]}", flush=True)
        paths = save()
    paths = save(plot=not smoke)
    print("\n" + bench.side_by_side(results))
    if results["passes"]:
        print("\nthree-pass forward by launch (ms, MB moved as kernels.io_model counts them, GB/s):")
        for r in results["passes"]:
            print(f"  N={r['N']:>7} B={r['B']} H={r['H']} {_pass_line(r)}")
    bench.print_targets(results["targets"])
    print("\nstages: " + ", ".join(f"{s['stage']} {s['status']} ({s['seconds']:.0f} s)" for s in results["stages"]))
    print(f"total {time.monotonic() - t0:.0f} s; wrote " + ", ".join(str(p) for p in paths.values())
          + f"; each stage's log in {work}")
    results["paths"] = {k: str(v) for k, v in paths.items()}
    return results


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m lconv.kernels.device_check", description=__doc__.splitlines()[0])
    parser.add_argument("--budget-s", type=float, default=540.0, help="total seconds for every stage (default 540)")
    parser.add_argument("--out", default=None,
                        help="results directory (default: results/; with --smoke a folder under the system temp dir)")
    parser.add_argument("--smoke", action="store_true",
                        help="CPU plumbing check: Triton's interpreter, tiny sizes, a handful of tests, no timings")
    parser.add_argument("--stages", nargs="+", default=list(STAGES), choices=STAGES)
    parser.add_argument("--tests", nargs="+", default=None, help="pytest selection instead of the default")
    parser.add_argument("--stage", default=None, help=argparse.SUPPRESS)  # child process: one measuring stage
    parser.add_argument("--part", default=None, help=argparse.SUPPRESS)
    parser.add_argument("--deadline-s", type=float, default=None, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.stage:
        return run_child_stage(args.stage, args.part, args.smoke, args.deadline_s or 60.0)
    import torch

    if not args.smoke and not torch.cuda.is_available():
        print("no GPU: device-check needs a CUDA GPU (use --smoke for the CPU plumbing check)")
        return 0
    from lconv.results import RESULTS_DIR

    out = Path(args.out) if args.out else (TMP / "lconv-device-check-smoke" if args.smoke else RESULTS_DIR)
    results = run(out, args.budget_s, args.smoke, tuple(args.stages), args.tests)
    bad = [s["stage"] for s in results["stages"] if s["status"] == "failed"]
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
