"""Sequence mixers, all (B, L, D) → (B, L, D): long conv, S4D, H3, H3-Conv and causal self-attention.

H3 (Dao, Fu et al., "Hungry Hungry Hippos", 2023) mixes a sequence with two SSMs and two multiplicative gates:

    q, k, v = W_q u, W_k u, W_v u
    k̃ = shift_ssm(k) + k·D_shift        # short causal FIR: kernel k_s[i] = C·S^i·B, zero for i ≥ d_state
    y = q ⊙ (diag_ssm(k̃ ⊙ v) + (k̃ ⊙ v)·D)   # long causal kernel (S4D), per head
    out = W_o y

With heads (head_dim d > 1) the product k̃ ⊙ v is an outer product per head, (d × d) per position, the diagonal SSM
runs on each of its entries with the head's kernel, and q contracts it back to d values (a linear-attention-like
state). H3-Conv (Fu, Epstein et al., 2023) is the same block with both SSM kernels replaced by explicit long-conv
kernels (lconv.layers.LongConvKernel, regularised by Squash). Every convolution goes through lconv.conv.fft_conv.
"""

import torch
import torch.nn.functional as F
from torch import nn

from lconv.conv import fft_conv
from lconv.layers import LongConv, LongConvKernel, S4DKernel, register_param


def _check_input(x, d_model, l_max, who):
    """Raise a ValueError unless x is a floating (B, L, d_model) tensor with 1 ≤ L ≤ l_max."""
    if not isinstance(x, torch.Tensor) or x.ndim != 3 or x.shape[-1] != d_model:
        shape = tuple(x.shape) if isinstance(x, torch.Tensor) else type(x).__name__
        raise ValueError(f"{who}: input must be (B, L, D={d_model}) batch-first, got {shape}")
    if not x.is_floating_point():
        raise ValueError(f"{who}: input must be a floating tensor, got {x.dtype}; embed tokens first")
    if not 1 <= x.shape[1] <= l_max:
        raise ValueError(f"{who}: sequence length L={x.shape[1]} is outside 1..{l_max}; "
                         f"build the mixer with l_max ≥ {x.shape[1]} or crop the input")


class ShiftKernel(nn.Module):
    """Shift-SSM kernel k_s[h, i] = C[h]·S^i·B[h] (S the shift matrix): a learned causal FIR of d_state taps.

    The state x_t = S x_{t−1} + B u_t keeps the last d_state inputs, so C·S^i·B = Σ_j C[j+i]·B[j] for i < d_state
    and 0 beyond. B starts at e_0 (then k_s = C) and is tagged with the SSM learning rate; C is an ordinary weight.
    """

    def __init__(self, H, d_state=64, lr=None):
        super().__init__()
        if not isinstance(d_state, int) or d_state < 1:
            raise ValueError(f"ShiftKernel: d_state must be a positive int, got {d_state!r}")
        self.H, self.d_state = H, d_state
        B = torch.zeros(H, d_state)  # (H, N)
        B[:, 0] = 1.0
        register_param(self, "B", B, lr=lr)
        self.C = nn.Parameter(torch.randn(H, d_state))  # (H, N)

    def forward(self, L):
        """Kernel (H, min(L, d_state)): taps beyond d_state are zero and are left out."""
        N = self.d_state
        C_pad = F.pad(self.C, (0, N))  # (H, 2N)
        windows = C_pad.unfold(-1, N, 1)[:, :N]  # (H, N, N)  windows[h, i, j] = C[h, i + j]
        k = torch.einsum("hij,hj->hi", windows, self.B)  # (H, N)  k[i] = Σ_j C[i+j]·B[j]
        return k[:, :L]  # (H, min(L, N))

    def recurrence(self, u):
        """Run the shift SSM step by step: u (B, H, L) → y (B, H, L) (the reference for forward)."""
        x = u.new_zeros(u.shape[0], self.H, self.d_state)  # (B, H, N)
        ys = []
        for t in range(u.shape[-1]):
            x = F.pad(x, (1, -1)) + self.B * u[:, :, t, None]  # (B, H, N)  x_t = S x_{t−1} + B u_t
            ys.append((x * self.C).sum(-1))  # (B, H)  y_t = C x_t
        return torch.stack(ys, dim=-1)  # (B, H, L)

    def extra_repr(self):
        return f"H={self.H}, d_state={self.d_state}"


class H3(nn.Module):
    """H3 mixer (conv="ssm": shift SSM + S4D) or H3-Conv (conv="long": two long-conv kernels): (B, L, D) → (B, L, D).

    `kw` go to the long kernel (S4DKernel for "ssm", LongConvKernel for "long", e.g. lr, lam, init); with
    conv="long" they go to both kernels. `dropout` is accepted and ignored, as in the official block.
    """

    def __init__(self, d_model, l_max, d_state=64, head_dim=1, conv="ssm", dropout=0.0, **kw):
        super().__init__()
        if not isinstance(head_dim, int) or head_dim < 1 or d_model % head_dim:
            raise ValueError(f"H3: head_dim must be a positive divisor of d_model={d_model}, got {head_dim!r}")
        if conv not in ("ssm", "long"):
            raise ValueError(f"H3: conv must be 'ssm' (H3) or 'long' (H3-Conv), got {conv!r}")
        self.d_model, self.l_max, self.head_dim, self.conv = d_model, l_max, head_dim, conv
        self.n_heads = d_model // head_dim
        self.q_proj = nn.Linear(d_model, d_model)
        self.k_proj = nn.Linear(d_model, d_model)
        self.v_proj = nn.Linear(d_model, d_model)
        if conv == "ssm":
            self.shift_kernel = ShiftKernel(d_model, d_state, lr=kw.get("lr"))
            self.kernel = S4DKernel(self.n_heads, l_max, d_state=d_state, **kw)
        else:
            self.shift_kernel = LongConvKernel(d_model, l_max, **kw)
            self.kernel = LongConvKernel(self.n_heads, l_max, **kw)
        self.D_shift = nn.Parameter(torch.randn(d_model))  # (D,) skip around the shift/first conv
        self.D = nn.Parameter(torch.randn(self.n_heads))  # (heads,) skip around the long conv
        self.output_linear = nn.Linear(d_model, d_model)

    def _shift_k(self, L):
        """First (short) kernel as (D, Lk)."""
        return self.shift_kernel(L) if self.conv == "ssm" else self.shift_kernel(L)[0]

    def forward(self, u):
        """u (B, L, D) → y (B, L, D)."""
        _check_input(u, self.d_model, self.l_max, "H3")
        B, L, _ = u.shape
        nh, d = self.n_heads, self.head_dim
        q, k, v = (proj(u).transpose(1, 2) for proj in (self.q_proj, self.k_proj, self.v_proj))  # (B, D, L) each
        k = fft_conv(k, self._shift_k(L), causal=True, D=self.D_shift)  # (B, D, L)
        kv = k.view(B, nh, d, 1, L) * v.view(B, nh, 1, d, L)  # (B, nh, d1, d2, L)
        kv = kv.permute(0, 2, 3, 1, 4).reshape(B * d * d, nh, L)  # (B·d1·d2, nh, L)
        y = fft_conv(kv, self.kernel(L)[0], causal=True, D=self.D)  # (B·d1·d2, nh, L)
        y = y.view(B, d, d, nh, L)  # (B, d1, d2, nh, L)
        q = q.view(B, nh, d, L).transpose(1, 2)  # (B, d1, nh, L)
        y = (y * q[:, :, None]).sum(1)  # (B, d2, nh, L)  contract d1 with q
        y = y.transpose(1, 2).reshape(B, self.d_model, L).transpose(1, 2)  # (B, L, D)
        return self.output_linear(y)

    def extra_repr(self):
        return f"d_model={self.d_model}, l_max={self.l_max}, head_dim={self.head_dim}, conv={self.conv!r}"


class CausalSelfAttention(nn.Module):
    """Multi-head causal self-attention via F.scaled_dot_product_attention: (B, L, D) → (B, L, D)."""

    def __init__(self, d_model, n_heads, l_max, dropout=0.0):
        super().__init__()
        if not isinstance(n_heads, int) or n_heads < 1 or d_model % n_heads:
            raise ValueError(f"CausalSelfAttention: n_heads must be a positive divisor of d_model={d_model}, "
                             f"got {n_heads!r}")
        self.d_model, self.n_heads, self.l_max, self.p_dropout = d_model, n_heads, l_max, float(dropout)
        self.qkv = nn.Linear(d_model, 3 * d_model)
        self.output_linear = nn.Linear(d_model, d_model)

    def forward(self, x):
        """x (B, L, D) → y (B, L, D); position t attends to positions ≤ t."""
        _check_input(x, self.d_model, self.l_max, "CausalSelfAttention")
        B, L, D = x.shape
        q, k, v = self.qkv(x).view(B, L, 3, self.n_heads, D // self.n_heads).permute(2, 0, 3, 1, 4)  # 3×(B, nh, L, hd)
        y = F.scaled_dot_product_attention(q, k, v, dropout_p=self.p_dropout if self.training else 0.0,
                                           is_causal=True)  # (B, nh, L, hd)
        y = y.transpose(1, 2).reshape(B, L, D)  # (B, L, D)
        return self.output_linear(y)

    def extra_repr(self):
        return f"d_model={self.d_model}, n_heads={self.n_heads}, l_max={self.l_max}"


def _longconv(d_model, l_max, dropout=0.0, **kw):
    return LongConv(d_model, l_max, kernel="long", dropout=dropout, **kw)


def _s4d(d_model, l_max, dropout=0.0, **kw):
    return LongConv(d_model, l_max, kernel="s4d", dropout=dropout, **kw)


def _h3(d_model, l_max, dropout=0.0, **kw):
    return H3(d_model, l_max, conv="ssm", dropout=dropout, **kw)


def _h3conv(d_model, l_max, dropout=0.0, **kw):
    return H3(d_model, l_max, conv="long", dropout=dropout, **kw)


def _attention(d_model, l_max, dropout=0.0, n_heads=None, **kw):
    if kw:
        raise ValueError(f"make_mixer('attention'): unexpected options {sorted(kw)}; it takes n_heads and dropout")
    n_heads = max(1, d_model // 64) if n_heads is None else n_heads  # default head size 64 (GPT-2)
    return CausalSelfAttention(d_model, n_heads, l_max, dropout)


MIXERS = {"longconv": _longconv, "s4d": _s4d, "h3": _h3, "h3conv": _h3conv, "attention": _attention}


def make_mixer(name, d_model, l_max, **kw):
    """Build the mixer `name` (one of MIXERS) for width d_model and sequences up to l_max; kw go to its class."""
    if name not in MIXERS:
        raise ValueError(f"unknown mixer {name!r}; valid names: {', '.join(MIXERS)}")
    if not isinstance(d_model, int) or d_model < 1:
        raise ValueError(f"make_mixer: d_model must be a positive int, got {d_model!r}")
    if not isinstance(l_max, int) or l_max < 1:
        raise ValueError(f"make_mixer: l_max must be a positive int (the longest sequence), got {l_max!r}")
    return MIXERS[name](d_model, l_max, **kw)
