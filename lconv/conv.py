r"""FFT convolution and its O(L²) reference: the operators every fast path is tested against.

Causal (the default): for u (B, H, L) and a kernel k (H, Lk) with Lk ≤ L,

    y[b, h, t] = Σ_{s=0}^{min(t, Lk−1)} k[h, s] · u[b, h, t − s],        t = 0 … L−1.

`fft_conv` computes this as irfft(rfft(u, n) · rfft(k, n))[..., :L] with n ≥ L + Lk − 1, so the circular
convolution of size n equals the linear one: no output tap wraps around (the official code uses n = 2L).

Bidirectional (`causal=False`): k has odd length K = 2·Lk − 1 and holds lags −(Lk−1) … (Lk−1), centred:
k[..., Lk − 1 + s] is the weight of lag s, so y[t] = Σ_s k[Lk − 1 + s] · u[t − s] ("same" convolution).
`bidirectional_kernel(k_fwd, k_bwd)` builds it the way the official code does from 2C channels: the first half
is used as is for lags 0 … L−1, the second half is flipped onto the negative lags −1 … −(L−1).
"""
import os

import torch

_FLOATS = (torch.float16, torch.bfloat16, torch.float32, torch.float64)


def _check_tensor(x, name):
    """Raise unless x is a real floating-point tensor."""
    if not isinstance(x, torch.Tensor):
        raise ValueError(f"{name} must be a torch.Tensor, got {type(x).__name__}")
    if x.dtype not in _FLOATS:
        raise ValueError(f"{name} has dtype {x.dtype}; pass a real floating tensor ({name}.float() or "
                         f"{name}.double()); complex or integer {name} is not supported")


def finite_check_enabled(device) -> bool:
    """Whether fft_conv checks its inputs for NaN/Inf on `device` (a torch.device or its type string).

    The check needs the answer on the host. On a CPU that costs one reduction; on a GPU it is a device-to-host
    synchronisation per call, which stalls the launch queue and breaks CUDA-graph capture, so there it runs only
    when the environment variable LCONV_CHECK_FINITE=1 asks for it (debugging). Inside torch.compile it never runs
    (a data-dependent branch would break the graph); the trainer still stops with a clear error on a non-finite
    loss. LCONV_CHECK_FINITE=0 turns it off on the CPU too.
    """
    flag = os.environ.get("LCONV_CHECK_FINITE", "")
    if flag not in ("", "0", "1"):
        raise ValueError(f"LCONV_CHECK_FINITE={flag!r}: set it to 1 (check on every device), 0 (never) or unset "
                         f"(check CPU tensors only)")
    if flag:
        return flag == "1"
    return torch.device(device).type == "cpu"


def _check_finite(**tensors):
    """Raise on NaN/Inf in any of `tensors` (name=tensor): they would otherwise spread silently through the FFT to
    every output tap. Eager mode only, and by default on CPU tensors only (see finite_check_enabled); one reduction
    for all of them, naming the culprit costs more only when one is bad."""
    if torch.compiler.is_compiling() or not finite_check_enabled(next(iter(tensors.values())).device):
        return
    # min and max of a tensor are finite iff every element is (NaN propagates through both): one pass with no
    # full-size boolean temporary, ~15x cheaper than isfinite(x).all() on a CPU
    extremes = [torch.stack(torch.aminmax(x)) for x in tensors.values() if x.numel()]
    if not extremes or bool(torch.isfinite(torch.cat(extremes)).all()):
        return
    name = next(n for n, x in tensors.items() if not torch.isfinite(x).all())
    raise ValueError(f"{name} contains NaN or Inf; fix the values upstream (e.g. lower the learning rate, "
                     f"check the data, or clip with torch.nan_to_num) before the convolution")


def _check_inputs(u, k, causal, D=None, check_finite=True):
    """Validate (u, k, D) for fft_conv/direct_conv; return the kernel's causal length Lk."""
    _check_tensor(u, "u")
    _check_tensor(k, "k")
    if u.ndim != 3:
        raise ValueError(f"u must be (B, H, L), got shape {tuple(u.shape)}; add a batch dim with u[None] "
                         "or move the channels: models use (B, L, H), so pass u.transpose(1, 2)")
    B, H, L = u.shape
    if k.ndim not in (2, 3):
        raise ValueError(f"k must be (H, Lk) or (C, H, Lk), got shape {tuple(k.shape)}")
    if k.ndim == 3 and k.shape[0] == 1 and H != 1:
        raise ValueError(f"k has shape {tuple(k.shape)}: one channel is written (H, L); pass k.squeeze(0) "
                         f"(the output is then (B, H, L)), or (C, H, L) with C ≥ 2 channels")
    if k.ndim == 2 and k.shape[0] == 1 and H != 1:
        raise ValueError(f"k has shape {tuple(k.shape)} but u has H={H} channels: pass k as (H, L) with one "
                         f"filter per channel (k.expand({H}, -1) to share one filter)")
    if k.shape[-2] != H:
        hint = ""
        if k.ndim == 3 and k.shape[0] == H:
            hint = "; k looks like (H, C, L): pass k.transpose(0, 1)"
        elif L == k.shape[-2]:
            hint = (f"; u is probably transposed: its last dim ({L}) is k's channel count, so u looks like "
                    f"(B, L, H) as models hold it; pass u.transpose(1, 2) (B, H, L)")
        raise ValueError(f"k has {k.shape[-2]} channels (shape {tuple(k.shape)}) but u has H={H} "
                         f"(shape {tuple(u.shape)}); pass k as (H, L) or (C, H, L) with the same H{hint}")
    if k.device != u.device:
        raise ValueError(f"u is on {u.device} but k is on {k.device}; move k with k.to(u.device)")
    K = k.shape[-1]
    if causal:
        if K > L:
            raise ValueError(f"k has {K} taps but u has length L={L}: taps beyond L−1 never reach the output; "
                             f"pass k[..., :{L}] (crop the kernel to the sequence length)")
        Lk = K
    else:
        if K % 2 == 0:
            raise ValueError(f"causal=False needs k of odd length 2·Lk − 1 centred on lag 0, got {K}; build it "
                             "with lconv.conv.bidirectional_kernel(k_fwd, k_bwd)")
        Lk = (K + 1) // 2
        if Lk > L:
            raise ValueError(f"k spans lags ±{Lk - 1} but u has length L={L}; crop it to the centre "
                             f"k[..., {Lk - L}:{Lk + L - 1}] (length 2L − 1)")
    if D is not None:
        _check_tensor(D, "D")
        if D.device != u.device:
            raise ValueError(f"u is on {u.device} but D is on {D.device}; move D with D.to(u.device)")
        if tuple(D.shape) not in {(H,), tuple(k.shape[:-1])}:
            raise ValueError(f"D has shape {tuple(D.shape)}; pass D as (H,)=({H},) or k.shape[:-1]="
                             f"{tuple(k.shape[:-1])}")
    if check_finite:
        _check_finite(u=u, k=k)
    return Lk


def _compute_dtype(*xs):
    """fp64 if any input is fp64, else fp32 (half inputs are upcast: the FFT runs in fp32)."""
    return torch.float64 if any(x is not None and x.dtype == torch.float64 for x in xs) else torch.float32


def bidirectional_kernel(k_fwd, k_bwd):
    """Two-sided kernel (…, 2L − 1) from k_fwd (…, L) (lags 0…L−1) and k_bwd (…, L) (lags −1…−(L−1), flipped).

    Lag −(s+1) gets k_bwd[..., s]; k_bwd[..., L−1] would sit at lag −L, which never reaches an output of
    length L, so it is dropped (the official code keeps it at a position that only ever meets zero padding).
    """
    if k_fwd.shape != k_bwd.shape:
        raise ValueError(f"k_fwd {tuple(k_fwd.shape)} and k_bwd {tuple(k_bwd.shape)} must have the same shape")
    return torch.cat([k_bwd[..., :-1].flip(-1), k_fwd], dim=-1)  # (..., 2L − 1)


# The backend vocabulary of every long convolution (lconv.backend, kernels): "torch" = the PyTorch reference,
# "triton" = the kernels in kernels/ (a GPU, or CPU tensors under TRITON_INTERPRET=1), "auto" = Triton where it runs.
BACKENDS = ("auto", "torch", "triton")
TRITON_MIN_N = 256  # the smallest FFT size of the fused Triton kernel (kernels.launch.FUSED_N[0])


def fft_size(L, Lk=None, *, backend="torch", minimum=1):
    """The FFT size rule: the smallest power of two n ≥ L + Lk − 1 (Lk defaults to L: a causal convolution of length L,
    n = 2·next_pow2(L)), so the circular convolution of size n has no wrap-around; at least TRITON_MIN_N where Triton
    may run (backend "auto" or "triton"), and at least `minimum`."""
    n = 1 << (L + (L if Lk is None else Lk) - 2).bit_length()
    return max(n, minimum, TRITON_MIN_N if backend != "torch" else 1)


class _FFTConv(torch.autograd.Function):
    """y = irfft(rfft(u, n) · rfft(k, n))[..., offset:offset + L] with a backward by real FFTs too.

    The backward is the adjoint of the size-n circular convolution, cropped to each input's support:
    du = irfft(dy_f · conj(k_f))[..., :L], dk = irfft(Σ_B dy_f · conj(u_f))[..., :K], dy_f the rfft of dy placed
    at `offset` in a length-n buffer. Autograd through rfft/irfft computes the same values with full complex FFTs
    and zero fills, about twice the time on a CPU.
    """

    @staticmethod
    def forward(ctx, u, k, n, offset):  # u (B, H, L), k (H, K) or (C, H, K)
        L, K = u.shape[-1], k.shape[-1]
        u_f = torch.fft.rfft(u, n=n)  # (B, H, n/2 + 1)
        k_f = torch.fft.rfft(k, n=n)  # ([C,] H, n/2 + 1)
        if k.ndim == 3:
            u_f = u_f[:, None]  # (B, 1, H, n/2 + 1)
        ctx.save_for_backward(u_f, k_f)
        ctx.shape = (n, offset, L, K)
        return torch.fft.irfft(u_f * k_f, n=n)[..., offset:offset + L]  # (B, [C,] H, L)

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, dy):  # dy (B, [C,] H, L)
        u_f, k_f = ctx.saved_tensors
        n, offset, L, K = ctx.shape
        if offset:
            dy = torch.nn.functional.pad(dy, (offset, 0))  # output tap t sits at t + offset of the buffer
        dy_f = torch.fft.rfft(dy.to(u_f.real.dtype), n=n)  # (B, [C,] H, n/2 + 1)
        du = dk = None
        if ctx.needs_input_grad[0]:
            du_f = dy_f * k_f.conj()
            if du_f.ndim == 4:
                du_f = du_f.sum(1)  # (B, H, n/2 + 1): the C channels all read the same u
            du = torch.fft.irfft(du_f, n=n)[..., :L]  # (B, H, L)
        if ctx.needs_input_grad[1]:
            dk = torch.fft.irfft((dy_f * u_f.conj()).sum(0), n=n)[..., :K]  # ([C,] H, K)
        return du, dk, None, None


def fft_conv(u, k, *, causal=True, D=None, check_finite=True):
    """Zero-padded linear convolution by FFT: u (B, H, L), k (H, Lk) → (B, H, L) or k (C, H, Lk) → (B, C, H, L), C ≥ 2.

    `D` (H,) or k.shape[:-1] adds the skip u·D. Computes in fp32 (fp64 if an input is fp64), returns u's dtype.
    `check_finite=False` skips the NaN/Inf check (which runs in eager mode on CPU tensors, or everywhere with
    LCONV_CHECK_FINITE=1: `finite_check_enabled`).
    """
    _check_inputs(u, k, causal, D, check_finite)
    B, H, L = u.shape
    K = k.shape[-1]
    dtype = _compute_dtype(u, k, D)
    offset = 0 if causal else (K - 1) // 2  # the centre tap of a two-sided kernel is lag 0
    y = _FFTConv.apply(u.to(dtype), k.to(dtype), fft_size(L, K), offset)  # (B, [C,] H, L)
    if D is not None:
        x = u.to(dtype) if k.ndim == 2 else u.to(dtype)[:, None]  # (B, [1,] H, L)
        y = y + x * D.to(dtype)[..., None]
    return y.to(u.dtype)


def direct_conv(u, k, *, causal=True, D=None):
    """O(L·Lk) reference of fft_conv, the sum y[t] = Σ_s k[s]·u[t − s] written out lag by lag."""
    _check_inputs(u, k, causal, D, check_finite=False)
    B, H, L = u.shape
    K = k.shape[-1]
    dtype = _compute_dtype(u, k, D)
    x = u.to(dtype) if k.ndim == 2 else u.to(dtype)[:, None]  # (B, [1,] H, L)
    kk = k.to(dtype)
    y = torch.zeros(torch.broadcast_shapes(x.shape, kk.shape[:-1] + (L,)), dtype=dtype, device=u.device)
    center = 0 if causal else (K - 1) // 2
    for i in range(K):
        s = i - center  # lag
        if s >= 0:
            y[..., s:] += kk[..., i:i + 1] * x[..., :L - s]  # y[t] += k[s]·u[t − s], t ≥ s
        else:
            y[..., :L + s] += kk[..., i:i + 1] * x[..., -s:]  # negative lag: reads the future
    if D is not None:
        y = y + x * D.to(dtype)[..., None]
    return y.to(u.dtype)
