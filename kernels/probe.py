"""Compile probe of the fused kernels, no GPU needed: registers, spill bytes and shared memory per block.

    python -m lconv.kernels.probe                       # fwd, du, dk at every fused N, TUNING settings, sm_90 and sm_89
    python -m lconv.kernels.probe --N 4096 --kinds du dk --arch 89 --warps 4 8 --stages 1 2
    python -m lconv.kernels.probe --N 8192 1048576 --kinds pass1 pass2 pass3   # the three-pass kernels

Each kernel is compiled by `triton.compile(ASTSource(...), target=GPUTarget("cuda", arch, 32))` for an NVIDIA
target (sm_80, 86, 89, 90), and the PTX is assembled by the ptxas Triton ships (`ptxas -v`), which reports registers
and spill stores/loads per thread; shared memory per block is Triton's own figure (metadata.shared). Nothing runs
and nothing is timed: these are compiled numbers, a check that a launch setting neither spills nor exceeds a GPU's
shared memory (the opt-in limit per block: 99 KB on sm_86/sm_89, 163 KB on sm_80, 227 KB on sm_90). Speed needs a
GPU (`python -m lconv.kernels.sweep`).

Kinds (kernels/flash_butterfly.py), all gated (the larger case): "fwd" = flash_butterfly_fwd_kernel as the forward
(y = post ⊙ conv(pre ⊙ u, k), saving w = conv(pre ⊙ u, k)); "du" = the same kernel as the backward of u (conj K,
du and dpregate, dpostgate = dy ⊙ w); "dk" = flash_butterfly_dk_kernel; "k_f" = k_f_half_kernel (fp32). At the
three-pass sizes (kernels/three_pass.py): "pass1" = outer_fwd_kernel, "pass2" = inner_conv_kernel, "pass3" =
outer_adj_kernel (the dense outer DFT below N0 = 64, factored from 256K). Like Triton at run time for 16-byte-aligned
pointers and sizes divisible by 16, pointers and B, H, L, Lk are specialised as divisible by 16 (n_chunks,
rows_per_prog, sqrt_M are not).

Triton reads TRITON_INTERPRET when the kernels are defined: run this without it (the interpreter has no compiler).
"""
from __future__ import annotations

import argparse
import os
import re
import subprocess
import sys
import tempfile

import torch

from lconv.butterfly import half_sizes, three_pass_sizes

from . import flash_butterfly as fb, three_pass as tp
from .launch import FUSED_N, THREE_PASS_N, dot_args, launch_opts, loop_opts, outer_blocks

KINDS = ("fwd", "du", "dk", "k_f")  # the fused sizes (FUSED_N)
THREE_PASS_KINDS = ("pass1", "pass2", "pass3")  # the three-pass sizes (THREE_PASS_N)
SHARED_LIMIT = {80: 163 * 1024, 86: 99 * 1024, 89: 99 * 1024, 90: 227 * 1024}  # opt-in bytes per block
TRITON_DTYPE = {torch.float32: "fp32", torch.float16: "fp16", torch.bfloat16: "bf16"}
FP32_PTRS = ("k_f_ptr", "dft1_ptr", "dft2_ptr", "tw_ptr", "hw_ptr", "dk_ptr", "k_ptr",  # tables, fp32 in/out
             "dft_ptr", "tw0_ptr", "dftA_ptr", "dftB_ptr", "twAB_ptr", "zs_ptr", "zs1_ptr", "zs2_ptr")
NOT_DIVISIBLE = ("n_chunks", "rows_per_prog", "sqrt_M")


def kernel_case(kind: str, N: int, dtype=torch.float16, gated: bool = True):
    """(jit function, constexprs) of one kind of fused kernel at FFT size N for inputs of `dtype`."""
    N1, N2 = half_sizes(N)
    meta = dict(N1=N1, N2=N2, USE_DOT=min(N1, N2) >= 16, **dot_args(dtype))
    if kind in ("fwd", "du"):
        meta.update(loop_opts(N, kind))  # the row loop's ROWS and EARLY_LOADS (kernels.launch.LOOP_TUNING)
    if kind == "fwd":
        return fb.flash_butterfly_fwd_kernel, dict(meta, **fb.conv_flags(gate_in=gated, y=True, gate_out=gated,
                                                                         out2=gated))
    if kind == "du":
        return fb.flash_butterfly_fwd_kernel, dict(meta, **fb.conv_flags(gate_in=gated, conj_k=True, y=True,
                                                                         gate_out=gated, out2=gated, gate2=gated,
                                                                         dgate=gated))
    if kind == "dk":
        return fb.flash_butterfly_dk_kernel, dict(meta, GATED=gated)
    if kind == "k_f":
        return fb.k_f_half_kernel, dict(N1=N1, N2=N2, USE_DOT=min(N1, N2) >= 16)
    raise ValueError(f"kind={kind!r}: use one of {KINDS}")


def three_pass_case(kind: str, N: int, dtype=torch.float16, gated: bool = True):
    """(jit function, constexprs, launch options) of one three-pass kernel (pass1, pass2, pass3) at FFT size N."""
    N0, M1, M2 = three_pass_sizes(N)
    ob = outer_blocks(N0)
    opts = {"num_warps": ob.pop("num_warps"), "num_stages": ob.pop("num_stages")}
    meta = dict(N0=N0, **dot_args(dtype))
    if kind == "pass1":
        return tp.outer_fwd_kernel, dict(meta, M=M1 * M2, HAS_GATE=gated, HAS_DGATE=gated, **ob), opts
    if kind == "pass3":
        return tp.outer_adj_kernel, dict(meta, M=M1 * M2, HAS_GATE1=gated, HAS_OUT2=gated, HAS_GATE2=gated,
                                         **ob), opts
    if kind == "pass2":
        return (tp.inner_conv_kernel, dict(meta, M1=M1, M2=M2, BM=ob["BM"]),
                launch_opts(M1 * M2, "fwd", dtype=dtype))
    raise ValueError(f"kind={kind!r}: use one of {THREE_PASS_KINDS}")


def signature(fn, consts: dict, dtype=torch.float16) -> tuple[dict, dict]:
    """(signature, attrs) for triton.compile: fp32 tables and dk, `dtype` for the rows, i32 sizes, fp32 sqrt_M; the
    divisibility-16 specialisation of aligned pointers and sizes (NOT_DIVISIBLE excepted)."""
    sig, attrs = {}, {}
    for i, name in enumerate(fn.arg_names):
        if name in consts:
            sig[name] = "constexpr"
            continue
        if name.endswith("_ptr"):
            sig[name] = "*fp32" if name in FP32_PTRS else ("*i32" if name == "src_ptr" else "*" + TRITON_DTYPE[dtype])
        else:
            sig[name] = "fp32" if name == "sqrt_M" else "i32"
        if name not in NOT_DIVISIBLE:
            attrs[(i,)] = [["tt.divisibility", 16]]
    return sig, attrs


def ptxas_path() -> str | None:
    """The ptxas that ships with Triton (None when it is missing)."""
    import triton

    path = os.path.join(os.path.dirname(triton.__file__), "backends", "nvidia", "bin", "ptxas")
    return path if os.access(path, os.X_OK) else None


def ptxas_stats(ptx: str) -> dict:
    """Registers and spill stores/loads per thread from `ptxas -v` on PTX (its own .target: sm_90a for sm_90)."""
    path = ptxas_path()
    if path is None:
        raise FileNotFoundError("Triton's ptxas is missing (triton/backends/nvidia/bin/ptxas)")
    target = re.search(r"^\.target\s+(\S+)", ptx, re.M).group(1).rstrip(",")
    with tempfile.TemporaryDirectory() as tmp:
        src = os.path.join(tmp, "kernel.ptx")
        with open(src, "w") as f:
            f.write(ptx)
        run = subprocess.run([path, "-v", f"--gpu-name={target}", src, "-o", os.path.join(tmp, "kernel.cubin")],
                             capture_output=True, text=True)
    text = run.stdout + run.stderr
    if run.returncode != 0:
        raise RuntimeError(f"ptxas failed for {target}: {text.strip()[-300:]}")
    regs = re.findall(r"Used (\d+) registers", text)
    spills = re.findall(r"(\d+) bytes spill stores, (\d+) bytes spill loads", text)
    return {"target": target, "regs": int(regs[-1]),
            "spill_stores": int(spills[-1][0]) if spills else 0, "spill_loads": int(spills[-1][1]) if spills else 0}


def compile_stats(fn, consts: dict, dtype=torch.float16, arch: int = 90, num_warps: int = 4,
                  num_stages: int = 1) -> dict:
    """Compile `fn` with these constexprs for sm_<arch> (no GPU) and return regs, spill bytes and shared bytes."""
    import triton
    from triton.backends.compiler import GPUTarget
    from triton.compiler import ASTSource

    if not hasattr(fn, "arg_names"):
        raise RuntimeError("the kernels were defined under TRITON_INTERPRET=1 (the interpreter): run the probe "
                           "without it")
    sig, attrs = signature(fn, consts, dtype)
    compiled = triton.compile(ASTSource(fn, sig, consts, attrs), target=GPUTarget("cuda", arch, 32),
                              options={"num_warps": num_warps, "num_stages": num_stages})
    return {**ptxas_stats(compiled.asm["ptx"]), "shared": int(compiled.metadata.shared)}


def probe(kind: str, N: int, dtype=torch.float16, arch: int = 90, num_warps: int | None = None,
          num_stages: int | None = None, gated: bool = True) -> dict:
    """One row of the table: a kind at N, dtype, arch; warps/stages default to the launchers' (TUNING's)."""
    if kind in THREE_PASS_KINDS:
        fn, consts, opts = three_pass_case(kind, N, dtype, gated)
    else:
        fn, consts = kernel_case(kind, N, dtype, gated)
        opts = fb.k_f_launch_opts(N) if kind == "k_f" else launch_opts(N, kind, dtype=dtype)
    num_warps = opts["num_warps"] if num_warps is None else num_warps
    num_stages = opts["num_stages"] if num_stages is None else num_stages
    stats = compile_stats(fn, consts, dtype, arch, num_warps, num_stages)
    fits = stats["shared"] <= SHARED_LIMIT.get(arch, stats["shared"])
    return dict(kind=kind, N=N, dtype=str(dtype).removeprefix("torch."), arch=arch, num_warps=num_warps,
                num_stages=num_stages, gated=gated, **stats, fits=fits)


def format_row(r: dict) -> str:
    return (f"sm_{r['arch']} {r['kind']:5s} N={r['N']:7d} {r['dtype']:8s} warps={r['num_warps']} "
            f"stages={r['num_stages']}: regs {r['regs']:3d}, spill {r['spill_stores']:5d} B stores / "
            f"{r['spill_loads']:5d} B loads, shared {r['shared'] / 1024:5.1f} KB"
            + ("" if r["fits"] else f"  > {SHARED_LIMIT[r['arch']] // 1024} KB limit"))


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m lconv.kernels.probe", description=__doc__.split("\n")[0])
    parser.add_argument("--N", type=int, nargs="+", default=list(FUSED_N))
    parser.add_argument("--kinds", nargs="+", default=list(KINDS), choices=KINDS + THREE_PASS_KINDS,
                        help=f"{KINDS} at fused N; {THREE_PASS_KINDS} at three-pass N (--N 8192 … 1048576)")
    parser.add_argument("--dtype", default="float16", choices=[str(d)[6:] for d in TRITON_DTYPE])
    parser.add_argument("--arch", type=int, nargs="+", default=[90, 89])
    parser.add_argument("--warps", type=int, nargs="+", default=None, help="default: TUNING's")
    parser.add_argument("--stages", type=int, nargs="+", default=None, help="default: TUNING's")
    parser.add_argument("--plain", action="store_true", help="ungated kernels (default: gated, the larger)")
    args = parser.parse_args(argv)
    for N in args.N:
        if N not in FUSED_N + THREE_PASS_N:
            parser.error(f"--N {N}: use fused sizes {list(FUSED_N)} (kinds {', '.join(KINDS)}) or three-pass "
                         f"sizes {list(THREE_PASS_N)} (kinds {', '.join(THREE_PASS_KINDS)})")
    pairs = [(N, kind) for N in args.N for kind in args.kinds if (N in THREE_PASS_N) == (kind in THREE_PASS_KINDS)]
    if not pairs:
        parser.error(f"no kind fits these N: {', '.join(KINDS)} run at fused N {list(FUSED_N)}, "
                     f"{', '.join(THREE_PASS_KINDS)} at three-pass N {list(THREE_PASS_N)}")
    if ptxas_path() is None:
        print("no ptxas in the Triton install: nothing to probe")
        return 1
    dtype = getattr(torch, args.dtype)
    bad = 0
    for arch in args.arch:
        for N, kind in pairs:  # fused kinds at fused N, three-pass kinds at three-pass N
            for w in args.warps or [None]:
                for s in args.stages or [None]:
                    row = probe(kind, N, dtype, arch, w, s, gated=not args.plain)
                    bad += not row["fits"]
                    print(format_row(row), flush=True)
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
