r"""Monarch linear layers: a learned Butterfly-like structured matrix as a drop-in for nn.Linear (PAPER.md claim 10).

A Monarch matrix (Dao et al., 2022) is a product of two block-diagonal matrices with a fixed stride ("transpose")
permutation between them and after them,

    M = P_out · L · P · R,          y = M x + bias,

with b = `nblocks` blocks per factor. For in_features = b·p, out_features = b·s, middle width m = min(in, out) = b·q:

    R      block-diagonal, b blocks of shape (q, p)       parameter `R`: (b, q, p)   input block k = x[k·p : (k+1)·p]
    P      stride permutation of the m middle features: L's block l reads the middle features j ≡ l (mod b)
    L      block-diagonal, b blocks of shape (s, q)       parameter `L`: (b, s, q)
    P_out  stride permutation of the outputs: L's block l writes the outputs o ≡ l (mod b)

So M[o, i] = Σ_j L[o mod b, o // b, j // b] · R[i // p, j mod q, i mod p] over the middle features j in R's block
i // p with j ≡ o (mod b). For the square case n = b² this is the Monarch paper's P L Pᵀ R with (√n × √n) blocks.
The middle width min(in, out) follows the rectangular Monarch layers of the HazyResearch `fly` code: for d → 4d,
R is (b, d/b, d/b) and L is (b, 4d/b, d/b); for 4d → d, R is (b, d/b, 4d/b) and L is (b, d/b, d/b).

Cost: q·(in + out) multiply-adds and parameters (+ out for the bias), i.e. min(in, out)·(in + out)/b instead of
in·out; with b = √n (square n) that is 2·n^{3/2}, the O(n√n) of the paper. Structure: the sub-matrix of M linking R's
input block k to L's output block l has rank ≤ #{j in block k : j ≡ l mod b} (= q/b when b divides q; rank 1 for the
classic b = √n square case). Every output depends on every input iff q ≥ b, i.e. min(in, out) ≥ b². With b = 1 both
permutations are the identity and M = L·R with inner width min(in, out): any dense matrix.

Init (matching nn.Linear's output variance): R ~ U(±√(3/p)) (Var 1/p, so the middle features keep Var(x)) and
L ~ U(±1/√q) (Var 1/(3q)); then Var(y_o) = q·Var(L)·p·Var(R)·E[x²] = E[x²]/3, exactly nn.Linear's default
U(±1/√in) gives (in·1/(3·in)). The bias is U(±1/√in) as in nn.Linear.

`.dense()` builds M from explicit permutation and block-diagonal matrices (`dense_factors()`), independently of the
einsum forward pass, so it is the reference the tests check the forward and its gradients against.
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn


def _divisors(n: int) -> list[int]:
    return [d for d in range(1, n + 1) if n % d == 0]


def _check_shape(in_features, out_features, nblocks, who="MonarchLinear"):
    for name, value in (("in_features", in_features), ("out_features", out_features), ("nblocks", nblocks)):
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ValueError(f"{who}: {name} must be a positive int, got {value!r}")
    if in_features % nblocks or out_features % nblocks:
        valid = _divisors(math.gcd(in_features, out_features))
        raise ValueError(f"{who}: in_features={in_features} and out_features={out_features} must both be divisible by "
                         f"nblocks={nblocks}; valid nblocks for these sizes: {valid}")


def monarch_params(in_features: int, out_features: int, nblocks: int = 4, bias: bool = True) -> int:
    """Parameter count of MonarchLinear: min(in, out)·(in + out)/nblocks (+ out_features for the bias)."""
    _check_shape(in_features, out_features, nblocks, "monarch_params")
    return min(in_features, out_features) * (in_features + out_features) // nblocks + (out_features if bias else 0)


def stride_permutation(n: int, nblocks: int) -> torch.Tensor:
    """idx with z_perm = z[idx]: the features j ≡ 0 (mod nblocks) first, then j ≡ 1, …; the 'transpose' of (n/b, b)."""
    if n % nblocks:
        raise ValueError(f"stride_permutation: n={n} must be divisible by nblocks={nblocks}")
    return torch.arange(n).reshape(n // nblocks, nblocks).t().reshape(n)  # (n,)


class MonarchLinear(nn.Module):
    """y = P_out·L·P·R·x + bias with two block-diagonal factors of `nblocks` blocks (shapes in the module docstring)."""

    def __init__(self, in_features: int, out_features: int, nblocks: int = 4, bias: bool = True):
        super().__init__()
        _check_shape(in_features, out_features, nblocks)
        self.in_features, self.out_features, self.nblocks = in_features, out_features, nblocks
        b = nblocks
        self.p, self.s = in_features // b, out_features // b  # input / output block sizes
        self.q = min(in_features, out_features) // b  # middle block size
        self.R = nn.Parameter(torch.empty(b, self.q, self.p))  # (b, q, p): first factor, applied to x
        self.L = nn.Parameter(torch.empty(b, self.s, self.q))  # (b, s, q): second factor
        self.bias = nn.Parameter(torch.empty(out_features)) if bias else None
        self.reset_parameters()

    def reset_parameters(self):
        """Init so that Var(y) = E[x²]/3 per output, as nn.Linear's default (see the module docstring)."""
        with torch.no_grad():
            self.R.uniform_(-math.sqrt(3.0 / self.p), math.sqrt(3.0 / self.p))
            self.L.uniform_(-1.0 / math.sqrt(self.q), 1.0 / math.sqrt(self.q))
            if self.bias is not None:
                self.bias.uniform_(-1.0 / math.sqrt(self.in_features), 1.0 / math.sqrt(self.in_features))

    @property
    def n_params(self) -> int:
        """Number of parameters (equals sum(p.numel() for p in self.parameters()))."""
        return monarch_params(self.in_features, self.out_features, self.nblocks, self.bias is not None)

    def extra_repr(self):
        return (f"in_features={self.in_features}, out_features={self.out_features}, nblocks={self.nblocks}, "
                f"R={tuple(self.R.shape)}, L={tuple(self.L.shape)}, bias={self.bias is not None}")

    def _check_input(self, x):
        if not isinstance(x, torch.Tensor) or not x.is_floating_point():
            raise ValueError(f"MonarchLinear: x must be a floating-point tensor (..., {self.in_features}), "
                             f"got {type(x).__name__} {getattr(x, 'dtype', '')}")
        if x.ndim < 1 or x.shape[-1] != self.in_features:
            raise ValueError(f"MonarchLinear: x must have shape (..., {self.in_features}), got {tuple(x.shape)}")
        if x.device != self.R.device:
            raise ValueError(f"MonarchLinear: x is on {x.device} but the weights are on {self.R.device}; "
                             f"move one with .to(device)")
        if x.dtype != self.R.dtype and not torch.is_autocast_enabled(x.device.type):
            raise ValueError(f"MonarchLinear: x is {x.dtype} but the weights are {self.R.dtype}; cast one with "
                             f".to(dtype) or run under torch.autocast")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """x (..., in_features) → y (..., out_features), two batched matmuls and two reshapes."""
        self._check_input(x)
        b, p, q = self.nblocks, self.p, self.q
        lead = x.shape[:-1]
        x = x.reshape(-1, b, p)  # (N, b, p): R's input blocks are contiguous
        z = torch.einsum("nkp,kqp->nkq", x, self.R)  # (N, b, q) = R x, middle features j = k·q + j'
        z = z.reshape(-1, q, b).transpose(1, 2)  # (N, b, q): P, L's block l reads the middle j = r·b + l
        y = torch.einsum("nlr,lsr->nls", z, self.L)  # (N, b, s) = L P R x
        y = y.transpose(1, 2).reshape(*lead, self.out_features)  # (..., out): P_out, output o = s'·b + l
        return y if self.bias is None else y + self.bias

    def dense_factors(self) -> dict[str, torch.Tensor]:
        """The four factors of M = P_out·L·P·R as dense matrices (for tests and pictures); keys P_out, L, P, R."""
        m, n_out = self.nblocks * self.q, self.out_features
        eye_m = torch.eye(m, dtype=self.R.dtype, device=self.R.device)
        eye_out = torch.eye(n_out, dtype=self.R.dtype, device=self.R.device)
        return {
            "P_out": eye_out[:, stride_permutation(n_out, self.nblocks)],  # (out, out): column l·s + s' → row s'·b + l
            "L": torch.block_diag(*self.L),  # (out, m)
            "P": eye_m[stride_permutation(m, self.nblocks)],  # (m, m): row l·q + r reads middle r·b + l
            "R": torch.block_diag(*self.R),  # (m, in)
        }

    def dense(self) -> torch.Tensor:
        """The equivalent dense weight M (out_features, in_features): forward(x) = x @ M.T + bias."""
        f = self.dense_factors()
        return f["P_out"] @ f["L"] @ f["P"] @ f["R"]  # (out, in)


class MonarchMLP(nn.Module):
    """MonarchLinear(d → e·d) → GELU → MonarchLinear(e·d → d) → dropout: a drop-in for the GPT-style MLP."""

    def __init__(self, d_model: int, expansion: int = 4, nblocks: int = 4, dropout: float = 0.0):
        super().__init__()
        if isinstance(expansion, bool) or not isinstance(expansion, int) or expansion < 1:
            raise ValueError(f"MonarchMLP: expansion must be a positive int, got {expansion!r}")
        if isinstance(d_model, int) and isinstance(nblocks, int) and nblocks >= 1 and d_model % nblocks:
            raise ValueError(f"MonarchMLP: d_model={d_model} must be divisible by nblocks={nblocks}; valid nblocks: "
                             f"{_divisors(d_model)}")
        if not 0.0 <= dropout < 1.0:
            raise ValueError(f"MonarchMLP: dropout must be in [0, 1), got {dropout!r}")
        self.fc1 = MonarchLinear(d_model, expansion * d_model, nblocks)
        self.fc2 = MonarchLinear(expansion * d_model, d_model, nblocks)
        self.dropout = nn.Dropout(dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """x (..., d_model) → (..., d_model)."""
        return self.dropout(self.fc2(F.gelu(self.fc1(x))))  # (..., D)


def parameter_savings(d_model: int = 768, n_layers: int = 12, expansion: int = 4, nblocks: int = 4,
                      vocab_size: int = 50257, n_positions: int = 1024, mixer_params: int | None = None) -> dict:
    """Parameter counts of a GPT-2-style LM with dense MLPs vs Monarch MLPs (defaults: GPT-2 small, 124M).

    Per layer: two LayerNorms (4·d), the mixer (`mixer_params`; None = GPT-2 attention, 4·d² + 4·d) and the MLP;
    plus token embedding (tied with the head), `n_positions` learned positions and the final LayerNorm.
    """
    for name, value in (("d_model", d_model), ("n_layers", n_layers), ("expansion", expansion),
                        ("vocab_size", vocab_size)):
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ValueError(f"parameter_savings: {name} must be a positive int, got {value!r}")
    d, h = d_model, expansion * d_model
    mlp_gpt = (d * h + h) + (h * d + d)
    mlp_monarch = monarch_params(d, h, nblocks) + monarch_params(h, d, nblocks)
    mixer = 4 * d * d + 4 * d if mixer_params is None else int(mixer_params)
    shared = vocab_size * d + n_positions * d + 2 * d + n_layers * (mixer + 4 * d)  # everything but the MLPs
    model_gpt, model_monarch = shared + n_layers * mlp_gpt, shared + n_layers * mlp_monarch
    return {
        "mlp_gpt": mlp_gpt, "mlp_monarch": mlp_monarch,  # one layer's MLP
        "mlp_ratio": mlp_monarch / mlp_gpt,
        "model_gpt": model_gpt, "model_monarch": model_monarch,
        "model_saved_fraction": 1.0 - model_monarch / model_gpt,
        "non_embedding_gpt": model_gpt - vocab_size * d - n_positions * d,
        "non_embedding_monarch": model_monarch - vocab_size * d - n_positions * d,
    }
