"""python -m lconv.kernels.compile_check: compile, for a GPU target and without a GPU, every kernel specialisation the
kernel tests launch — what the tests stage of `make device-check` will compile on the GPU.

    python -m lconv.kernels.compile_check                         # device-check's TEST_FILES, sm_90, all CPUs
    python -m lconv.kernels.compile_check --arch 90 89 --tests tests/test_gates.py --jobs 2

Triton's interpreter (how the tests run on a CPU) accepts programs the compiler rejects (a dot below 16, bf16 dots,
shapes the layout pass cannot handle), and it has no shared memory limit, so a kernel change can pass every CPU test
and still fail to compile on the GPU — found only after minutes of a lent GPU. This check closes that gap in two
steps:

1. record: the selected tests run in a pytest subprocess under the interpreter with `kernels.launch.ON_LAUNCH` set;
   every launch through `kernels.launch.launch` adds its specialisation — the kernel, each argument's type (a
   tensor's dtype as a pointer; an int 1 or None as Triton makes them: constants), divisibility by 16 of sizes and
   pointers (as Triton specialises them), the constexprs and num_warps / num_stages — to a set written as JSON. The
   one setting the interpreter changes is put back: bf16 rows get bf16 dots (`launch.dot_args(..., interpret=False)`),
   as on a GPU, not the fp32 dots the interpreter needs;
2. compile: each distinct specialisation is compiled by `triton.compile` for sm_<arch> in a pool of processes without
   the interpreter, then assembled by Triton's ptxas (`probe.ptxas_stats`): failures (with the compiler's message),
   shared memory per block against the target's limit (probe.SHARED_LIMIT), registers and spill bytes, and the
   compile seconds, into an empty Triton cache unless --warm — the sum is what a fresh GPU machine pays before its
   first test result (device-check spreads it over pytest-xdist workers).

Exit status 1 when any specialisation fails to compile or needs more shared memory than the target has. The
specialisation is Triton's as this file reconstructs it (16-byte-aligned tensors assumed), not read from the GPU
machine's Triton (3.6 there, 3.8 here), so a compile here is strong evidence, not a proof, that the GPU compile works.
"""
from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import subprocess
import sys
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import torch

from lconv.results import write_json_atomic

from .launch import dot_args

REPO = Path(__file__).resolve().parents[1]
OUT_ENV = "LCONV_COMPILE_CHECK_OUT"  # the recording subprocess writes its specialisations here
POINTER = {torch.float32: "*fp32", torch.float16: "*fp16", torch.bfloat16: "*bf16", torch.int32: "*i32",
           torch.int64: "*i64"}

_SEEN: dict[str, dict] = {}


# ---------------------------------------------------------------------------------------------------------------
# 1. record (inside the tests' process, under the interpreter)
# ---------------------------------------------------------------------------------------------------------------

def specialisation(kernel, args, meta) -> dict:
    """The compile-relevant part of one launch `kernel[grid](*args, **meta)`: name, per argument its Triton type or a
    constant (None, an int 1), divisibility by 16, constexprs and launch options. JSON-able."""
    signature, constants, divisible = {}, {}, []
    for name, a in zip(kernel.arg_names, args):
        if isinstance(a, torch.Tensor):
            if a.dtype not in POINTER:
                raise TypeError(f"{kernel.fn.__name__}: argument {name} has dtype {a.dtype}, "
                                f"not one of {list(POINTER)}")
            signature[name] = POINTER[a.dtype]
            divisible.append(name)  # fresh torch allocations are 16-byte aligned
        elif a is None or (isinstance(a, int) and not isinstance(a, bool) and a == 1):
            constants[name] = a  # Triton makes None and the integer 1 compile-time constants
        elif isinstance(a, bool):
            signature[name] = "i1"
        elif isinstance(a, int):
            signature[name] = "i32" if -2**31 <= a < 2**31 else "i64"
            if a % 16 == 0:
                divisible.append(name)
        elif isinstance(a, float):
            signature[name] = "fp32"
        else:
            raise TypeError(f"{kernel.fn.__name__}: argument {name} of type {type(a).__name__} is not recorded")
    options = {k: meta[k] for k in ("num_warps", "num_stages") if k in meta}
    constexprs = {k: v for k, v in meta.items() if k not in options}
    if "DOT_FP32" in constexprs and "*bf16" in signature.values():
        # the interpreter multiplies bf16 rows with fp32 dots (its bf16 dot is wrong); a GPU compiles bf16 dots
        constexprs.update(dot_args(torch.bfloat16, interpret=False))
    return {"kernel": f"{kernel.fn.__module__}.{kernel.fn.__name__}", "signature": signature,
            "constants": constants, "constexprs": constexprs, "divisible": divisible, "options": options}


def _record(kernel, args, meta) -> None:
    if not hasattr(kernel, "arg_names"):  # a test's stand-in for a kernel
        return
    spec = specialisation(kernel, args, meta)
    key = json.dumps(spec, sort_keys=True, default=repr)
    if key not in _SEEN:
        _SEEN[key] = spec


def pytest_configure(config):
    """pytest plugin (`-p lconv.kernels.compile_check`): record every launch of this test process."""
    from . import launch

    launch.ON_LAUNCH = _record


def pytest_unconfigure(config):
    out = os.environ.get(OUT_ENV)
    if out:
        write_json_atomic(out, list(_SEEN.values()))


def record(tests, out: Path) -> list[dict]:
    """Run the pytest selection `tests` under Triton's interpreter with the recording plugin; return (and leave in
    `out`) the distinct specialisations launched. ValueError when pytest finds nothing at `tests`, RuntimeError when
    the tests fail (their output's end attached)."""
    env = dict(os.environ, TRITON_INTERPRET="1", **{OUT_ENV: str(out)})
    cmd = [sys.executable, "-m", "pytest", "-q", "-o", "addopts=", "-p", "no:cacheprovider", "-W", "ignore",
           "-p", "lconv.kernels.compile_check", *tests]
    run = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True)
    output = (run.stdout + run.stderr).strip()
    if run.returncode in (4, 5):  # pytest: usage error (a path or node id not found) / nothing collected
        raise ValueError(f"--tests {' '.join(tests)}: pytest found nothing to run there (rc {run.returncode}): "
                         f"{output.splitlines()[-1] if output else ''}")
    if run.returncode != 0:
        raise RuntimeError(f"the recorded tests failed (rc {run.returncode}): fix them first\n{output[-3000:]}")
    return json.loads(Path(out).read_text())


# ---------------------------------------------------------------------------------------------------------------
# 2. compile (without the interpreter)
# ---------------------------------------------------------------------------------------------------------------

def compile_one(spec: dict, arch: int) -> dict:
    """Compile one recorded specialisation for sm_<arch> and assemble it: {"ok", "seconds", "shared", "regs",
    "spill_stores", "error"}. Must run in a process without TRITON_INTERPRET (the kernels must be JIT functions)."""
    import importlib

    import triton
    from triton.backends.compiler import GPUTarget
    from triton.compiler import ASTSource

    from .probe import ptxas_stats

    module, name = spec["kernel"].rsplit(".", 1)
    fn = getattr(importlib.import_module(module), name)
    if not hasattr(fn, "arg_names") or not hasattr(fn, "src"):
        raise RuntimeError("the kernels were defined under TRITON_INTERPRET=1: compile without it")
    consts = {**spec["constants"], **spec["constexprs"]}
    sig, attrs = {}, {}
    for i, arg in enumerate(fn.arg_names):
        sig[arg] = "constexpr" if arg in consts else spec["signature"][arg]
        if arg in spec["divisible"]:
            attrs[(i,)] = [["tt.divisibility", 16]]
    t0 = time.perf_counter()
    try:
        compiled = triton.compile(ASTSource(fn, sig, consts, attrs), target=GPUTarget("cuda", arch, 32),
                                  options=spec["options"])
        stats = ptxas_stats(compiled.asm["ptx"])
    except Exception as e:  # noqa: BLE001 — every compiler failure is a finding, reported with its message
        return {"ok": False, "seconds": time.perf_counter() - t0, "error": f"{type(e).__name__}: {str(e)[-1500:]}"}
    return {"ok": True, "seconds": time.perf_counter() - t0, "shared": int(compiled.metadata.shared), **stats}


def _compile_job(job):
    spec, arch = job
    return compile_one(spec, arch)


def compile_all(specs: list[dict], archs=(90,), jobs: int | None = None, progress=None,
                cold: bool = True) -> list[dict]:
    """compile_one for every (spec, arch) in a process pool of `jobs` (default: the CPUs this process may use);
    rows in input order, each with kernel, arch, dtype, constexprs, options and the result. cold: compile into an
    empty Triton cache (a temporary TRITON_CACHE_DIR), so the seconds are what a fresh GPU machine pays; False uses
    the user's cache (a rerun then reads most kernels from it)."""
    import tempfile

    from .probe import SHARED_LIMIT

    todo = [(s, a) for a in archs for s in specs]
    jobs = jobs or len(os.sched_getaffinity(0))
    saved = {k: os.environ.get(k) for k in ("TRITON_INTERPRET", "TRITON_CACHE_DIR")}
    os.environ.pop("TRITON_INTERPRET", None)  # the pool's processes must compile, not interpret: spawned, they
    with tempfile.TemporaryDirectory(prefix="lconv-compile-check-") as cache:  # import the kernels afresh
        if cold:
            os.environ["TRITON_CACHE_DIR"] = cache
        try:
            with ProcessPoolExecutor(max_workers=jobs, mp_context=multiprocessing.get_context("spawn")) as pool:
                results = []
                for i, r in enumerate(pool.map(_compile_job, todo)):
                    results.append(r)
                    if progress:
                        progress(i + 1, len(todo))
        finally:
            for k, v in saved.items():
                if v is None:
                    os.environ.pop(k, None)
                else:
                    os.environ[k] = v
    rows = []
    for (spec, arch), r in zip(todo, results):
        limit = SHARED_LIMIT.get(arch)
        fits = r["ok"] and (limit is None or r["shared"] <= limit)
        rows.append({"kernel": spec["kernel"].rsplit(".", 1)[1], "arch": arch, "dtype": row_dtype(spec),
                     "constexprs": spec["constexprs"], "options": spec["options"], **r, "fits": fits})
    return rows


def row_dtype(spec: dict) -> str:
    """The rows' dtype of a specialisation: fp16 or bf16 when a pointer has it, else fp32 (tables are always fp32)."""
    return next((t[1:] for t in spec["signature"].values() if t in ("*fp16", "*bf16")), "fp32")


def _settings(r: dict) -> str:
    sizes = ", ".join(f"{k}={r['constexprs'][k]}" for k in ("N1", "N2", "N0", "M", "M1", "M2") if k in r["constexprs"])
    return f"sm_{r['arch']} {r['kernel']} {r['dtype']} {sizes}, {r['options'].get('num_warps')} warps"


def summary(rows: list[dict], worst: int = 5) -> str:
    """A few lines: counts, compile seconds, failures and shared-memory misses with their settings, the `worst`
    spills. ptxas reports 32 registers for some kernels whose demand far exceeds the register file (everything then
    lives in a stack frame): read the spill bytes there, not the register count."""
    bad = [r for r in rows if not r["ok"]]
    over = [r for r in rows if r["ok"] and not r["fits"]]
    spills = sorted((r for r in rows if r["ok"] and r.get("spill_stores")), key=lambda r: -r["spill_stores"])
    secs = sum(r["seconds"] for r in rows)
    lines = [f"{len(rows)} specialisations compiled ({len(bad)} failed, {len(over)} over the shared-memory limit, "
             f"{len(spills)} spill); compile time {secs:.0f} s summed over the processes, "
             f"slowest {max((r['seconds'] for r in rows), default=0):.1f} s"]
    for r in bad:
        lines.append(f"FAILED {_settings(r)} {r['constexprs']}: {r['error']}")
    for r in over:
        lines.append(f"OVER {_settings(r)}: {r['shared']} B shared")
    if spills:
        lines.append(f"the {min(worst, len(spills))} largest spills of {len(spills)} (bytes stored per thread):")
    for r in spills[:worst]:
        lines.append(f"  {_settings(r)}: {r['spill_stores']} B, {r['regs']} registers, "
                     f"{r['shared'] / 1024:.0f} KB shared")
    return "\n".join(lines)


def main(argv=None) -> int:
    from .device_check import TEST_FILES
    from .probe import ptxas_path

    parser = argparse.ArgumentParser(prog="python -m lconv.kernels.compile_check",
                                     description="C" + " ".join(__doc__.split("\n\n")[0].split()[3:])[1:])
    parser.add_argument("--tests", nargs="+", default=list(TEST_FILES), help="pytest selection to record")
    parser.add_argument("--arch", type=int, nargs="+", default=[90], help="sm_ targets (default: 90, the H100/H200)")
    parser.add_argument("--jobs", type=int, default=None, help="compiling processes (default: every CPU)")
    parser.add_argument("--warm", action="store_true",
                        help="use Triton's own cache (faster reruns; the compile seconds then undercount a fresh GPU "
                             "machine's)")
    parser.add_argument("--out", default="build/compile_check.json", help="the results (default: %(default)s); the recorded specialisations go beside it as .specs.json")
    args = parser.parse_args(argv)
    if ptxas_path() is None:
        print("no ptxas in the Triton install: nothing to compile with")
        return 1
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    try:
        specs = record(args.tests, out.with_suffix(".specs.json"))
    except (ValueError, RuntimeError) as e:
        print(e, file=sys.stderr)
        return 2
    print(f"recorded {len(specs)} distinct specialisations from {' '.join(args.tests)} "
          f"({time.perf_counter() - t0:.0f} s under the interpreter)", flush=True)
    if not specs:
        print("these tests launched no kernel (through kernels.launch.launch): nothing to compile")
        return 1

    def progress(i, n):
        if i % 50 == 0 or i == n:
            print(f"{i}/{n} compiled", flush=True)

    rows = compile_all(specs, tuple(args.arch), args.jobs, progress, cold=not args.warm)
    write_json_atomic(out, rows)
    print(summary(rows))
    print(f"rows: {out}")
    return int(any(not r["fits"] for r in rows))


if __name__ == "__main__":
    sys.exit(main())
