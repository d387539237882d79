"""Long-convolution layers: kernel parameters (random / exp-decay init, S4D), LongConv, the per-parameter LR tag.

The layer follows the official code (HazyResearch/safari, `long_conv.py`): a kernel K of shape (C, H, L) is
regularised on every forward pass, k = dropout(squash(smooth(K))), convolved with the input by a zero-padded FFT,
a skip u·D is added, the C channels are flattened and mixed by GELU → dropout → Linear(C·H → 2H) → GLU.
The convolution is lconv.conv.fft_conv, or the Triton kernels through lconv.backend (backend="triton" | "auto");
`register_param` tags a parameter with its own learning rate, which lconv.train's optimizer_groups reads.
"""
import math
import warnings

import torch
import torch.nn.functional as F
from torch import nn

from lconv import backend as backend_door
from lconv.conv import bidirectional_kernel, fft_conv, fft_size
from lconv.regularize import kernel_dropout, smooth, smooth_freq, squash


def register_param(module, name, tensor, lr=None, weight_decay=0.0):
    """Register `tensor` as parameter `name` of `module` with its own optimiser settings.

    The settings live on the module (`module._param_optim[name]`), not on the Parameter, so they survive
    copy.deepcopy, .to() and DDP wrapping; `optimizer_groups` reads them and `optim_tag` returns them.
    """
    param = nn.Parameter(tensor)
    optim = {"weight_decay": float(weight_decay)}
    if lr is not None:
        optim["lr"] = float(lr)
    module.register_parameter(name, param)
    if "_param_optim" not in module.__dict__:
        module._param_optim = {}
    module._param_optim[name] = optim
    return param


def optim_tag(module, name):
    """The optimiser settings register_param gave parameter `name` of `module` (None if it has none)."""
    return module.__dict__.get("_param_optim", {}).get(name)


def _check_length(L, l_max, who):
    """Raise unless 1 ≤ L ≤ l_max."""
    if not isinstance(L, int) or L < 1 or L > l_max:
        raise ValueError(f"{who}: sequence length L={L} is outside 1..{l_max}; "
                         f"build the layer with l_max ≥ {L} or crop the input to at most {l_max} steps")


class LongConvKernel(nn.Module):
    """Explicit long-convolution kernel K (C, H, L), returned as dropout(squash(smooth(K)))."""

    def __init__(self, H, L, channels=1, init="random", lam=0.002, smooth_window=None, kernel_dropout=0.0,
                 lr=1e-3, smooth_freq_window=None):
        super().__init__()
        for name, value in (("H", H), ("L", L), ("channels", channels)):
            if not isinstance(value, int) or value < 1:
                raise ValueError(f"LongConvKernel: {name} must be a positive int, got {value!r}")
        if not (isinstance(lam, (int, float)) and math.isfinite(lam) and lam >= 0):
            raise ValueError(f"LongConvKernel: lam must be a finite float ≥ 0 (0 disables Squash), got {lam!r}")
        if not 0.0 <= kernel_dropout < 1.0:
            raise ValueError(f"LongConvKernel: kernel_dropout must be in [0, 1), got {kernel_dropout!r}")
        for name, w in (("smooth_window", smooth_window), ("smooth_freq_window", smooth_freq_window)):
            if w is not None and (not isinstance(w, int) or w < 1 or w % 2 == 0):
                raise ValueError(f"LongConvKernel: {name} must be None or an odd int ≥ 1 (e.g. 7), got {w!r}")
        self.H, self.L, self.channels = H, L, channels
        self.init, self.lam, self.smooth_window = init, float(lam), smooth_window
        self.smooth_freq_window, self.p_dropout = smooth_freq_window, float(kernel_dropout)

        if init == "random":
            K = torch.randn(channels, H, L) * 0.002  # (C, H, L)
        elif init == "decay":
            i = torch.arange(H, dtype=torch.float32)[:, None]  # (H, 1) channel index
            j = torch.arange(L, dtype=torch.float32)[None, :]  # (1, L) time index
            decay = torch.exp(-(j / L) * (H / 2) ** (i / H))  # (H, L)
            K = torch.randn(channels, H, L) * 0.02 * decay  # (C, H, L)
        else:
            raise ValueError(f"LongConvKernel: init must be 'random' or 'decay', got {init!r}")
        register_param(self, "raw", K, lr=lr, weight_decay=0.0)

        alive = (K.abs() > self.lam).float().mean().item()
        if alive < 0.05:
            warnings.warn(f"LongConvKernel: lam={lam} is large for the init scale: only {alive:.1%} of the kernel "
                          "entries exceed it, and Squash gives the rest zero gradient forever; use lam ≈ 0.001–0.003",
                          stacklevel=2)

    def trainable_fraction(self):
        """Fraction of stored entries with |K| > lam, i.e. those Squash lets through (and gives a gradient)."""
        return (self.raw.detach().abs() > self.lam).float().mean().item()

    def forward(self, L=None):
        """Regularised kernel k (C, H, L), cropped to the first L taps if L is given."""
        L = self.L if L is None else L
        _check_length(L, self.L, "LongConvKernel")
        k = self.raw
        if self.smooth_window is not None and self.smooth_window > 1:
            k = smooth(k, self.smooth_window)
        if self.smooth_freq_window is not None and self.smooth_freq_window > 1:
            k = smooth_freq(k, self.smooth_freq_window)
        if self.lam > 0:
            k = squash(k, self.lam)
        k = kernel_dropout(k, self.p_dropout, self.training)
        return k[..., :L]  # (C, H, L)

    def extra_repr(self):
        return (f"H={self.H}, L={self.L}, channels={self.channels}, init={self.init!r}, lam={self.lam}, "
                f"smooth_window={self.smooth_window}, kernel_dropout={self.p_dropout}")


def zoh_b_bar(dt, A):
    """ZOH input matrix B̄ = (exp(ΔA) − 1)/A (B = 1), written as Δ·φ1(ΔA) with φ1(z) = expm1(z)/z and φ1(0) = 1.

    The direct form loses the mode when ΔA is tiny (exp(ΔA) − 1 rounds to 0 in fp32 once |ΔA| < 6e-8: B̄ = 0 instead
    of ≈ Δ) and is 0/0 = NaN when A underflows to 0 (log_A_real ≤ −104 in fp32 with A_imag = 0). expm1 keeps every
    digit, and a Taylor series (error < |z|⁵/720) takes over below |z| = 1e-3, where the limit Δ is exact.
    dt (H,) real, A (H, N) complex → B̄ (H, N) complex.
    """
    z = A * dt[:, None]  # (H, N) ΔA
    small = z.abs() < 1e-3
    z_safe = torch.where(small, torch.ones_like(z), z)  # no 0/0, not even in the unused branch (its gradient)
    series = 1 + z * (1 / 2 + z * (1 / 6 + z * (1 / 24 + z / 120)))  # φ1(z) near 0
    return dt[:, None] * torch.where(small, series, torch.expm1(z_safe) / z_safe)  # (H, N)


def s4d_kernel(log_dt, log_A_real, A_imag, C, L):
    """S4D convolution kernel K[c, h, l] = 2·Re(Σ_n C[c,h,n]·B̄[h,n]·Ā[h,n]^l), ZOH with B = 1.

    log_dt (H,), log_A_real (H, N), A_imag (H, N), C (channels, H, N, 2) as real/imag pairs → K (channels, H, L).
    B̄ = Δ·expm1(ΔA)/(ΔA) (`zoh_b_bar`): exact as Re A → 0, where (exp(ΔA) − 1)/A loses the mode or gives NaN.
    """
    dt = torch.exp(log_dt)  # (H,)
    A = torch.complex(-torch.exp(log_A_real), A_imag)  # (H, N)
    dtA = A * dt[:, None]  # (H, N)
    B_bar = zoh_b_bar(dt, A)  # (H, N)  ZOH: B̄ = (exp(ΔA) − 1)/A · B
    l = torch.arange(L, device=log_dt.device, dtype=log_dt.dtype)  # (L,)
    vandermonde = torch.exp(dtA[..., None] * l)  # (H, N, L)  Ā^l
    Cc = torch.view_as_complex(C) * B_bar  # (channels, H, N)
    return 2 * torch.einsum("chn,hnl->chl", Cc, vandermonde).real  # (channels, H, L)


class S4DKernel(nn.Module):
    """Diagonal state-space kernel (S4D) with S4D-Lin or S4D-Inv init, ZOH discretisation, complex C."""

    def __init__(self, H, L, channels=1, d_state=64, init="lin", dt_min=1e-3, dt_max=1e-1, lr=1e-3):
        super().__init__()
        if not isinstance(d_state, int) or d_state < 2 or d_state % 2:
            raise ValueError(f"S4DKernel: d_state must be an even int ≥ 2 (N/2 complex conjugate pairs), "
                             f"got {d_state!r}")
        if not 0 < dt_min <= dt_max:
            raise ValueError(f"S4DKernel: need 0 < dt_min ≤ dt_max, got dt_min={dt_min}, dt_max={dt_max}")
        for name, value in (("H", H), ("L", L), ("channels", channels)):
            if not isinstance(value, int) or value < 1:
                raise ValueError(f"S4DKernel: {name} must be a positive int, got {value!r}")
        self.H, self.L, self.channels, self.d_state, self.init = H, L, channels, d_state, init
        N = d_state // 2
        n = torch.arange(N, dtype=torch.float32)
        if init == "lin":
            A_imag = math.pi * n  # S4D-Lin: A_n = −1/2 + iπn
        elif init == "inv":
            A_imag = d_state / math.pi * (d_state / (2 * n + 1) - 1)  # S4D-Inv: A_n = −1/2 + i·N/π·(N/(2n+1) − 1)
        else:
            raise ValueError(f"S4DKernel: init must be 'lin' or 'inv', got {init!r}")
        log_dt = torch.rand(H) * (math.log(dt_max) - math.log(dt_min)) + math.log(dt_min)  # (H,)
        C = torch.randn(channels, H, N, 2) * math.sqrt(0.5)  # (channels, H, N, 2) complex C as real pairs
        register_param(self, "log_dt", log_dt, lr=lr)
        register_param(self, "log_A_real", torch.full((H, N), math.log(0.5)), lr=lr)
        register_param(self, "A_imag", A_imag.repeat(H, 1), lr=lr)  # (H, N)
        self.C = nn.Parameter(C)

    def forward(self, L=None):
        """Kernel k (C, H, L) from the current SSM parameters."""
        L = self.L if L is None else L
        _check_length(L, self.L, "S4DKernel")
        return s4d_kernel(self.log_dt, self.log_A_real, self.A_imag, self.C, L)  # (C, H, L)

    def recurrence(self, u):
        """Run the same discretised SSM step by step: u (B, H, L) → y (B, C, H, L), no skip term."""
        if u.ndim != 3 or u.shape[1] != self.H:
            raise ValueError(f"S4DKernel.recurrence: u must be (B, H={self.H}, L), got {tuple(u.shape)}")
        dt = torch.exp(self.log_dt)  # (H,)
        A = torch.complex(-torch.exp(self.log_A_real), self.A_imag)  # (H, N)
        A_bar = torch.exp(A * dt[:, None])  # (H, N)
        B_bar = zoh_b_bar(dt, A)  # (H, N) = (Ā − 1)/A, exact as A → 0
        C = torch.view_as_complex(self.C)  # (channels, H, N)
        x = torch.zeros(u.shape[0], *A.shape, dtype=A.dtype, device=u.device)  # (B, H, N)
        ys = []
        for t in range(u.shape[-1]):
            x = A_bar * x + B_bar * u[:, :, t, None]  # (B, H, N)  x_t = Ā x_{t−1} + B̄ u_t
            ys.append(2 * torch.einsum("chn,bhn->bch", C, x).real)  # (B, C, H)  y_t = 2·Re(C x_t)
        return torch.stack(ys, dim=-1).to(u.dtype)  # (B, C, H, L)

    def extra_repr(self):
        return f"H={self.H}, L={self.L}, channels={self.channels}, d_state={self.d_state}, init={self.init!r}"


class LongConv(nn.Module):
    """Long-convolution sequence mixer: u (B, L, H) → y (B, L, H)."""

    def __init__(self, d_model, l_max, channels=1, bidirectional=False, kernel="long", dropout=0.0,
                 backend="torch", **kernel_kwargs):
        super().__init__()
        backend_door.check_backend(backend, "LongConv")
        if not isinstance(channels, int) or channels < 1:
            raise ValueError(f"LongConv: channels must be a positive int, got {channels!r}")
        self.H, self.l_max, self.channels = d_model, l_max, channels
        self.bidirectional, self.backend = bidirectional, backend
        n_kernels = 2 * channels if bidirectional else channels  # second half: negative lags
        if kernel == "long":
            self.kernel = LongConvKernel(d_model, l_max, channels=n_kernels, **kernel_kwargs)
        elif kernel == "s4d":
            self.kernel = S4DKernel(d_model, l_max, channels=n_kernels, **kernel_kwargs)
        else:
            raise ValueError(f"LongConv: kernel must be 'long' or 's4d', got {kernel!r}")
        self.D = nn.Parameter(torch.randn(channels, d_model))  # (C, H) skip
        self.dropout = nn.Dropout(dropout)
        self.output_linear = nn.Linear(channels * d_model, 2 * d_model)
        if backend == "triton":
            backend_door.kernels_module("LongConv(backend='triton')")  # fail at construction, not in training

    def _convolve(self, u, k):
        """u (B, H, L), k (C or 2C, H, L) → u * k + u·D (B, C, H, L); subclasses swap the transform here."""
        if self.backend == "triton" and self.bidirectional:
            raise ValueError("LongConv: backend='triton' supports causal convolutions only; "
                             "use backend='torch' or 'auto' with bidirectional=True")
        N = fft_size(u.shape[-1], backend=self.backend)  # causal: L ≤ N/2, zero padding implicit
        if not self.bidirectional and backend_door.use_triton(u, N, self.backend):
            return backend_door.triton_conv(u, k, N) + u[:, None] * self.D[None, :, :, None]  # (B, C, H, L)
        if self.bidirectional:
            k = bidirectional_kernel(k[: self.channels], k[self.channels:])  # (C, H, 2L − 1)
        if self.channels == 1:  # fft_conv takes one channel as (H, K)
            return fft_conv(u, k[0], causal=not self.bidirectional, D=self.D[0])[:, None]  # (B, 1, H, L)
        return fft_conv(u, k, causal=not self.bidirectional, D=self.D)  # (B, C, H, L)

    def forward(self, u):
        """u (B, L, H) → y (B, L, H)."""
        if u.ndim != 3 or u.shape[-1] != self.H:
            raise ValueError(f"LongConv: u must be (B, L, H={self.H}) batch-first, got {tuple(u.shape)}")
        B, L, H = u.shape
        _check_length(L, self.l_max, "LongConv")
        u = u.transpose(1, 2)  # (B, H, L)
        y = self._convolve(u, self.kernel(L))  # (B, C, H, L)
        y = y.reshape(B, self.channels * H, L).transpose(1, 2)  # (B, L, C·H)
        y = self.dropout(F.gelu(y))
        return F.glu(self.output_linear(y), dim=-1)  # (B, L, H)

    def extra_repr(self):
        return (f"d_model={self.H}, l_max={self.l_max}, channels={self.channels}, "
                f"bidirectional={self.bidirectional}, backend={self.backend!r}")
