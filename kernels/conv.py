"""FlashButterflyConv: the public API around the fused Triton kernels (input checks, dispatch, autograd).

Mirrors flash-fft-conv's `FlashFFTConv(seqlen, dtype)` so users can swap: `seqlen` is the FFT size N, u is (B, H, L)
in fp32/fp16/bf16, k is (H, Lk) fp32; L = N/2 gives a causal linear convolution, L = N a circular one;
forward(u, k, pregate, postgate) = postgate ⊙ conv(pregate ⊙ u, k) with the gates fused into the kernel.
`flash_butterfly_conv(..., dft1=, dft2=)` runs u's forward transform with learned Butterfly blocks (learned kernels).

Dispatch: N ≤ 4096 (FUSED_N) runs the fused kernels of kernels/flash_butterfly.py; N = 8192 … 2^20 runs
kernels.three_pass.three_pass_conv when that module exists (SUPPORTED_N / supported_n() list what is available).
Each row of u is convolved on its own (no sample's values or size reach another's output), and fp16/bf16 rows are
scaled so that no intermediate overflows (kernels/flash_butterfly.py says what range is safe). Before its first launch
each compiled kernel configuration is checked against the GPU's shared memory per block (`launch`: ValueError naming
the GPU, N and the limit, not Triton's OutOfResources), and launches run with the tensors' GPU current (device guard).
CUDA tensors run the compiled Triton kernels; CPU tensors run the same kernels through the Triton interpreter when
TRITON_INTERPRET=1 was set before `kernels` was imported, otherwise (or without Triton) the PyTorch reference of the
same algorithm: `lconv.butterfly.real_butterfly_conv`, or `lconv.learned_butterfly.learned_butterfly_conv` for learned
blocks.
"""
from __future__ import annotations

import contextlib
import importlib
import importlib.util
import math
import warnings

import torch
from torch import nn

from lconv import butterfly

try:
    from kernels import flash_butterfly as _fb

    HAS_TRITON = True
    INTERPRET = type(_fb.flash_butterfly_fwd_kernel).__name__ == "InterpretedFunction"  # decided at import
except ImportError:  # no triton on this machine: the reference runs everywhere
    _fb, HAS_TRITON, INTERPRET = None, False, False

FUSED_N = (256, 512, 1024, 2048, 4096)  # one fused kernel: the whole sequence on chip
THREE_PASS_N = tuple(1 << e for e in range(13, 21))  # 8192 … 2^20: kernels.three_pass, when that module exists
U_DTYPES = (torch.float32, torch.float16, torch.bfloat16)
BLOCK_DTYPES = (torch.complex64, torch.complex128)
BACKENDS = ("auto", "triton", "reference")

_THREE_PASS: list = []  # [module or None], filled on first use


def three_pass_module():
    """kernels.three_pass if that module exists, else None; imported lazily (it imports this module)."""
    if not _THREE_PASS:
        mod = None
        if importlib.util.find_spec("kernels.three_pass") is not None:
            mod = importlib.import_module("kernels.three_pass")  # a broken module raises here, loudly
        _THREE_PASS.append(mod)
    return _THREE_PASS[0]


def supported_n() -> tuple[int, ...]:
    """FFT sizes N available here: FUSED_N, plus THREE_PASS_N when kernels.three_pass is present."""
    return FUSED_N + (THREE_PASS_N if three_pass_module() is not None else ())


def __getattr__(name):  # SUPPORTED_N is computed on first access: the three-pass module is imported lazily
    if name == "SUPPORTED_N":
        return supported_n()
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


# ---------------------------------------------------------------------------------------------------------------
# Input checks: every bad input raises ValueError naming the fix, before anything is launched.
# ---------------------------------------------------------------------------------------------------------------

def check_seqlen(N) -> int:
    """N must be one of supported_n() (the FFT size, not the input length)."""
    if not isinstance(N, int) or (N not in FUSED_N and N not in supported_n()):
        raise ValueError(f"FFT size N={N!r} is not supported; supported N (the FFT size, ≥ 2·L for a causal "
                         f"convolution): {list(supported_n())}")
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
    for name, blk, M in (("dft1", dft1, butterfly.default_sizes(N)[0]), ("dft2", dft2, butterfly.default_sizes(N)[1])):
        if blk is None:
            continue
        if not isinstance(blk, torch.Tensor) or blk.dtype not in BLOCK_DTYPES:
            raise ValueError(f"{name} must be a complex tensor (e.g. lconv.butterfly.dft_matrix({M}, "
                             f"dtype=torch.complex64)), got {getattr(blk, 'dtype', type(blk).__name__)}")
        if tuple(blk.shape) not in ((M, M), (H, M, M)):
            raise ValueError(f"{name} must be ({M}, {M}) or per channel ({H}, {M}, {M}) for N={N} "
                             f"(N1, N2 = {butterfly.default_sizes(N)}), got {tuple(blk.shape)}")
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
        raise ValueError(f"k has {k.shape[0]} channels but u has H={H}: pass k as (H, L) = ({H}, L)")
    if L > N or k.shape[1] > N:
        raise ValueError(f"L={L} (u) and Lk={k.shape[1]} (k) must be ≤ the FFT size N={N}; pick N ≥ 2·L for a "
                         f"causal convolution (supported N: {list(supported_n())})")
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


def _pick_backend(u: torch.Tensor, backend: str) -> str:
    """'triton' or 'reference' for this tensor's device (see the module docstring)."""
    if backend not in BACKENDS:
        raise ValueError(f"backend={backend!r}: use one of {BACKENDS}")
    can_triton = HAS_TRITON and (u.is_cuda or (u.device.type == "cpu" and INTERPRET))
    if backend == "triton" and not can_triton:
        raise ValueError("backend='triton' needs Triton and a CUDA tensor, or CPU tensors with TRITON_INTERPRET=1 "
                         "set before `import kernels`; use backend='reference' or 'auto' otherwise")
    if backend == "auto":
        if u.is_cuda and not HAS_TRITON:
            warnings.warn("Triton is not installed: FlashButterflyConv runs the PyTorch reference", stacklevel=3)
        return "triton" if can_triton else "reference"
    return backend


# ---------------------------------------------------------------------------------------------------------------
# Launch wrappers
# ---------------------------------------------------------------------------------------------------------------

_PLANS: dict = {}


def _planes(z: torch.Tensor, device) -> torch.Tensor:
    """complex (…, a, b) → fp32 (2, …, a, b) re/im planes on device."""
    return torch.stack([z.real, z.imag]).to(device=device, dtype=torch.float32).contiguous()


def _plan(N: int, device: torch.device) -> dict:
    """fp32 re/im tables of the fused kernels at FFT size N, unitary DFTs, cached per device.

    Fixed kernel (half-length trick, (N1, N2) = half_sizes(N)): "dft1" (2, N1, N1), "dft2" (2, N2, N2),
    "tw" (2, N1, N2), "hw" (2, N1, N2) = ω_N^f at the permuted slots. Learned kernels (the N-point split
    (N1, N2) = default_sizes(N)): "dft1_full", "dft2_full", "tw_full".
    """
    key = (N, str(device))
    if key not in _PLANS:
        N1, N2 = butterfly.half_sizes(N)
        F1, F2 = butterfly.default_sizes(N)
        _PLANS[key] = {
            "dft1": _planes(butterfly.dft_matrix(N1) / math.sqrt(N1), device),
            "dft2": _planes(butterfly.dft_matrix(N2) / math.sqrt(N2), device),
            "tw": _planes(butterfly.twiddle(N1, N2), device),
            "hw": _planes(butterfly.half_tables(N)["omega"].reshape(N1, N2), device),
            "dft1_full": _planes(butterfly.dft_matrix(F1) / math.sqrt(F1), device),
            "dft2_full": _planes(butterfly.dft_matrix(F2) / math.sqrt(F2), device),
            "tw_full": _planes(butterfly.twiddle(F1, F2), device),
        }
    return _PLANS[key]


def k_f_planes(k: torch.Tensor, N: int) -> torch.Tensor:
    """k (H, Lk) fp32 → k_f (H, 2, N) fp32 for the fixed kernel: re/im planes of `lconv.butterfly.k_f_half`."""
    k_f = butterfly.k_f_half(k, N)  # (H, N) complex64
    return torch.stack([k_f.real, k_f.imag], dim=1).contiguous()  # (H, 2, N)


def k_f_planes_full(k: torch.Tensor, N: int) -> torch.Tensor:
    """k (H, Lk) fp32 → k_f (H, 2, N) fp32 for the learned kernels: k's FFT in the N-point permuted order."""
    k_f = butterfly.k_f_permuted(k, N)  # (H, N) complex64
    return torch.stack([k_f.real, k_f.imag], dim=1).contiguous()  # (H, 2, N)


def _dot_args(dtype: torch.dtype) -> dict:
    """tl.dot operands: the input dtype for fp16/bf16 (fp32 for bf16 under the interpreter, whose bf16 dot is
    wrong), fp32 with input_precision="ieee" (no TF32) for fp32; "tf32" is the default and is ignored for 16-bit.
    NORM: fp16/bf16 rows and spectra are scaled by powers of two before rounding (kernels/flash_butterfly.py)."""
    dot_fp32 = dtype == torch.float32 or (dtype == torch.bfloat16 and INTERPRET)
    return {"DOT_FP32": dot_fp32, "PREC": "ieee" if dot_fp32 else "tf32", "NORM": dtype != torch.float32}


PROGRAMS_PER_SM = 4  # _chunks splits the batch until channels × chunks reaches this many programs per multiprocessor


def _chunks(n_rows: int, rows: int, device: torch.device, rows_per_prog: int | None):
    """(n_chunks, rows_per_prog): split the n_rows batch rows of each of `rows` independent rows (channels, or the
    three-pass inner rows) so that rows · chunks programs fill the GPU PROGRAMS_PER_SM times."""
    if rows_per_prog is None:
        if device.type == "cuda":
            target = PROGRAMS_PER_SM * torch.cuda.get_device_properties(device).multi_processor_count
            n_chunks = min(n_rows, max(1, -(-target // rows)))
        else:
            n_chunks = 1  # the interpreter runs programs one after another: fewer is cheaper
        rows_per_prog = -(-n_rows // n_chunks)
    rows_per_prog = max(1, int(rows_per_prog))
    return -(-n_rows // rows_per_prog), rows_per_prog


# Launch settings of the fused fixed-FFT kernels by FFT size and pass (one tile per program, no software
# pipelining), measured with `python -m kernels.sweep` on an H100 (fp16, B=64, H=768; results/raw/sweep-*) for the
# packed-pair kernel this one replaced (tiles of N points; now N/2): fewer warps per program was much faster until
# the tiles spilled. fwd ms at 2 / 4 / 8 warps: N=256 0.049 / 0.083 / 0.142, N=1024 0.142 / 0.211 / 0.442,
# N=4096 36.6 (spilled) / 0.581 / 1.335; N=512 0.064 / 0.068, N=2048 0.451 / 0.308. bwd: N=256 0.080 / 0.141 /
# 0.236, N=512 0.165 / 0.157 (within noise: 2 kept, as benchmarked), N=1024 0.262 / 0.342 / 0.732, N=2048 20.3
# (spilled) / 0.675, N=4096 83 (spilled) at 2; 4 and 8 not timed (the sweep ran out of time): 4, as fwd. Re-reading
# the DFT blocks, twiddles and K inside the loop instead of holding them in registers was 1.4–2× slower at every
# size and was dropped. Not re-swept for the per-row kernels (tiles of N/2 points): rerun the sweep on a GPU.
TUNING = {
    256: {"fwd": {"num_warps": 2, "num_stages": 1}, "bwd": {"num_warps": 2, "num_stages": 1}},
    512: {"fwd": {"num_warps": 2, "num_stages": 1}, "bwd": {"num_warps": 2, "num_stages": 1}},
    1024: {"fwd": {"num_warps": 2, "num_stages": 1}, "bwd": {"num_warps": 2, "num_stages": 1}},
    2048: {"fwd": {"num_warps": 4, "num_stages": 1}, "bwd": {"num_warps": 4, "num_stages": 1}},
    4096: {"fwd": {"num_warps": 4, "num_stages": 1}, "bwd": {"num_warps": 4, "num_stages": 1}},
}


def _launch_opts(N: int, pass_: str = "fwd", learned: bool = False) -> dict:
    """num_warps / num_stages of the fused kernels for FFT size N and pass ("fwd" or "bwd"). The learned-block
    kernels hold more tiles (their blocks and the fixed DFTs) and have not been swept on a GPU: they keep 4 warps up
    to N = 512 and 8 above, so that fewer warps cannot push them into the heavy spills seen at 2 warps, N ≥ 2048."""
    if learned:
        return {"num_warps": 4 if N <= 512 else 8, "num_stages": 1}
    return dict(TUNING[N][pass_])


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
                         f"backend='reference'")


def device_guard(t: torch.Tensor):
    """`with device_guard(u):` makes u's CUDA device current (Triton launches on the current one); no-op on CPU."""
    return torch.cuda.device(t.device) if t.device.type == "cuda" else contextlib.nullcontext()


def shared_bytes(kernel, grid, args, meta) -> int | None:
    """Shared memory per block of `kernel` compiled for these arguments and constexprs (compiled once, without a
    launch, and remembered); None off CUDA (the interpreter has no limit)."""
    dev = args[0].device
    if dev.type != "cuda":
        return None
    key = (getattr(kernel, "fn", kernel).__name__, str(dev),
           tuple(str(a.dtype) for a in args if isinstance(a, torch.Tensor)), tuple(sorted(meta.items())))
    if key not in _SHARED:
        with device_guard(args[0]):
            _SHARED[key] = int(kernel.warmup(*args, grid=grid, **meta).metadata.shared)
    return _SHARED[key]


def fits(kernel, grid, args, meta) -> bool:
    """Whether `kernel` with these constexprs fits the shared memory of args[0]'s device (always on CPU)."""
    need = shared_bytes(kernel, grid, args, meta)
    return need is None or need <= shared_memory_limit(args[0].device)[1]


def launch(kernel, grid, args, meta, N: int, what: str) -> None:
    """kernel[grid](*args, **meta) on args[0]'s device, after checking its shared memory against the device's
    (ValueError naming the GPU, N and the limit, instead of Triton's OutOfResources at launch)."""
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
    planes = torch.stack([dft.real, dft.imag], dim=-3).to(torch.float32) / math.sqrt(M)  # (..., 2, M, M)
    return planes.contiguous(), (2 * M * M if dft.dim() == 3 else 0)


def _fwd(u: torch.Tensor, k_f: torch.Tensor, N: int, pregate=None, postgate=None, blocks=None,
         rows_per_prog: int | None = None) -> torch.Tensor:
    """y (B, H, L) in u's dtype from the fused forward kernel (learned kernel when `blocks` are given; k_f from
    k_f_planes, or k_f_planes_full for learned blocks)."""
    B, H, L = u.shape
    plan = _plan(N, u.device)
    y = torch.empty_like(u)  # (B, H, L)
    gated = pregate is not None
    pre, post = (pregate, postgate) if gated else (u, u)  # unused pointers when not gated
    meta = dict(GATED=gated, **_dot_args(u.dtype), **_launch_opts(N, "fwd", learned=blocks is not None))
    n_chunks, rpp = _chunks(B, H, u.device, rows_per_prog)
    if blocks is None:
        N1, N2 = butterfly.half_sizes(N)
        launch(_fb.flash_butterfly_fwd_kernel, (H * n_chunks,),
               (u, y, pre, post, k_f, plan["dft1"], plan["dft2"], plan["tw"], plan["hw"], B, H, L, n_chunks, rpp),
               dict(N1=N1, N2=N2, USE_DOT=min(N1, N2) >= 16, **meta), N, "forward")
    else:
        N1, N2 = butterfly.default_sizes(N)
        (blk1, s1), (blk2, s2) = blocks
        launch(_fb.learned_fwd_kernel, (H * n_chunks,),
               (u, y, pre, post, k_f, plan["dft1_full"], plan["dft2_full"], plan["tw_full"], blk1, blk2,
                B, H, L, n_chunks, rpp, s1, s2), dict(N1=N1, N2=N2, **meta), N, "forward (learned blocks)")
    return y


def _bwd(u: torch.Tensor, dy: torch.Tensor, k_f: torch.Tensor, N: int, Lk: int, pregate=None, postgate=None,
         blocks=None, need=(True, True, False, False, False, False), rows_per_prog: int | None = None):
    """Gradients from the fused backward kernel, None where not needed.

    need = (du, dk, dpregate, dpostgate, dblock1, dblock2) → du, dpre, dpost (B, H, L) in u's dtype; dk (H, Lk) fp32;
    dblock1/2: (H, 2, M, M) fp32 gradients of the kernel's scaled block planes (one per channel, not yet summed).
    """
    B, H, L = u.shape
    plan = _plan(N, u.device)
    need_du, need_dk, need_dpre, need_dpost, need_db1, need_db2 = need
    gated = pregate is not None
    pre, post = (pregate, postgate) if gated else (u, u)
    learned = blocks is not None
    n_chunks, rpp = _chunks(B, H, u.device, rows_per_prog)
    f32 = dict(device=u.device, dtype=torch.float32)
    empty = u.new_empty(0)
    du = torch.empty_like(u) if need_du else empty  # (B, H, L)
    dpre = torch.empty_like(u) if (gated and need_dpre) else empty
    dpost = torch.empty_like(u) if (gated and need_dpost) else empty
    dk = torch.empty(n_chunks, H, Lk, **f32) if need_dk else torch.empty(0, **f32)  # (C, H, Lk) partial sums
    meta = dict(GATED=gated, COMPUTE_DU=need_du, COMPUTE_DK=need_dk, COMPUTE_DPRE=gated and need_dpre,
                COMPUTE_DPOST=gated and need_dpost, **_dot_args(u.dtype), **_launch_opts(N, "bwd", learned=learned))
    db1 = db2 = None
    if not learned:
        N1, N2 = butterfly.half_sizes(N)
        args = (u, dy, pre, post, du, dpre, dpost, dk, k_f, plan["dft1"], plan["dft2"], plan["tw"], plan["hw"],
                B, H, L, Lk, n_chunks, rpp, math.sqrt(N1 * N2))
        meta.update(N1=N1, N2=N2, USE_DOT=min(N1, N2) >= 16)
        kernel, grid = _fb.flash_butterfly_bwd_kernel, (H * n_chunks,)
        split = [dict(meta, COMPUTE_DK=False, COMPUTE_DPOST=False), dict(meta, COMPUTE_DU=False, COMPUTE_DPRE=False)]
        if (meta["COMPUTE_DU"] or meta["COMPUTE_DPRE"]) and (meta["COMPUTE_DK"] or meta["COMPUTE_DPOST"]) \
                and not fits(kernel, grid, args, meta) and all(fits(kernel, grid, args, m) for m in split):
            for m in split:  # the gradients of u and of (k, postgate) in two launches: fewer tiles live at once
                launch(kernel, grid, args, m, N, "backward")
        else:
            launch(kernel, grid, args, meta, N, "backward")
    else:
        N1, N2 = butterfly.default_sizes(N)
        (blk1, s1), (blk2, s2) = blocks
        need_db = need_db1 or need_db2
        db1 = torch.empty(n_chunks, H, 2, N1, N1, **f32) if need_db else torch.empty(0, **f32)  # (C, H, 2, N1, N1)
        db2 = torch.empty(n_chunks, H, 2, N2, N2, **f32) if need_db else torch.empty(0, **f32)  # (C, H, 2, N2, N2)
        launch(_fb.learned_bwd_kernel, (H * n_chunks,),
               (u, dy, pre, post, du, dpre, dpost, dk, db1, db2, k_f, plan["dft1_full"], plan["dft2_full"],
                plan["tw_full"], blk1, blk2, B, H, L, Lk, n_chunks, rpp, math.sqrt(N), s1, s2),
               dict(N1=N1, N2=N2, COMPUTE_DBLK=need_db, **meta), N, "backward (learned blocks)")
        db1 = db1.sum(0) if need_db1 else None  # (H, 2, N1, N1)
        db2 = db2.sum(0) if need_db2 else None
    return ((du if need_du else None), (dk.sum(0) if need_dk else None),  # dk (H, Lk)
            (dpre if gated and need_dpre else None), (dpost if gated and need_dpost else None), db1, db2)


def _block_grad(g: torch.Tensor | None, dft: torch.Tensor | None, M: int):
    """Gradient of the unnormalised complex block from the kernel's plane gradients (H, 2, M, M) fp32."""
    if g is None or dft is None:
        return None
    if dft.dim() == 2:
        g = g.sum(0)  # shared block: sum over channels, (2, M, M)
    return (torch.complex(g[..., 0, :, :], g[..., 1, :, :]) / math.sqrt(M)).to(dft.dtype)  # (…, M, M)


class FlashButterflyFn(torch.autograd.Function):
    """Fused forward and backward kernels wired into autograd: y = [post ⊙] conv_N([pre ⊙] u, k), learned or fixed."""

    @staticmethod
    def forward(ctx, u, k, pregate, postgate, dft1, dft2, N):
        blocks = None
        if dft1 is not None or dft2 is not None:
            N1, N2 = butterfly.default_sizes(N)
            plan = _plan(N, u.device)
            blocks = (block_planes(dft1, N1, plan["dft1_full"]), block_planes(dft2, N2, plan["dft2_full"]))
        k_f = (k_f_planes if blocks is None else k_f_planes_full)(k, N)  # (H, 2, N) fp32, once per call
        ctx.save_for_backward(u, k_f, pregate, postgate, dft1, dft2)
        ctx.blocks, ctx.N, ctx.Lk = blocks, N, k.shape[-1]
        return _fwd(u, k_f, N, pregate, postgate, blocks)

    @staticmethod
    def backward(ctx, dy):
        u, k_f, pregate, postgate, dft1, dft2 = ctx.saved_tensors
        dy = dy.to(u.dtype).contiguous()  # (B, H, L)
        need = ctx.needs_input_grad[:6]
        du, dk, dpre, dpost, db1, db2 = _bwd(u, dy, k_f, ctx.N, ctx.Lk, pregate, postgate, ctx.blocks, need)
        N1, N2 = butterfly.default_sizes(ctx.N)
        return du, dk, dpre, dpost, _block_grad(db1, dft1, N1), _block_grad(db2, dft2, N2), None


def _reference(u, k, N, pregate, postgate, dft1, dft2):
    """The PyTorch path: lconv.butterfly.butterfly_conv (fixed FFT) or lconv.learned_butterfly (learned blocks)."""
    v = u if pregate is None else u * pregate  # (B, H, L)
    if dft1 is None and dft2 is None:
        y = butterfly.real_butterfly_conv(v, k, N)
    else:
        try:
            from lconv.learned_butterfly import learned_butterfly_conv
        except ImportError as exc:
            raise ValueError("learned blocks on the reference backend need lconv.learned_butterfly; run on the "
                             "Triton backend (a GPU, or TRITON_INTERPRET=1 on CPU)") from exc
        N1, N2 = butterfly.default_sizes(N)
        dft1 = butterfly.dft_matrix(N1, dtype=torch.complex64, device=u.device) if dft1 is None else dft1
        dft2 = butterfly.dft_matrix(N2, dtype=torch.complex64, device=u.device) if dft2 is None else dft2
        y = learned_butterfly_conv(v, k, N, dft1, dft2).to(u.dtype)
    return y if postgate is None else y * postgate


# ---------------------------------------------------------------------------------------------------------------
# Public API
# ---------------------------------------------------------------------------------------------------------------

def flash_butterfly_conv(u: torch.Tensor, k: torch.Tensor, N: int, pregate: torch.Tensor | None = None,
                         postgate: torch.Tensor | None = None, *, dft1: torch.Tensor | None = None,
                         dft2: torch.Tensor | None = None, backend: str = "auto") -> torch.Tensor:
    """y (B, H, L) = postgate ⊙ (first L of the N-point circular convolution of zero-padded pregate ⊙ u and k).

    N is the FFT size (one of SUPPORTED_N): L, Lk ≤ N/2 gives the causal linear convolution y[t] = Σ_s k[s]·u[t−s],
    L = N the circular one. u fp32/fp16/bf16 (B, H, L), k fp32 (H, Lk); y has u's dtype; differentiable in all.
    Gates: both or neither, shaped like u, fused into the kernel's loads and stores.
    dft1 (N1, N1) / dft2 (N2, N2), complex, or per channel (H, ·, ·): learned forward blocks of u's transform,
    unnormalised (lconv.butterfly.dft_matrix at init, (N1, N2) = lconv.butterfly.default_sizes(N)); k's spectrum and
    the inverse stay exact and y = Re(F^{-1}(F_k ⊙ A(u)))[:L] row by row, which equals the plain conv at A = DFT.
    N > 4096 runs kernels.three_pass (when present; no learned blocks there).
    Every row is computed on its own: a NaN, an Inf or a huge value in one sample leaves every other sample's y (and
    du) exactly as computed alone. fp16/bf16: no intermediate overflows, for any finite input; y is finite wherever
    its exact value fits the dtype (±inf where it does not, as PyTorch's fp32 result cast to the dtype would be).
    backend: "auto" (Triton where it can run, see the module docstring), "triton", or "reference".
    """
    check_inputs(u, k, N, pregate, postgate, dft1, dft2)
    if N not in FUSED_N:  # N > 4096: the three-pass kernel (or its reference), which owns its dispatch
        return three_pass_module().three_pass_conv(u, k, N, pregate, postgate, backend=backend)
    if _pick_backend(u, backend) == "reference" or u.numel() == 0 or k.numel() == 0:  # empty: nothing to launch
        return _reference(u, k, N, pregate, postgate, dft1, dft2)
    return FlashButterflyFn.apply(u, k, pregate, postgate, dft1, dft2, N)


class FlashButterflyConv(nn.Module):
    """FFT convolution by the fused FlashButterfly kernel; `seqlen` is the FFT size N (not the input length L).

    Drop-in for flash-fft-conv's FlashFFTConv(seqlen, dtype): forward(u, k, pregate=None, postgate=None) with
    u (B, H, L) of `dtype` and k (H, L) fp32; L = seqlen/2 gives a causal linear convolution, L = seqlen a circular one.
    """

    def __init__(self, seqlen: int, dtype: torch.dtype = torch.float16, backend: str = "auto"):
        super().__init__()
        self.seqlen = check_seqlen(seqlen)
        if dtype not in U_DTYPES:
            raise ValueError(f"dtype={dtype}: use torch.float16, torch.bfloat16 or torch.float32")
        if backend not in BACKENDS:
            raise ValueError(f"backend={backend!r}: use one of {BACKENDS}")
        self.dtype, self.backend = dtype, backend

    def forward(self, u: torch.Tensor, k: torch.Tensor, pregate: torch.Tensor | None = None,
                postgate: torch.Tensor | None = None) -> torch.Tensor:
        """y = postgate ⊙ conv(pregate ⊙ u, k); gates (both or neither) shaped like u, fused into the kernel."""
        if isinstance(u, torch.Tensor) and u.dtype != self.dtype:
            raise ValueError(f"u has dtype {u.dtype} but this module was built for {self.dtype}: cast u with "
                             f".to({self.dtype}) or build FlashButterflyConv(seqlen, dtype={u.dtype})")
        return flash_butterfly_conv(u, k, self.seqlen, pregate, postgate, backend=self.backend)

    def extra_repr(self) -> str:
        return f"seqlen={self.seqlen}, dtype={self.dtype}, backend={self.backend!r}"
