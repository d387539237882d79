r"""Learned Butterfly: the FFT's Butterfly blocks become parameters (the paper's third contribution, claim 9).

FlashButterfly computes the FFT of a length-N sequence as two rounds of small dense matrix multiplies (N = N1·N2,
`lconv.butterfly.default_sizes`), with the index maps n = N2·n1 + n2 (time) and f = f1 + N1·f2 (frequency):

    T(u)[f1 + N1·f2] = Σ_{n2} dft2[n2, f2] · twiddle[f1, n2] · Σ_{n1} dft1[f1, n1] · u[N2·n1 + n2]

i.e. view u as an (N1, N2) matrix A, then T(u) = ((dft1 @ A) ⊙ twiddle) @ dft2 (permuted order). With
dft1 = F_{N1} and dft2 = F_{N2} (the DFT matrices) T is the DFT; here they are free complex matrices, initialised to
the DFT (optionally plus a little noise) and trained with everything else. The matmuls are the same whatever numbers
the blocks hold, so learning them costs no FLOPs and no runtime: only 2·(N1² + N2²) real parameters per transform.

The learned convolution (what `learned_butterfly_conv` computes, and what the Triton kernel's `dft1`/`dft2` arguments
must compute): u's forward transform is learned, k's spectrum is the exact FFT, the inverse is the exact inverse FFT,
and the output is the real part (u and k are real; a learned T no longer maps real sequences to Hermitian spectra):

    y = Re( F^{-1}( T(u_pad) ⊙ F(k_pad) ) )[..., :L],      u_pad, k_pad: zero-padded to N.

At dft1 = F_{N1}, dft2 = F_{N2} this is exactly lconv.conv.fft_conv (causal for L, Lk ≤ N/2).

Orientation: dft1 multiplies from the left (dft1[f1, n1], output index first), dft2 from the right (dft2[n2, f2],
input index first), exactly where the fused kernel uses its F1 and F2 tables. Per-channel blocks are (H, N1, N1) and
(H, N2, N2): channel h uses dft1[h], dft2[h].

Real inputs: with learned blocks, G = F^{-1} diag(F k) T maps a real row to a complex one, so every row is
transformed on its own (a real first stage) and y is the real part; the kernels' learned path does the same
(kernels.io_model.conv_flops(method="learned") counts it against the fixed per-row kernel).

Where things live: the reference maths (`learned_transform`, `learned_transform_matrix`, `learned_butterfly_conv`)
in lconv.butterfly, with every other Butterfly reference; the Triton path behind lconv.backend; the fixed-against-
learned experiment of notebook 04 in lconv.experiments.learned_butterfly. This module holds the modules: the blocks
(`LearnedButterfly`), the layer (`LearnedButterflyLongConv`) and the model converter (`use_learned_butterfly`).

Differences from the official code (HazyResearch/safari `block_fft.py`, PAPER.md): there, Cooley–Tukey recurses with
radix ≤ 16 and one DFT matrix per radix size (2, 4, 8, 16) is learned and reused at every level, and both u and k go
through (separate) learned transforms. Here we learn the two blocks (N1, N1), (N2, N2) of the two-factor split,
because those are the blocks FlashButterfly multiplies by (tensor-core tiles of 16–64): the learned model then runs
in the same fused kernel as the fixed one. k's spectrum stays exact, so the kernel's regularisation (Squash, Smooth)
keeps its meaning.
"""
from __future__ import annotations

import copy
import math

import torch
from torch import nn

from lconv import backend as backend_door
from lconv.butterfly import (check_learned_blocks, check_learned_conv_inputs, default_sizes, dft_matrix,
                             learned_butterfly_conv, learned_transform, learned_transform_matrix)
from lconv.conv import fft_size
from lconv.layers import LongConv, register_param

INITS = ("dft", "dft+noise")


# ---------------------------------------------------------------- the module holding the blocks

class LearnedButterfly(nn.Module):
    """The learned blocks dft1 (N1, N1) and dft2 (N2, N2) (or one pair per channel), stored as real (re, im) pairs."""

    def __init__(self, N, channels=None, init="dft", noise=0.01, lr=1e-3, dtype=None):
        super().__init__()
        self.N1, self.N2 = default_sizes(N)  # ValueError for N not a power of two ≥ 4
        if channels is not None and (not isinstance(channels, int) or channels < 1):
            raise ValueError(f"LearnedButterfly: channels must be None (shared blocks) or a positive int (one "
                             f"pair of blocks per channel, H), got {channels!r}")
        if init not in INITS:
            raise ValueError(f"LearnedButterfly: init must be one of {INITS}, got {init!r}")
        if not (isinstance(noise, (int, float)) and math.isfinite(noise) and noise >= 0):
            raise ValueError(f"LearnedButterfly: noise must be a finite float ≥ 0 (e.g. 0.01), got {noise!r}")
        self.N, self.channels, self.init, self.noise = N, channels, init, float(noise)
        lead = () if channels is None else (channels,)
        dtype = dtype or torch.get_default_dtype()
        register_param(self, "dft1", torch.zeros(*lead, self.N1, self.N1, 2, dtype=dtype), lr=lr, weight_decay=0.0)
        register_param(self, "dft2", torch.zeros(*lead, self.N2, self.N2, 2, dtype=dtype), lr=lr, weight_decay=0.0)
        self.reset_parameters()

    @torch.no_grad()
    def reset_parameters(self, init=None):
        """Write the DFT blocks (computed in fp64, then cast to the parameters' dtype), plus noise for 'dft+noise'."""
        init = init or self.init
        if init not in INITS:
            raise ValueError(f"LearnedButterfly: init must be one of {INITS}, got {init!r}")
        for p, n in ((self.dft1, self.N1), (self.dft2, self.N2)):
            p.copy_(torch.view_as_real(dft_matrix(n, device=p.device)).to(p.dtype).expand_as(p))  # (.., n, n, 2)
            if init == "dft+noise":
                p.add_(self.noise * torch.randn_like(p))

    def blocks(self):
        """(dft1, dft2) as complex tensors, differentiable views of the stored pairs."""
        return torch.view_as_complex(self.dft1), torch.view_as_complex(self.dft2)

    def forward(self, x, permuted=False):
        """T(x): (..., H, N) → complex (..., H, N), natural frequency order (see learned_transform)."""
        return learned_transform(x, self.N, *self.blocks(), permuted=permuted)

    def conv(self, u, k, backend="torch"):
        """y = learned_butterfly_conv(u, k): u (B, H, L), k (C, H, Lk) → (B, C, H, L) (k (H, Lk) → (B, H, L))."""
        backend_door.check_backend(backend, "LearnedButterfly.conv")
        dft1, dft2 = self.blocks()
        if backend_door.use_triton(u, self.N, backend, learned=True):  # the fused kernel: N ≤ 4096, on chip
            check_learned_conv_inputs(u, k, self.N)
            check_learned_blocks(dft1, dft2, self.N, u.shape[1])
            y = backend_door.triton_conv(u, k if k.dim() == 3 else k[None], self.N, dft1=dft1, dft2=dft2)
            return y if k.dim() == 3 else y[:, 0]  # (B, C, H, L) or (B, H, L)
        return learned_butterfly_conv(u, k, self.N, dft1, dft2)

    @torch.no_grad()
    def matrix(self):
        """The learned transform as a dense matrix (N, N) or (H, N, N), natural order (for pictures)."""
        return learned_transform_matrix(self.N, *self.blocks())

    @torch.no_grad()
    def distance_from_dft(self, n_probes=8):
        """Relative distance from the DFT: ‖block − DFT‖_F/‖DFT‖_F per block (RMS over channels), and for the whole
        transform ‖T(x) − FFT(x)‖/‖FFT(x)‖ over random probes x (seeded; no N×N matrix is formed)."""
        out = {}
        for name, d, n in (("dft1", self.blocks()[0], self.N1), ("dft2", self.blocks()[1], self.N2)):
            ref = dft_matrix(n, dtype=torch.complex128, device=d.device)
            out[name] = ((d.to(torch.complex128) - ref).norm() / (ref.norm() * math.sqrt(d.numel() / n ** 2))).item()
        g = torch.Generator().manual_seed(0)
        H = self.channels or 1
        x = torch.randn(n_probes, H, self.N, generator=g, dtype=torch.float64).to(self.dft1.device)  # (P, H, N)
        dft1, dft2 = (b.to(torch.complex128) for b in self.blocks())
        Tx = learned_transform(x, self.N, dft1, dft2)  # (P, H, N)
        ref = torch.fft.fft(x)  # (P, H, N)
        out["transform"] = ((Tx - ref).norm() / ref.norm()).item()
        return out

    @torch.no_grad()
    def tone_response(self, channel=0):
        """R = T·F^{-1} (N, N), natural order: column f0 is what T makes of the pure tone exp(2πi·f0·n/N)/N.

        R is the identity for the DFT; off-diagonal entries show how much a learned T leaks one frequency into others.
        """
        N = self.N
        dft1, dft2 = (b.to(torch.complex128) for b in self.blocks())
        if self.channels is not None:
            dft1, dft2 = dft1[channel], dft2[channel]
        tones = dft_matrix(N, inverse=True, device=dft1.device)  # (N, N): row f0 is the tone of frequency f0
        return learned_transform(tones, N, dft1, dft2).T  # (N, N): R[f, f0]

    def extra_repr(self):
        return (f"N={self.N} = {self.N1}·{self.N2}, channels={self.channels}, init={self.init!r}, "
                f"noise={self.noise}")


def butterfly_params(N, channels=None):
    """Real parameters the learned blocks add per transform: 2·(N1² + N2²), times H for per-channel blocks."""
    N1, N2 = default_sizes(N)
    return 2 * (N1 * N1 + N2 * N2) * (channels or 1)


# ---------------------------------------------------------------- the long-conv layer that uses it

class LearnedButterflyLongConv(LongConv):
    """LongConv whose FFT of u uses learned Butterfly blocks (k's FFT, the inverse stay exact): (B, L, H) → (B, L, H).

    Same parameters as lconv.layers.LongConv plus the blocks (`.butterfly`); per_channel=True learns one pair of
    blocks per model channel H. N (FFT size) defaults to the smallest power of two ≥ 2·l_max. Causal only.
    """

    def __init__(self, d_model, l_max, channels=1, bidirectional=False, kernel="long", dropout=0.0, backend="torch",
                 N=None, butterfly_init="dft", butterfly_noise=0.01, butterfly_lr=1e-3, per_channel=False,
                 **kernel_kwargs):
        if bidirectional:
            raise ValueError("LearnedButterflyLongConv is causal only: use bidirectional=False, or lconv.layers."
                             "LongConv for a bidirectional layer")
        backend_door.check_backend(backend, "LearnedButterflyLongConv")
        super().__init__(d_model, l_max, channels=channels, bidirectional=False, kernel=kernel, dropout=dropout,
                         backend="torch", **kernel_kwargs)  # the parent's Triton path does not know the blocks
        self.backend = backend
        N = fft_size(l_max, backend=backend, minimum=16) if N is None else N  # 16: the smallest Butterfly split
        if not isinstance(N, int) or N < 2 * l_max:
            raise ValueError(f"LearnedButterflyLongConv: N={N!r} must be an int ≥ 2·l_max={2 * l_max} (causal, no "
                             "wrap-around); leave N=None to pick the smallest power of two")
        if backend == "triton":
            backend_door.kernels_module("LearnedButterflyLongConv(backend='triton')")  # fail here, not in training
        self.butterfly = LearnedButterfly(N, channels=d_model if per_channel else None, init=butterfly_init,
                                          noise=butterfly_noise, lr=butterfly_lr)

    @classmethod
    def from_long_conv(cls, conv, **butterfly_kwargs):
        """A LearnedButterflyLongConv holding copies of `conv`'s kernel, D and output layer (same function at DFT init).

        butterfly_kwargs: N, butterfly_init, butterfly_noise, butterfly_lr, per_channel, backend (default: conv's).
        Only a noisy init draws from the global RNG (each converted layer its own noise).
        """
        if not isinstance(conv, LongConv) or isinstance(conv, cls):
            raise ValueError(f"from_long_conv: expected an lconv.layers.LongConv, got {type(conv).__name__}")
        if conv.bidirectional:
            raise ValueError("from_long_conv: the learned Butterfly layer is causal only; this LongConv is "
                             "bidirectional")
        kind = "s4d" if type(conv.kernel).__name__ == "S4DKernel" else "long"
        butterfly_kwargs.setdefault("backend", conv.backend)
        with torch.random.fork_rng(devices=[]):  # the placeholder kernel's random init must not move the RNG
            new = cls(conv.H, conv.l_max, channels=conv.channels, kernel=kind, dropout=conv.dropout.p,
                      **dict(butterfly_kwargs, butterfly_init="dft"))
            new.kernel = copy.deepcopy(conv.kernel)  # the kernel module as built, with its settings and LR tags
            missing, unexpected = new.load_state_dict(conv.state_dict(), strict=False)
        if unexpected or any(not m.startswith("butterfly.") for m in missing):
            raise ValueError(f"from_long_conv: state mismatch (missing {missing}, unexpected {unexpected})")
        new.butterfly.init = butterfly_kwargs.get("butterfly_init", "dft")
        if new.butterfly.init != "dft":
            new.butterfly.reset_parameters()  # noise from the global RNG: every layer draws its own
        param = next(conv.parameters())
        return new.to(device=param.device)

    def _convolve(self, u, k):
        """u (B, H, L), k (C, H, L) → learned-Butterfly conv + u·D (B, C, H, L)."""
        y = self.butterfly.conv(u, k, backend=self.backend)  # (B, C, H, L)
        return y + u[:, None] * self.D[None, :, :, None]  # (B, C, H, L) skip

    def extra_repr(self):
        return super().extra_repr() + f", N={self.butterfly.N}"


def use_learned_butterfly(model, **butterfly_kwargs):
    """Replace every (causal) LongConv inside `model` by a LearnedButterflyLongConv with the same weights; return it."""
    n = 0
    for parent in list(model.modules()):
        for name, child in list(parent.named_children()):
            if isinstance(child, LongConv) and not isinstance(child, LearnedButterflyLongConv):
                setattr(parent, name, LearnedButterflyLongConv.from_long_conv(child, **butterfly_kwargs))
                n += 1
    if n == 0:
        raise ValueError("use_learned_butterfly: the model has no lconv.layers.LongConv (build it with "
                         "mixer='longconv')")
    return model


def butterfly_modules(model):
    """The model's LearnedButterfly modules, in layer order."""
    return [m for m in model.modules() if isinstance(m, LearnedButterfly)]
