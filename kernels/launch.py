"""The bottom floor of `kernels`: sizes, input checks, tables, launch settings and the checked launch, shared by the
fused kernels (kernels/flash_butterfly.py) and the three-pass kernels (kernels/three_pass.py).

Nothing here is a kernel: FUSED_N / THREE_PASS_N / SUPPORTED_N (the FFT sizes), HAS_TRITON / INTERPRET (decided at
import: TRITON_INTERPRET=1 must be set before `import lconv.kernels`), the input checks (every bad input raises ValueError
naming the fix, before anything is launched), `pick_backend` over lconv.conv.BACKENDS, the fp32 re/im tables of
both algorithms (`get_plan`, cached per device; `prepare` builds them ahead, e.g. before a CUDA-graph capture), the
PyTorch reference of the k_f layouts (`k_f_planes`, `k_f_planes_full`: the kernels make k_f with their own launches,
kernels/flash_butterfly.py), the tuned launch settings (TUNING), the batch split (`chunks`, with the multiprocessor
count asked once per GPU) and `launch`, which checks each compiled configuration against the GPU's shared memory first. Imports
only lconv's reference maths (lconv.butterfly, lconv.conv), so both kernel files sit on it without a circle.
"""
from __future__ import annotations

import contextlib
import functools
import math
import os
import warnings

import torch

from lconv.butterfly import (THREE_PASS_N, check_seqlen_three_pass, default_sizes, dft_matrix,
                             half_sizes, half_tables, k_f_half, k_f_permuted, permuted_order, three_pass_sizes,
                             twiddle)
from lconv.conv import BACKENDS

try:
    import triton  # noqa: F401

    HAS_TRITON = True
except ImportError:  # no triton on this machine: the PyTorch reference runs everywhere
    HAS_TRITON = False
INTERPRET = HAS_TRITON and os.environ.get("TRITON_INTERPRET", "0") == "1"  # as triton.jit decides, at import

FUSED_N = (256, 512, 1024, 2048, 4096)  # one fused kernel: the whole sequence on chip
SUPPORTED_N = FUSED_N + THREE_PASS_N  # 8192 … 2^20: the three-pass kernel (lconv.butterfly.THREE_PASS_N)
U_DTYPES = (torch.float32, torch.float16, torch.bfloat16)
BLOCK_DTYPES = (torch.complex64, torch.complex128)


# ---------------------------------------------------------------------------------------------------------------
# Input checks: every bad input raises ValueError naming the fix, before anything is launched.
# ---------------------------------------------------------------------------------------------------------------

def check_seqlen(N) -> int:
    """N must be one of SUPPORTED_N (the FFT size, not the input length)."""
    if not isinstance(N, int) or N not in SUPPORTED_N:
        raise ValueError(f"FFT size N={N!r} is not supported; supported N (the FFT size, ≥ 2·L for a causal "
                         f"convolution): {list(SUPPORTED_N)}")
    return N


def check_gates(u: torch.Tensor, pregate, postgate) -> None:
    """Both gates or neither; each a contiguous tensor of u's shape, dtype and device."""
    if (pregate is None) != (postgate is None):
        missing = "postgate" if postgate is None else "pregate"
        raise ValueError(f"pass both pregate and postgate or neither: {missing} is missing; use "
                         f"torch.ones_like(u) for the gate you do not need")
    for name, gate in (("pregate", pregate), ("postgate", postgate)):
        if gate is None:
            continue
        if not isinstance(gate, torch.Tensor):
            raise ValueError(f"{name} must be a tensor shaped like u (B, H, L), got {type(gate).__name__}; "
                             f"pass backend= by keyword")
        if gate.shape != u.shape or gate.dtype != u.dtype or gate.device != u.device:
            raise ValueError(f"{name} must match u: shape {tuple(u.shape)}, {u.dtype} on {u.device}; got "
                             f"{tuple(gate.shape)}, {gate.dtype} on {gate.device} (use {name}.to(u))")
        if not gate.is_contiguous():
            raise ValueError(f"{name} is not contiguous: call .contiguous() on it")


def check_blocks(u: torch.Tensor, N: int, dft1, dft2) -> None:
    """Learned forward blocks: complex (N1, N1) / (N2, N2), or per channel (H, N1, N1) / (H, N2, N2), on u's device."""
    if dft1 is None and dft2 is None:
        return
    if N not in FUSED_N:
        raise ValueError(f"learned blocks dft1/dft2 need a fused FFT size N in {list(FUSED_N)}, got N={N}")
    H = u.shape[1]
    for name, blk, M in (("dft1", dft1, default_sizes(N)[0]), ("dft2", dft2, default_sizes(N)[1])):
        if blk is None:
            continue
        if not isinstance(blk, torch.Tensor) or blk.dtype not in BLOCK_DTYPES:
            raise ValueError(f"{name} must be a complex tensor (e.g. lconv.butterfly.dft_matrix({M}, "
                             f"dtype=torch.complex64)), got {getattr(blk, 'dtype', type(blk).__name__)}")
        if tuple(blk.shape) not in ((M, M), (H, M, M)):
            raise ValueError(f"{name} must be ({M}, {M}) or per channel ({H}, {M}, {M}) for N={N} "
                             f"(N1, N2 = {default_sizes(N)}), got {tuple(blk.shape)}")
        if blk.device != u.device:
            raise ValueError(f"{name} is on {blk.device} and u on {u.device}: move it with {name}.to(u.device)")


def check_inputs(u: torch.Tensor, k: torch.Tensor, N: int, pregate=None, postgate=None, dft1=None,
                 dft2=None) -> None:
    """Validate u (B, H, L), k (H, Lk), N, gates and learned blocks; raise ValueError naming the fix."""
    check_seqlen(N)
    if not isinstance(u, torch.Tensor) or not isinstance(k, torch.Tensor):
        raise ValueError("u and k must be torch tensors: u (B, H, L), k (H, L)")
    if u.dim() != 3:
        raise ValueError(f"u must be (B, H, L), got shape {tuple(u.shape)}")
    if k.dim() == 3 and k.shape[0] == 1:
        raise ValueError(f"k has shape {tuple(k.shape)}: squeeze the leading 1: pass k as (H, L) (k.squeeze(0))")
    if k.dim() != 2:
        raise ValueError(f"k must be (H, L), got shape {tuple(k.shape)}")
    B, H, L = u.shape
    if k.shape[0] != H:
        if u.shape[2] == k.shape[0]:
            raise ValueError(f"u {tuple(u.shape)} looks batch-first (B, L, H) while k {tuple(k.shape)} has "
                             f"{k.shape[0]} channels: the kernels take channels-first u (B, H, L), so pass "
                             f"u.transpose(1, 2).contiguous() (models hold (B, L, H))")
        raise ValueError(f"k has {k.shape[0]} channels but u has H={H}: pass k as (H, L) = ({H}, L)")
    if L > N or k.shape[1] > N:
        raise ValueError(f"L={L} (u) and Lk={k.shape[1]} (k) must be ≤ the FFT size N={N}; pick N ≥ 2·L for a "
                         f"causal convolution (supported N: {list(SUPPORTED_N)})")
    if u.dtype not in U_DTYPES:
        raise ValueError(f"u has dtype {u.dtype}; cast it to torch.float32, torch.float16 or torch.bfloat16")
    if k.dtype != torch.float32:
        raise ValueError(f"k has dtype {k.dtype}; pass k as torch.float32 (k.float())")
    if u.device != k.device:
        raise ValueError(f"u is on {u.device} and k on {k.device}: move both to the same device (k.to(u.device))")
    if not u.is_contiguous():
        raise ValueError("u is not contiguous: call .contiguous() on it")
    if not k.is_contiguous():
        raise ValueError("k is not contiguous: call .contiguous() on it")
    check_gates(u, pregate, postgate)
    check_blocks(u, N, dft1, dft2)


def check_inputs_three_pass(u, k, N, pregate=None, postgate=None) -> None:
    """check_inputs with the three-pass sizes only (THREE_PASS_N): the fused and the three-pass paths reject the same
    inputs with the same messages."""
    check_seqlen_three_pass(N)
    check_inputs(u, k, N, pregate=pregate, postgate=postgate)


def pick_backend(u: torch.Tensor, backend: str, warn: bool = True) -> str:
    """'triton' or 'torch' (the PyTorch reference) for this tensor's device and `backend` (BACKENDS)."""
    if backend not in BACKENDS:
        raise ValueError(f"backend={backend!r}: use one of {BACKENDS}")
    can_triton = HAS_TRITON and (u.is_cuda or (u.device.type == "cpu" and INTERPRET))
    if backend == "triton" and not can_triton:
        raise ValueError("backend='triton' needs Triton and a CUDA tensor, or CPU tensors with TRITON_INTERPRET=1 "
                         "set before `import lconv.kernels`; use backend='torch' or 'auto' otherwise")
    if backend == "auto":
        if warn and u.is_cuda and not HAS_TRITON:
            warnings.warn("Triton is not installed: FlashButterflyConv runs the PyTorch reference", stacklevel=3)
        return "triton" if can_triton else "torch"
    return backend


# ---------------------------------------------------------------------------------------------------------------
# Tables, k_f layouts and launch settings
# ---------------------------------------------------------------------------------------------------------------

_PLANS: dict = {}


def _plan_key(N: int, device) -> tuple:
    """(N, device) with "cuda" resolved to the current GPU's index, as a tensor's .device carries it."""
    device = torch.device(device)
    if device.type == "cuda" and device.index is None:
        device = torch.device("cuda", torch.cuda.current_device())
    return N, device


def _check_not_capturing(N: int, device) -> None:
    """The tables are copied host → device on first use, which a CUDA graph capture forbids: say how to avoid it."""
    if torch.device(device).type == "cuda" and torch.cuda.is_current_stream_capturing():
        raise RuntimeError(f"FlashButterfly's tables for N={N} are not on {device} yet and cannot be copied there "
                           f"during CUDA-graph capture: call lconv.kernels.prepare({N}, {str(device)!r}) (or run "
                           f"the convolution once) before capturing")


def prepare(N: int, device) -> None:
    """Build and cache the tables the kernels need at FFT size N on `device` (one host → device copy each), so that
    later calls copy nothing: call it before capturing a CUDA graph (torch.cuda.graph, torch.compile's
    "reduce-overhead") whose first call would otherwise build them. N one of SUPPORTED_N."""
    get_plan(check_seqlen(N), torch.device(device))


def planes(z: torch.Tensor, device) -> torch.Tensor:
    """complex (…, a, b) → fp32 (2, …, a, b) re/im planes on device."""
    return torch.stack([z.real, z.imag]).to(device=device, dtype=torch.float32).contiguous()


def get_plan(N: int, device: torch.device) -> dict:
    """fp32 re/im tables of the kernels at FFT size N (fused for N in FUSED_N, else three-pass), cached per device.

    Fixed kernel (half-length trick, (N1, N2) = half_sizes(N)): "dft1" (2, N1, N1), "dft2" (2, N2, N2),
    "tw" (2, N1, N2), "hw" (2, N1, N2) = ω_N^f at the permuted slots. Learned kernels (the N-point split
    (N1, N2) = default_sizes(N)): "dft1_full", "dft2_full", "tw_full".
    """
    if N in THREE_PASS_N:
        return _three_pass_plan(N, device)
    key = _plan_key(N, device)
    if key not in _PLANS:
        _check_not_capturing(N, device)
        N1, N2 = half_sizes(N)
        F1, F2 = default_sizes(N)
        _PLANS[key] = {
            "dft1": planes(dft_matrix(N1) / math.sqrt(N1), device),
            "dft2": planes(dft_matrix(N2) / math.sqrt(N2), device),
            "tw": planes(twiddle(N1, N2), device),
            "hw": planes(half_tables(N)["omega"].reshape(N1, N2), device),
            "dft1_full": planes(dft_matrix(F1) / math.sqrt(F1), device),
            "dft2_full": planes(dft_matrix(F2) / math.sqrt(F2), device),
            "tw_full": planes(twiddle(F1, F2), device),
            "k_src_full": permuted_order((F1, F2)).to(device=device, dtype=torch.int32),  # k_f_gathered's slots
        }
    return _PLANS[key]


def k_f_planes(k: torch.Tensor, N: int) -> torch.Tensor:
    """k (H, Lk) fp32 → k_f (H, 2, N) fp32 for the fixed kernel: re/im planes of `lconv.butterfly.k_f_half` (the
    PyTorch reference of flash_butterfly.k_f_fused, which the kernels use)."""
    k_f = k_f_half(k, N)  # (H, N) complex64
    return torch.stack([k_f.real, k_f.imag], dim=1).contiguous()  # (H, 2, N)


def k_f_planes_full(k: torch.Tensor, N: int, sizes=None) -> torch.Tensor:
    """k (H, Lk) fp32 → k_f (H, 2, N) fp32: k's FFT in the permuted order of `sizes` (default_sizes(N): the learned
    kernels; three_pass_sizes(N): the three-pass kernel)."""
    k_f = k_f_permuted(k, N, sizes)  # (H, N) complex64
    return torch.stack([k_f.real, k_f.imag], dim=1).contiguous()  # (H, 2, N)


def dot_args(dtype: torch.dtype, interpret: bool = INTERPRET) -> dict:
    """tl.dot operands: the input dtype for fp16/bf16 (fp32 for bf16 under the interpreter, whose bf16 dot is
    wrong), fp32 with input_precision="ieee" (no TF32) for fp32; "tf32" is the default and is ignored for 16-bit.
    NORM: fp16/bf16 rows and spectra are scaled by powers of two before rounding (kernels/flash_butterfly.py).
    `interpret=False` gives what a GPU compiles (kernels.compile_check)."""
    dot_fp32 = dtype == torch.float32 or (dtype == torch.bfloat16 and interpret)
    return {"DOT_FP32": dot_fp32, "PREC": "ieee" if dot_fp32 else "tf32", "NORM": dtype != torch.float32}


@functools.lru_cache(maxsize=None)
def _multiprocessors(index: int) -> int:
    return torch.cuda.get_device_properties(index).multi_processor_count


def multiprocessors(device: torch.device) -> int:
    """Streaming multiprocessors of a CUDA device, asked once per device (the query costs microseconds per call)."""
    return _multiprocessors(torch.cuda.current_device() if device.index is None else device.index)


PROGRAMS_PER_SM = 4  # chunks splits the batch until channels × chunks reaches this many programs per multiprocessor


def chunks(n_rows: int, rows: int, device: torch.device, rows_per_prog: int | None):
    """(n_chunks, rows_per_prog): split the n_rows batch rows of each of `rows` independent rows (channels, or the
    three-pass inner rows) so that rows · chunks programs fill the GPU PROGRAMS_PER_SM times."""
    if rows_per_prog is None:
        if device.type == "cuda":
            target = PROGRAMS_PER_SM * multiprocessors(device)
            n_chunks = min(n_rows, max(1, -(-target // rows)))
        else:
            n_chunks = 1  # the interpreter runs programs one after another: fewer is cheaper
        rows_per_prog = -(-n_rows // n_chunks)
    rows_per_prog = max(1, int(rows_per_prog))
    return -(-n_rows // rows_per_prog), rows_per_prog


# Launch settings of the fused fixed-FFT kernels by FFT size and pass (one tile per program, no software
# pipelining), measured with `python -m lconv.kernels.sweep` on an H100 (fp16, B=64, H=768; results/raw/sweep-*) for the
# packed-pair kernel this one replaced (tiles of N points; now N/2): fewer warps per program was much faster until
# the tiles spilled. fwd ms at 2 / 4 / 8 warps: N=256 0.049 / 0.083 / 0.142, N=1024 0.142 / 0.211 / 0.442,
# N=4096 36.6 (spilled) / 0.581 / 1.335; N=512 0.064 / 0.068, N=2048 0.451 / 0.308. bwd: N=256 0.080 / 0.141 /
# 0.236, N=512 0.165 / 0.157 (within noise: 2 kept, as benchmarked), N=1024 0.262 / 0.342 / 0.732, N=2048 20.3
# (spilled) / 0.675, N=4096 83 (spilled) at 2; 4 and 8 not timed (the sweep ran out of time): 4, as fwd. Re-reading
# the DFT blocks, twiddles and K inside the loop instead of holding them in registers was 1.4–2× slower at every
# size and was dropped. Not re-swept for the per-row kernels (tiles of N/2 points): rerun the sweep on a GPU.
# "fwd" is the forward (and three_pass's pass 2), "bwd" three_pass's pass-2 backward; the fused backward is two
# launches with their own entries: "du" (the forward kernel run on dy with conj(K)) and "dk" (its own kernel).
# Their warps were chosen with `python -m lconv.kernels.probe` on a CPU: COMPILED by triton 3.8 + its ptxas for
# sm_90a and sm_89, NOT TIMED on any GPU (fp16, gated, every gradient): the fewest spills, then the fewest warps.
# regs / spill stores (B per thread) / shared KB, sm_90 | sm_89, at the settings below:
#   N     fwd (2,2,2,4,4 warps)          du (2,2,4,8,8)                  dk (2,2,4,8,8)
#   256   168/0/0.5  | 168/0/0.5         168/0/0.5   | 168/0/0.5         237/0/1     | 168/0/1
#   512   200/0/3    | 202/0/3           228/0/3     | 230/0/3           201/0/7     | 204/0/7
#   1024  255/0/7    | 255/4/7           168/0/7     | 146/0/7           165/0/17    | 165/0/17
#   2048  255/608/12 | 255/632/12        255/320/12  | 255/248/12        255/720/28  | 255/676/28
#   4096  255/984/28 | 255/796/28        255/384/28  | 255/316/28        255/1380/68 | 255/2696/68
# Other warps: du/dk at 1024 spill 48/100 B at 2 warps; at 2048 and 4096 every count spills (2 warps: du 560 /
# 2604 B, dk 3200 / 68066 B; 4: du 1012 / 584, dk 1256 / 32296; 16: 128 registers, 650–1900 B), so 8 spills least.
# num_stages 2 changed nothing (no loads to pipeline). fp32 (no tensor cores) spills more (du 5 KB, dk 16 KB at
# 4096 on sm_89) in ≤ 56 KB. The single backward kernel this replaced (everything per row in one program), same
# probe: 4096 at 4 warps 255/6476/56 (sm_90), 168/8244/56 (sm_89); at 8 warps 255/3344/56; 2048 at 4 warps
# 255/1740/24. Every kernel fits the 99 KB of sm_86/sm_89 at every N (tests/test_probe.py checks 4096 on sm_89).
# "fwd" is left as timed for the packed-pair kernel (at 8 warps it would spill 200 / 8 B at 2048 / 4096): time
# fwd, du and dk on a GPU with `python -m lconv.kernels.sweep` before trusting any of these for speed.
TUNING = {
    256: {"fwd": {"num_warps": 2, "num_stages": 1}, "bwd": {"num_warps": 2, "num_stages": 1},
          "du": {"num_warps": 2, "num_stages": 1}, "dk": {"num_warps": 2, "num_stages": 1}},
    512: {"fwd": {"num_warps": 2, "num_stages": 1}, "bwd": {"num_warps": 2, "num_stages": 1},
          "du": {"num_warps": 2, "num_stages": 1}, "dk": {"num_warps": 2, "num_stages": 1}},
    1024: {"fwd": {"num_warps": 2, "num_stages": 1}, "bwd": {"num_warps": 2, "num_stages": 1},
           "du": {"num_warps": 4, "num_stages": 1}, "dk": {"num_warps": 4, "num_stages": 1}},
    2048: {"fwd": {"num_warps": 4, "num_stages": 1}, "bwd": {"num_warps": 4, "num_stages": 1},
           "du": {"num_warps": 8, "num_stages": 1}, "dk": {"num_warps": 8, "num_stages": 1}},
    4096: {"fwd": {"num_warps": 4, "num_stages": 1}, "bwd": {"num_warps": 4, "num_stages": 1},
           "du": {"num_warps": 8, "num_stages": 1}, "dk": {"num_warps": 8, "num_stages": 1}},
}


# fp32 rows: the dots run on fp32 operands (ieee), twice the registers of a 16-bit tile, and TUNING's warps (timed on
# fp16) spill heavily. Compiled for sm_90 (`python -m lconv.kernels.probe --dtype float32 --warps 2 4 8 16`; not
# timed): forward at N = 4096 spills 37 KB per thread at 4 warps, 4.7 KB at 8, 3.1 KB at 16; dk 62 / 21 / 5.9 KB;
# at N = 1024 and 2048, 8 warps spill 0 and ≤ 1.4 KB against 0.4–15 KB at TUNING's. Same for pass 2 of the
# three-pass kernels at the same inner size M. So fp32 takes at least these warps at every pass:
FP32_MIN_WARPS = {1024: 8, 2048: 8, 4096: 16}


def launch_opts(N: int, pass_: str = "fwd", learned: bool = False, dtype: torch.dtype | None = None) -> dict:
    """num_warps / num_stages of the fused kernels for FFT size N and pass ("fwd"; "du", "dk": the fused backward's
    two launches; "bwd": three_pass's pass-2 backward), for rows of `dtype` (fp32: at least FP32_MIN_WARPS). The
    learned-block kernels hold more tiles (their blocks and the fixed DFTs) and have not been swept on a GPU: they keep
    4 warps up to N = 512 and 8 above, so that fewer warps cannot push them into the heavy spills seen at 2 warps,
    N ≥ 2048."""
    if learned:
        return {"num_warps": 4 if N <= 512 else 8, "num_stages": 1}
    opts = {key: TUNING[N][pass_][key] for key in ("num_warps", "num_stages")}
    if dtype == torch.float32:
        opts["num_warps"] = max(opts["num_warps"], FP32_MIN_WARPS.get(N, 0))
    return opts


# The row loop of the fused forward kernel (also the du launch), by FFT size and pass: rows handled per iteration
# (ROWS > 1: that many independent rows unrolled in one iteration, work the scheduler can overlap) and whether the
# output gates are loaded at the top of the iteration with the input (EARLY_LOADS) instead of right before the store.
# Both trade registers for latency hiding; neither has been timed on a GPU (`python -m lconv.kernels.sweep
# --rows-per-iter 1 2 4 --early-loads`), so the defaults are the kernel as it was: one row, loads where used.
LOOP_DEFAULT = {"ROWS": 1, "EARLY_LOADS": False}
LOOP_TUNING: dict = {}  # (N, pass) → overrides of LOOP_DEFAULT, once a GPU sweep says where they pay


def loop_opts(N: int, pass_: str = "fwd") -> dict:
    """ROWS and EARLY_LOADS of flash_butterfly_fwd_kernel's row loop at FFT size N for pass "fwd" or "du"."""
    return {**LOOP_DEFAULT, **LOOP_TUNING.get((N, pass_), {})}


# ---------------------------------------------------------------------------------------------------------------
# Device limits and the device guard: checked once per compiled configuration, before its first launch.
# ---------------------------------------------------------------------------------------------------------------

_SHARED: dict = {}  # (kernel, device, dtypes, meta) → shared bytes of the compiled kernel, checked


def shared_memory_limit(device: torch.device) -> tuple[str, int]:
    """(GPU name, bytes of shared memory one block may opt into) of a CUDA device."""
    props = torch.cuda.get_device_properties(device)
    return props.name, int(props.shared_memory_per_block_optin)


def check_shared_memory(need: int, device: torch.device, N: int, what: str) -> None:
    """Raise ValueError naming the GPU, N and the limit when a kernel needs more shared memory than the GPU offers."""
    name, limit = shared_memory_limit(device)
    if need > limit:
        raise ValueError(f"FlashButterfly {what} at FFT size N={N} needs {need} bytes of shared memory per block, "
                         f"but {name} ({device}) offers {limit}: run this N on a GPU with more shared memory (A100, "
                         f"H100: ≥ 160 KB), use a smaller N (a causal conv of length L needs N ≥ 2·L), or "
                         f"backend='torch'")


def device_guard(t: torch.Tensor):
    """`with device_guard(u):` makes u's CUDA device current (Triton launches on the current one); no-op on CPU."""
    return torch.cuda.device(t.device) if t.device.type == "cuda" else contextlib.nullcontext()


def shared_bytes(kernel, grid, args, meta) -> int | None:
    """Shared memory per block of `kernel` compiled for these arguments and constexprs (compiled once, without a
    launch, and remembered); None off CUDA (the interpreter has no limit)."""
    dev = args[0].device
    if dev.type != "cuda":
        return None
    key = (kernel, dev, tuple(a.dtype for a in args if isinstance(a, torch.Tensor)), tuple(meta.items()))
    if key not in _SHARED:
        with device_guard(args[0]):
            _SHARED[key] = int(kernel.warmup(*args, grid=grid, **meta).metadata.shared)
    return _SHARED[key]


ON_LAUNCH = None  # callable(kernel, args, meta) told of every launch before it runs (kernels.compile_check records)


def launch(kernel, grid, args, meta, N: int, what: str) -> None:
    """kernel[grid](*args, **meta) on args[0]'s device, after checking its shared memory against the device's
    (ValueError naming the GPU, N and the limit, instead of Triton's OutOfResources at launch)."""
    if ON_LAUNCH is not None:
        ON_LAUNCH(kernel, args, meta)
    need = shared_bytes(kernel, grid, args, meta)
    if need is not None:
        check_shared_memory(need, args[0].device, N, what)
    with device_guard(args[0]):
        kernel[grid](*args, **meta)


def block_planes(dft: torch.Tensor | None, M: int, plan: torch.Tensor):
    """Learned block (M, M) or (H, M, M) complex, unnormalised → (fp32 re/im planes scaled by 1/√M, channel stride).

    None gives the fixed unitary DFT `plan` (2, M, M), shared (stride 0). Planes: (2, M, M) or (H, 2, M, M).
    """
    if dft is None:
        return plan, 0
    planes = learned_planes(dft, M)
    return planes, (2 * M * M if dft.dim() == 3 else 0)


def learned_planes(dft: torch.Tensor, M: int) -> torch.Tensor:
    """The learned kernel's operand of a block: (M, M) or (H, M, M) complex, unnormalised → fp32 re/im planes scaled
    by 1/√M, (2, M, M) or (H, 2, M, M), contiguous; differentiable (autograd carries a plane gradient back to the
    complex block)."""
    return (torch.stack([dft.real, dft.imag], dim=-3).to(torch.float32) / math.sqrt(M)).contiguous()


def _three_pass_plan(N: int, device: torch.device) -> dict:
    """Tables for N: outer F0/√N0 (2, N0, N0), twiddle (2, N0, M); inner F_M1/√M1, F_M2/√M2, twiddle(M1, M2);
    "nat" (N/2 + 1,) and "mirror" (N/2 + 1,): for natural frequencies 0 … N/2, the stored slot (in the (R·M) layout
    of the outer rows f0 ≤ N0/2) holding it, or holding −f, whose conjugate it is (mirror = True)."""
    key = _plan_key(N, device)  # one cache with the fused plans: the sizes do not overlap
    if key not in _PLANS:
        _check_not_capturing(N, device)
        N0, M1, M2 = three_pass_sizes(N)
        M, R = M1 * M2, N0 // 2 + 1
        slot = torch.argsort(permuted_order((N0, M1, M2)))  # natural frequency → slot f0·M + j
        f = torch.arange(N // 2 + 1)
        mirror = (f % N0) >= R  # outer row f mod N0 is not stored: use −f
        nat = torch.where(mirror, slot[(-f) % N], slot[f])  # < R·M: stored rows come first
        _PLANS[key] = {
            "dft0": planes(dft_matrix(N0) / math.sqrt(N0), device),
            "tw0": planes(twiddle(N0, M), device),
            "dft1": planes(dft_matrix(M1) / math.sqrt(M1), device),
            "dft2": planes(dft_matrix(M2) / math.sqrt(M2), device),
            "tw1": planes(twiddle(M1, M2), device),
            "nat": nat.to(device), "mirror": mirror.to(device),
            # the outer DFT factored as N0 = A·(N0/A) when outer_blocks(N0)["A"] > 0 (A = 0: unused placeholders)
            **_outer_factors(N0, device),
            "k_src": permuted_order((N0, M1, M2))[:R * M].to(device=device, dtype=torch.int32),  # stored rows only
        }
    return _PLANS[key]


OUTER_A = 16  # N0 ≥ OUTER_FACTOR_MIN: the outer N0-point DFT runs as A-point DFTs, a twiddle, then N0/A-point DFTs
OUTER_FACTOR_MIN = 64


def outer_blocks(N0: int) -> dict:
    """Column block BM, K chunk KB (dense outer DFT) and the factor A (factored outer DFT, 0 = dense) of the outer
    passes (tile (N0, BM) fp32 accumulators)."""
    BM = 64 if N0 <= 32 else (32 if N0 <= 64 else 16)
    KB = min(N0, 64 if N0 <= 64 else 32)
    A = OUTER_A if N0 >= OUTER_FACTOR_MIN else 0
    return {"BM": BM, "KB": KB, "A": A, "num_warps": 4 if N0 <= 32 else 8, "num_stages": 1}


def _outer_factors(N0: int, device) -> dict:
    """"dftA" F_A/√A (2, A, A), "dftB" F_Bf/√Bf (2, Bf, Bf) and "twAB" twiddle(A, Bf) (2, A, Bf) of N0 = A·Bf, whose
    product with the digit permutations is F0/√N0 (lconv.butterfly's Monarch identity); 1-element placeholders when
    the outer DFT is not factored."""
    A = outer_blocks(N0)["A"]
    if not A:
        return {name: torch.zeros(2, 1, 1, device=device) for name in ("dftA", "dftB", "twAB")}
    Bf = N0 // A
    return {"dftA": planes(dft_matrix(A) / math.sqrt(A), device), "dftB": planes(dft_matrix(Bf) / math.sqrt(Bf), device),
            "twAB": planes(twiddle(A, Bf), device)}
