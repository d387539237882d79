r"""Recurrent inference from trained long convolutions: distil each kernel into a small diagonal state space.

A trained long convolution y = k ∗ u holds one free kernel of length L per channel; generating a token costs a
length-L sum (or an FFT over the prefix), and the parameter count grows with L. A diagonal state space model (SSM)
of order N per channel,

    x_t = λ ⊙ x_{t−1} + u_t,        y_t = Re(c · x_t) + d·u_t        (x_t ∈ ℂ^M, one recurrence per channel)

has the kernel k̂[t] = d·[t = 0] + Re Σ_m c_m λ_m^t and costs O(N) per token at any length. The paper names fast
generation as what long convolutions give up (its conclusion); Massaroli, Poli, Fu et al., "Laughing Hyena
Distillery: Extracting Compact Recurrences From Convolutions" (NeurIPS 2023, arXiv 2310.18780) answer it for
Hyena by fitting such SSMs to the trained filters. This module does it for the workbook's long convolutions:

1. **Balanced truncation of the kernel as an FIR system** (Kung 1978, "A new identification and model reduction
   algorithm via singular value decomposition"; Pernebo & Silverman 1982, IEEE TAC 27(2); textbook: Antoulas 2005,
   *Approximation of Large-Scale Dynamical Systems*, ch. 7). A length-L kernel is the impulse response of a stable
   system of order L − 1 (a shift register). Its Markov parameters g[j] = k[j + 1] fill the (L−1) × (L−1) Hankel
   matrix H[i, j] = g[i + j] (zero where i + j ≥ L − 1; `scipy.linalg.hankel`), which is symmetric, so one
   `scipy.linalg.eigh` gives its singular values σ₁ ≥ σ₂ ≥ … (the **Hankel singular values**: how much each state
   matters) and singular vectors U. Truncated at N states, A = U_Nᵀ Z U_N (Z shifts rows up, a zero row entering at
   the bottom — Kung's shift invariance with Maciejowski's 1995 zero row, which for this Hankel matrix is exactly
   the balanced truncation) and the poles are λ = eig(A), inside the closed unit disk because balanced truncation
   keeps a stable system stable. (Realising only the window, the half-size Hankel matrix of the plain eigensystem
   realization algorithm, returns poles outside the disk for kernels that do not decay within L; pulling them in
   afterwards cost far more accuracy than this.) When only a few states are wanted from a long kernel, the top
   singular pairs come from a randomized range finder instead (Halko, Martinsson & Tropp 2011), see HankelFit.
2. **Residues and the direct term by linear least squares** on the window, given the poles (the second step of
   Prony's method, e.g. Hildebrand 1956, *Introduction to Numerical Analysis* §9.4; `numpy.linalg.svd` of the
   design matrix with unit-norm columns): k̂ is linear in (c, d). A pole on the circle is pulled to radius
   `max_radius` < 1 first. Where nearly equal poles would need residues summing to more than `max_gain` times the
   kernel's peak (exact in float64, lost in a float32 recurrence), a ridge term holds them down (Tikhonov).
3. **Refinement by gradient descent** (Adam) on the summed relative squared kernel error over poles (log-decay and
   angle, so |λ| < 1 always), residues and d, as the Laughing Hyena distillation refines its modal fit; each channel
   keeps its best iterate, and the fit before refinement wherever that is better or refinement broke the gain
   limit, so refinement never makes a channel worse.

The fitted SSM is real: each pole is real or one of a conjugate pair, stored once with its residue doubled
(2·Re(c λ^t) = c λ^t + c̄ λ̄^t). **Order** N counts real states: 1 per real pole, 2 per pair (the dimension of the
equivalent real state space); `S4DKernel(d_state=64)` is order 64. **Error** is the relative L2 kernel error over
the window, ‖k̂ − k‖₂ / ‖k‖₂ on t = 0 … L−1, per channel (the absolute ‖k̂‖₂ for an all-zero channel). With a
tolerance, each channel gets the smallest order whose fit by steps 1–2 meets it: the search starts where the tail
energy of the Hankel singular values, √(Σ_{i>N} σ_i²/Σ σ_i²), falls below the tolerance, then gallops and bisects
to the boundary (the error falls with the order almost always; where it does not, the search finds an order that
meets the tolerance with one state fewer failing).

    from lconv.distill import distill, distill_lm
    fit = distill(k, tol=0.05)                  # k (H, L) or (C, H, L): fit.order, fit.error, fit.ssm
    rec, table = distill_lm(model, tol=0.05)    # a CausalLM whose H3 layers run as recurrences; per-kernel table
    lconv.models.generate(rec, prompt, 200, cache=True)   # prefill by convolution, then one state update per token

`DiagonalSSM` runs a fitted bank as a convolution (its kernel through lconv.conv.fft_conv) and as a recurrence
(`step`, `recurrence`) with the same outputs; `RecurrentH3` is H3 / H3-Conv with both kernels replaced by them.
"""
from __future__ import annotations

import copy
import dataclasses
import math
import warnings

import numpy as np
import torch
from torch import nn

from lconv.conv import fft_conv

_REAL_IMAG = 1e-12  # |Im λ| ≤ this·max(1, |λ|): a real pole (numpy returns real eigenvalues with Im exactly 0)
_RANK_RTOL = 1e-12  # Hankel singular values below this·σ₁ are numerical zeros: no state is fitted to them


# ---------------------------------------------------------------- input checks

def _kernel_bank(k, who):
    """Validate a kernel tensor (…, L) and return (float64 numpy array (H, L), leading shape)."""
    if isinstance(k, np.ndarray):
        k = torch.from_numpy(k)
    if not isinstance(k, torch.Tensor):
        raise ValueError(f"{who}: the kernel must be a torch.Tensor or numpy array (…, L), got {type(k).__name__}")
    if k.is_complex() or not k.is_floating_point():
        raise ValueError(f"{who}: the kernel must be a real floating tensor, got {k.dtype}")
    if k.ndim < 1 or k.shape[-1] < 3:
        raise ValueError(f"{who}: the kernel must be (…, L) with L ≥ 3 taps, got shape {tuple(k.shape)}")
    if k.numel() == 0:
        raise ValueError(f"{who}: the kernel is empty (shape {tuple(k.shape)})")
    kk = k.detach().to("cpu", torch.float64)
    if not torch.isfinite(kk).all():
        raise ValueError(f"{who}: the kernel contains NaN or Inf; a diverged layer cannot be distilled "
                         "(check its training, or crop the bad channels)")
    return kk.reshape(-1, k.shape[-1]).numpy(), tuple(k.shape[:-1])


def order_limit(L):
    """The most states a length-L kernel can use: L − 1 (the order of the kernel itself as an FIR system)."""
    return int(L) - 1


def _check_order(order, L, who):
    if isinstance(order, bool) or not isinstance(order, (int, np.integer)) or order < 1:
        raise ValueError(f"{who}: order must be an int ≥ 1 (real states per channel), got {order!r}")
    if order > order_limit(L):
        raise ValueError(f"{who}: order {order} is more states than a length-{L} kernel has taps to fit (at most "
                         f"L − 1 = {order_limit(L)}: the kernel itself is an FIR system of that order); pass a "
                         f"lower order or a longer kernel")


def _check_tol(tol, who):
    if isinstance(tol, bool) or not isinstance(tol, (int, float)) or not math.isfinite(tol) or not 0 < tol < 1:
        raise ValueError(f"{who}: tol must be a relative L2 error in (0, 1), e.g. 0.05, got {tol!r}")


def relative_error(k_hat, k):
    """Relative L2 error per channel, ‖k̂ − k‖₂ / ‖k‖₂ over the last axis (‖k̂‖₂ where k is all zero): (…,)."""
    k_hat, k = np.asarray(k_hat, dtype=np.float64), np.asarray(k, dtype=np.float64)
    num = np.linalg.norm(k_hat - k, axis=-1)
    den = np.linalg.norm(k, axis=-1)
    return np.where(den > 0, num / np.where(den > 0, den, 1.0), num)


# ---------------------------------------------------------------- modal form: poles, residues, direct term

def _powers(poles, L):
    """λ^t for t = 0 … L−1: poles (…, M) complex → (…, M, L) complex (λ = 0 gives [1, 0, 0, …])."""
    t = np.arange(L)
    with np.errstate(divide="ignore", invalid="ignore", over="ignore", under="ignore"):
        out = poles[..., None] ** t
    out[..., 0] = 1.0
    return np.nan_to_num(out, nan=0.0, posinf=0.0, neginf=0.0)


def _split_modes(poles):
    """Eigenvalues of a real matrix → (real poles (nr,), pair representatives with Im > 0 (np,))."""
    poles = np.asarray(poles, dtype=np.complex128)
    thr = _REAL_IMAG * np.maximum(1.0, np.abs(poles))
    real = poles[np.abs(poles.imag) <= thr].real
    pairs = poles[poles.imag > thr]
    return real, pairs


def _stabilise(real, pairs, max_radius):
    """Pull poles with |λ| > max_radius onto that radius (same sign / angle)."""
    real = np.clip(real, -max_radius, max_radius)
    r = np.abs(pairs)
    pairs = np.where(r > max_radius, pairs / np.where(r > 0, r, 1.0) * max_radius, pairs)
    return real, pairs


_RIDGE = (0.0,) + tuple(10.0 ** e for e in range(-14, 1))  # ridge weights μ/σ₁² tried until the gain is met


def _fit_residues(k, real, pairs, max_gain=None):
    """Least-squares residues and direct term for fixed poles: k (L,) → (k̂ (L,), modes, residues, is_pair, d).

    Real design matrix: a column δ_t for d, λ^t per real pole, Re λ^t and Im λ^t per pair (2·Re(c λ^t) =
    2 Re c · Re λ^t − 2 Im c · Im λ^t), so the number of pole columns is the real order; columns scaled to unit
    norm and solved through their SVD. max_gain: if the residues sum to more than max_gain × max|k̂| (nearly equal
    poles cancelling, which a float32 recurrence cannot reproduce), the smallest ridge μ = 10^-14 … 1 (× σ₁²) that
    brings the gain down is used instead (Tikhonov regularisation; the error then rises accordingly).
    """
    L = k.shape[-1]
    cols = [np.eye(1, L, 0)[0]]  # δ_t
    if real.size:
        cols += list(_powers(real.astype(np.complex128), L).real)
    if pairs.size:
        P = _powers(pairs, L)  # (np, L)
        cols += list(P.real) + list(P.imag)
    X = np.stack(cols, axis=1)  # (L, 1 + nr + 2·np)
    norms = np.linalg.norm(X, axis=0)  # unit columns: a slow pole's column must not drown the others
    norms = np.where(norms > 0, norms, 1.0)
    U, sv, Vt = np.linalg.svd(X / norms, full_matrices=False)
    b = U.T @ k
    nr, npair = real.size, pairs.size
    for mu in _RIDGE:
        with np.errstate(divide="ignore", invalid="ignore"):
            f = np.where(sv > sv[0] * 1e-15, sv / (sv ** 2 + mu * sv[0] ** 2), 0.0)  # filter factors
        coef = (Vt.T @ (f * b)) / norms
        k_hat = X @ coef
        a_, b_ = coef[1 + nr:1 + nr + npair], coef[1 + nr + npair:]
        res = np.concatenate([coef[1:1 + nr].astype(np.complex128), a_ - 1j * b_])  # pairs: folded residue 2c
        gain = np.abs(res).sum() / max(np.abs(k_hat).max(), np.finfo(float).tiny)
        if max_gain is None or gain <= max_gain:
            break
    modes = np.concatenate([real.astype(np.complex128), pairs])
    is_pair = np.concatenate([np.zeros(nr, bool), np.ones(npair, bool)])
    return k_hat, modes, res, is_pair, float(coef[0])


# ---------------------------------------------------------------- step 1–2: Hankel SVD, ERA, least squares

@dataclasses.dataclass
class _ChannelFit:
    order: int
    error: float
    modes: np.ndarray  # (M,) complex: real poles and one pole per conjugate pair
    residues: np.ndarray  # (M,) complex, pairs' residues doubled
    is_pair: np.ndarray  # (M,) bool
    direct: float


_OVERSAMPLE = 16  # extra directions of the randomized range finder


def _hankel_top(g, K, seed):
    """Singular values (descending) and vectors of the symmetric Hankel matrix H[i, j] = g[i + j] (0 past the end),
    (n,) → ((K',), (n, K')): all n of them by scipy.linalg.eigh when K + 16 ≥ n/2, else the top K' = K + 16 by a
    randomized range finder with three power iterations and FFT products H·X (cross-correlation of g with X)."""
    import scipy.linalg

    n = g.size
    if K + _OVERSAMPLE >= n / 2:
        mu, Q = scipy.linalg.eigh(scipy.linalg.hankel(g, np.zeros_like(g)), driver="evd")  # (n,), (n, n)
    else:
        m = 2 * n
        G = np.fft.rfft(g, m)  # (n + 1,)

        def hankel_times(X):  # H X = cross-correlation of g with each column: (n, p) → (n, p)
            return np.fft.irfft(G[:, None] * np.conj(np.fft.rfft(X, m, axis=0)), m, axis=0)[:n]

        X = np.random.default_rng(seed).standard_normal((n, K + _OVERSAMPLE))  # (n, K')
        for _ in range(3):
            X = np.linalg.qr(hankel_times(X))[0]  # power iteration: range of H^(2q+1)
        Q = np.linalg.qr(hankel_times(X))[0]  # (n, K')
        mu, W = np.linalg.eigh(Q.T @ hankel_times(Q))  # (K',), (K', K')  Rayleigh–Ritz
        Q = Q @ W  # (n, K')
    idx = np.argsort(-np.abs(mu), kind="stable")  # singular values |μ|, descending
    return np.abs(mu[idx]), Q[:, idx]


class HankelFit:
    """Hankel singular values and vectors of a bank of kernels, computed once; `fit(order=…)` or `fit(tol=…)`
    realises them (balanced truncation of each kernel as an FIR system, then least-squares residues).

    k: (L,), (H, L) or (C, H, L) real, finite, L ≥ 3 (a ValueError otherwise). max_order (default L − 1): the most
    states any fit may use. Per channel, the symmetric (L−1) × (L−1) Hankel matrix of k[1:] is decomposed exactly
    by `scipy.linalg.eigh` when max_order + 16 ≥ (L − 1)/2 (about 0.1 s at L = 784 on an idle core), otherwise only
    its top max_order + 16 singular pairs are found by a randomized range finder (Halko, Martinsson & Tropp 2011,
    SIAM Review 53(2), Alg. 4.4: three power iterations, Gaussian test matrix from `seed`, Hankel products by FFT;
    about 4× faster there and exact when the Hankel rank is below that). `singular_values` (…, K) float64,
    descending, K = L − 1 or max_order + 16. max_gain (default 1e3, None: no limit): a fit whose residues sum to
    more than max_gain × its kernel's peak is regularised (ridge) until they do not — at high orders balanced
    truncation returns clusters of nearly equal poles whose residues cancel, exact in float64 on the window but lost
    in a float32 recurrence; at 1e3 a float32 recurrence keeps about 4 of its 7 digits. threads: BLAS threads while
    fitting (threadpoolctl, when installed).
    """

    def __init__(self, k, max_order=None, max_radius=0.9999, max_gain=1e3, threads=1, seed=0):
        self.k, self.shape = _kernel_bank(k, "HankelFit")  # (H, L)
        H, L = self.k.shape
        self.L = L
        self.max_order = order_limit(L) if max_order is None else max_order
        _check_order(self.max_order, L, "HankelFit (max_order)")
        if not 0 < max_radius < 1:
            raise ValueError(f"HankelFit: max_radius must be in (0, 1), got {max_radius!r}")
        if max_gain is not None and not max_gain >= 1:
            raise ValueError(f"HankelFit: max_gain must be None or ≥ 1, got {max_gain!r}")
        self.max_radius, self.max_gain, self.threads = float(max_radius), max_gain, threads
        self._U, s = [], []
        with _blas_threads(threads):
            for h in range(H):
                sv, U = _hankel_top(self.k[h, 1:], self.max_order, seed + h)  # (K,), (L − 1, K)
                self._U.append(U[:, :self.max_order])  # (L − 1, max_order)
                s.append(sv)
        self._s = np.stack(s)  # (H, K)
        self._cache = {}

    @property
    def singular_values(self):
        """Hankel singular values (…, K), descending, in the kernels' units (K: see the class docstring)."""
        return self._s.reshape(*self.shape, -1)

    def rank(self, h):
        """Numerical rank of channel h's Hankel matrix (singular values above 1e-12·σ₁), capped at max_order."""
        s = self._s[h]
        return int(min(self.max_order, (s > _RANK_RTOL * s[0]).sum())) if s[0] > 0 else 0

    def tail_order(self, tol):
        """Per channel, the smallest N with √(Σ_{i>N} σ_i²)/√(Σ σ_i²) ≤ tol, capped at max_order: (H,) int."""
        s2 = self._s ** 2  # (H, K)
        m = np.arange(self.L - 1)
        total2 = ((m + 1) * self.k[:, 1:] ** 2).sum(-1, keepdims=True)  # (H, 1) ‖H‖_F² = Σ σ_i², all L − 1 of them
        tail = np.sqrt(np.clip(total2 - np.cumsum(s2, -1), 0, None))  # (H, K): tail energy after i + 1 states
        ok = tail <= tol * np.sqrt(np.where(total2 > 0, total2, 1.0))
        first = np.where(ok.any(-1), ok.argmax(-1) + 1, self.max_order)
        return np.clip(first, 1, self.max_order)

    def _fit_channel(self, h, N):
        key = (h, N)
        if key not in self._cache:
            N_eff = min(N, self.rank(h))
            if N_eff == 0:
                real, pairs = np.zeros(0), np.zeros(0, np.complex128)
            else:
                U = self._U[h][:, :N_eff]  # (L − 1, N)
                A = U.T @ np.vstack([U[1:], np.zeros((1, N_eff))])  # (N, N)  U_Nᵀ Z U_N: balanced truncation
                real, pairs = _stabilise(*_split_modes(np.linalg.eigvals(A)), self.max_radius)
            k_hat, modes, res, is_pair, d = _fit_residues(self.k[h], real, pairs, self.max_gain)
            err = float(relative_error(k_hat, self.k[h]))
            self._cache[key] = _ChannelFit(int(real.size + 2 * pairs.size), err, modes, res, is_pair, d)
        return self._cache[key]

    def _order_for_tol(self, h, tol):
        """Smallest order N ≤ max_order whose fit meets tol: from tail_order, gallop to a bracket, then bisect."""
        good = lambda N: self._fit_channel(h, N).error <= tol  # noqa: E731
        N = int(self.tail_order(tol)[h])
        if good(N):  # gallop down to a failing order (or 0), then bisect
            hi, step = N, 1
            while hi - step >= 1 and good(hi - step):
                hi, step = hi - step, 2 * step
            lo = max(0, hi - step)
        else:  # gallop up to a passing order (or the cap)
            lo, step = N, 1
            while lo + step <= self.max_order and not good(lo + step):
                lo, step = lo + step, 2 * step
            hi = min(lo + step, self.max_order)
            if not good(hi):
                return self.max_order  # unmet: the channel's error says by how much
        while hi - lo > 1:
            mid = (lo + hi) // 2
            lo, hi = (lo, mid) if good(mid) else (mid, hi)
        return hi

    def fit(self, order=None, tol=None):
        """Realise every channel at a fixed `order` or at the smallest order meeting the relative error `tol`.

        Exactly one of order (int, 1 ≤ order ≤ max_order) and tol (in (0, 1)). With tol, a channel no order up to
        max_order fits within tol gets max_order (its error says by how much it misses). A channel whose Hankel
        matrix has lower numerical rank than the order gets that rank. Returns a Distillation (error_hankel =
        error: nothing refined yet).
        """
        if (order is None) == (tol is None):
            raise ValueError("HankelFit.fit: pass exactly one of order (states per channel) and tol (relative error)")
        H = self.k.shape[0]
        with _blas_threads(self.threads):
            if order is not None:
                _check_order(order, self.L, "HankelFit.fit")
                if order > self.max_order:
                    raise ValueError(f"HankelFit.fit: order {order} exceeds this fit's max_order {self.max_order}; "
                                     f"build HankelFit(k, max_order={order})")
                fits = [self._fit_channel(h, order) for h in range(H)]
            else:
                _check_tol(tol, "HankelFit.fit")
                fits = [self._fit_channel(h, self._order_for_tol(h, tol)) for h in range(H)]
        out = Distillation.from_channels(fits, self.k, self.shape, method="hankel")
        out.max_gain = self.max_gain
        return out


_CONTROLLER = []  # one threadpoolctl.ThreadpoolController, built on first use (scanning the libraries costs ~10 ms)


class _blas_threads:
    """Limit BLAS threads (numpy/scipy) inside a `with` block via threadpoolctl when installed; else do nothing."""

    def __init__(self, n):
        self.n, self.ctx = n, None

    def __enter__(self):
        if self.n is not None:
            try:
                from threadpoolctl import ThreadpoolController
            except ImportError:
                return self
            import scipy.linalg  # noqa: F401  scipy's own BLAS must be loaded before the controller looks for it
            if not _CONTROLLER:
                _CONTROLLER.append(ThreadpoolController())
            self.ctx = _CONTROLLER[0].limit(limits=self.n)
        return self

    def __exit__(self, *exc):
        if self.ctx is not None:
            self.ctx.restore_original_limits()
        return False


# ---------------------------------------------------------------- the fitted bank

@dataclasses.dataclass
class Distillation:
    """A bank of diagonal SSMs fitted to kernels k (*shape, L), channels flattened to H = prod(shape).

    poles, residues: (H, M) complex128 (padding modes have residue 0); is_pair (H, M) bool; direct (H,) float64;
    order (H,) int64 (real states); error, error_hankel (H,) float64 (relative L2, after / before refinement).
    """

    poles: torch.Tensor
    residues: torch.Tensor
    is_pair: torch.Tensor
    direct: torch.Tensor
    order: torch.Tensor
    error: torch.Tensor
    error_hankel: torch.Tensor
    shape: tuple
    L: int
    method: str
    max_gain: float | None = None  # the residue gain the fit was held to (HankelFit's max_gain)

    @classmethod
    def from_channels(cls, fits, k, shape, method):
        H, L = k.shape
        M = max(1, max(f.modes.size for f in fits))
        poles = np.zeros((H, M), np.complex128)
        res = np.zeros((H, M), np.complex128)
        pair = np.zeros((H, M), bool)
        for h, f in enumerate(fits):
            n = f.modes.size
            poles[h, :n], res[h, :n], pair[h, :n] = f.modes, f.residues, f.is_pair
        err = torch.tensor([f.error for f in fits], dtype=torch.float64)
        return cls(torch.from_numpy(poles), torch.from_numpy(res), torch.from_numpy(pair),
                   torch.tensor([f.direct for f in fits], dtype=torch.float64),
                   torch.tensor([f.order for f in fits], dtype=torch.int64), err, err.clone(), tuple(shape), L, method)

    def kernel(self, L=None):
        """The SSMs' kernels k̂ (*shape, L) float64, L = the fitted length by default (any L ≥ 1 works)."""
        L = self.L if L is None else L
        k = ssm_kernel(self.poles, self.residues, self.direct, L)  # (H, L)
        return k.reshape(*self.shape, L)

    @property
    def gain(self):
        """Σ_m |c_m| / max_t |k[t]| per channel (H,): how much the recurrence amplifies rounding. Near 1 for a
        well-conditioned fit; large when nearly equal poles cancel (a short FIR realised at its full order)."""
        peak = self.kernel().reshape(-1, self.L).abs().amax(-1).clamp_min(torch.finfo(torch.float64).tiny)
        return self.residues.abs().sum(-1) / peak

    def ssm(self, dtype=torch.float32):
        """The bank as a DiagonalSSM module (H channels) with parameters in `dtype` (states in its complex type).

        Warns when a channel's gain exceeds 1e4 in float32: its recurrence then keeps fewer than 3 of float32's 7
        digits (use float64, or a lower order)."""
        if dtype == torch.float32 and float(self.gain.max()) > 1e4:
            warnings.warn(f"Distillation.ssm: a channel's residues are {float(self.gain.max()):.1e}× its kernel's "
                          "peak (nearly equal poles cancelling); its float32 recurrence will lose that much "
                          "precision against the convolution — use dtype=torch.float64 or a lower order",
                          stacklevel=2)
        return DiagonalSSM(self.poles, self.residues, self.direct, self.order, dtype=dtype)

    def summary(self):
        """{'channels', 'order_mean', 'order_median', 'order_max', 'states' (total), 'error_mean', 'error_max',
        'error_hankel_mean'}: one row's worth of numbers."""
        o, e = self.order.double(), self.error
        return {"channels": int(o.numel()), "order_mean": float(o.mean()), "order_median": float(o.median()),
                "order_max": int(self.order.max()), "states": int(self.order.sum()), "error_mean": float(e.mean()),
                "error_max": float(e.max()), "error_hankel_mean": float(self.error_hankel.mean())}


def _power_chunks(lam, L, chunk):
    """(t0, λ^t for t = t0 … t0 + T − 1) over t0 = 0, chunk, 2·chunk … < L: lam (…, M) → (…, M, T) blocks, by
    repeated doubling within a block and one product per block after (no exp/cos/sin; memory …·M·chunk)."""
    base = _powers_doubling(lam, min(L, chunk))  # (…, M, chunk)
    jump = base[..., -1] * lam  # λ^chunk
    scale = torch.ones_like(lam)
    for t0 in range(0, L, chunk):
        T = min(chunk, L - t0)
        yield t0, scale[..., None] * base[..., :T]
        scale = scale * jump


def ssm_kernel(poles, residues, direct, L, chunk=2048):
    """k̂[h, t] = direct[h]·[t = 0] + Re Σ_m residues[h, m]·poles[h, m]^t: (H, M), (H, M), (H,) → (H, L) real.

    In the poles' complex dtype, powers by repeated doubling, in blocks of `chunk` lags (memory H·M·chunk).
    """
    if not isinstance(L, int) or L < 1:
        raise ValueError(f"ssm_kernel: L must be an int ≥ 1, got {L!r}")
    parts = [torch.einsum("hm,hmt->ht", residues, V).real for _, V in _power_chunks(poles, L, chunk)]  # (H, T) each
    k = torch.cat(parts, dim=-1)  # (H, L)
    k[:, 0] = k[:, 0] + direct
    return k


# ---------------------------------------------------------------- step 3: refinement by gradient descent

def _powers_doubling(lam, L):
    """λ^t for t = 0 … L−1 by repeated doubling (log₂ L complex products, no exp/cos/sin): (…, M) → (…, M, L)."""
    P = torch.ones_like(lam)[..., None]  # (…, M, 1)
    step = lam[..., None]  # λ^(2^i)
    while P.shape[-1] < L:
        P = torch.cat([P, P * step], dim=-1)  # (…, M, 2·len)
        step = step * step
    return P[..., :L]


def refine(fit, k, steps=200, lr=1e-2, dtype=torch.float32):
    """Adam on the relative squared kernel error of every channel at once; no channel ends worse than it started.

    fit: a Distillation of k (…, L). Parameters per mode: log(−log|λ|) (so 0 < |λ| < 1), the angle (pairs only;
    real poles keep their sign), the residue; per channel the direct term; kernels are scaled to unit norm while
    fitting, in `dtype` (float32: twice as fast, and ample for errors above 1e-6). Learning rate `lr`, cosine-decayed
    to 0 over `steps`. Each channel keeps its best iterate, and at the end the fit before refinement wherever that
    is better in float64. Returns a new Distillation (method "…+adam"; error_hankel keeps the error before).
    """
    K, shape = _kernel_bank(k, "refine")
    if tuple(shape) != tuple(fit.shape) or K.shape[-1] != fit.L:
        raise ValueError(f"refine: the kernel {tuple(shape) + (K.shape[-1],)} is not the one fitted "
                         f"{tuple(fit.shape) + (fit.L,)}")
    if isinstance(steps, bool) or not isinstance(steps, int) or steps < 0:
        raise ValueError(f"refine: steps must be an int ≥ 0, got {steps!r}")
    if not (isinstance(lr, (int, float)) and math.isfinite(lr) and lr > 0):
        raise ValueError(f"refine: lr must be a positive number, got {lr!r}")
    if steps == 0:
        return dataclasses.replace(fit)
    Kt = torch.from_numpy(K)  # (H, L) float64
    scale = Kt.norm(dim=-1)  # (H,)
    scale = torch.where(scale > 0, scale, torch.ones_like(scale))
    target = (Kt / scale[:, None]).to(dtype)  # (H, L)
    active = (fit.residues != 0).to(dtype)  # (H, M): padding modes stay empty
    pair = fit.is_pair
    r = fit.poles.abs().clamp(1e-8, 1 - 1e-7)
    theta0 = fit.poles.angle().to(dtype)  # (H, M)
    c = fit.residues / scale[:, None]  # (H, M)
    params = [torch.log(-torch.log(r)).to(dtype), theta0.clone(), c.real.to(dtype), c.imag.to(dtype),
              (fit.direct / scale).to(dtype)]  # ell (H, M), theta (H, M), Re c, Im c (H, M), d (H,)
    for p in params:
        p.requires_grad_()
    t = torch.arange(fit.L, dtype=dtype)  # (L,)
    is_real = ~pair

    def kernel(ell, theta, cr, ci, d):
        th = torch.where(pair, theta, theta0)  # real poles keep angle 0 or π
        lam = torch.polar(torch.exp(-torch.exp(ell)), th)  # (H, M)
        c = torch.complex(cr * active, ci * active * pair)  # (H, M)
        k_hat = torch.einsum("hm,hml->hl", c, _powers_doubling(lam, fit.L)).real  # (H, L)
        return k_hat + d[:, None] * (t == 0)

    with torch.no_grad():
        best_err = ((kernel(*params) - target) ** 2).sum(-1)  # (H,)
    best = [p.detach().clone() for p in params]
    opt = torch.optim.Adam(params, lr=lr)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda i: 0.5 * (1 + math.cos(math.pi * i / steps)))
    for _ in range(steps):
        opt.zero_grad()
        err = ((kernel(*params) - target) ** 2).sum(-1)  # (H,)
        better = err.detach() < best_err
        if better.any():
            best_err = torch.where(better, err.detach(), best_err)
            for b, p in zip(best, params):
                b[better] = p.detach()[better]
        err.sum().backward()
        opt.step()
        sched.step()
    ell, theta, cr, ci, d = (b.double() for b in best)
    th = torch.where(pair, theta, theta0.double())
    th = torch.where(is_real, fit.poles.angle(), th)
    poles = torch.where(active.bool(), torch.polar(torch.exp(-torch.exp(ell)), th), fit.poles)
    residues = torch.complex(cr * active.double(), ci * active.double() * pair) * scale[:, None]
    direct = d * scale
    k_ref = ssm_kernel(poles, residues, direct, fit.L)  # (H, L) float64
    err = torch.from_numpy(relative_error(k_ref.numpy(), K))
    keep = err < fit.error  # (H,) refinement helped (in float64) …
    if fit.max_gain is not None:  # … without more cancellation than the fit was held to
        gain = residues.abs().sum(-1) / k_ref.abs().amax(-1).clamp_min(torch.finfo(torch.float64).tiny)
        keep &= (gain <= fit.max_gain) | (gain <= fit.gain)
    return dataclasses.replace(
        fit, poles=torch.where(keep[:, None], poles, fit.poles), residues=torch.where(keep[:, None], residues,
                                                                                      fit.residues),
        direct=torch.where(keep, direct, fit.direct), error=torch.where(keep, err, fit.error),
        error_hankel=fit.error_hankel.clone(), method=fit.method + "+adam")


def distill(k, order=None, tol=None, *, refine_steps=200, lr=1e-2, max_order=None, max_radius=0.9999,
            max_gain=1e3, hankel=None):
    """Fit a diagonal SSM to every channel of k (…, L): balanced truncation, least-squares residues, Adam refinement.

    k: (L,), (H, L) or (C, H, L) real tensor; order: real states per channel (1 ≤ order ≤ L − 1) or tol: the
    relative L2 error each channel's fit before refinement must meet (its order is then the smallest that does; see
    the module docstring); refine_steps: Adam steps after (0: none); max_gain: the most the residues may sum to,
    relative to the kernel's peak (None: no limit; see HankelFit). `hankel`: a HankelFit of the same k to reuse its
    eigendecompositions (its own max_order / max_radius / max_gain then apply). Raises ValueError for NaN/Inf
    kernels, order < 1, order > L − 1, tol outside (0, 1), or both/neither of order and tol. Returns a Distillation
    (order, error, error_hankel, gain per channel; .ssm() builds the module).
    """
    if hankel is None:
        hankel = HankelFit(k, max_order=max_order, max_radius=max_radius, max_gain=max_gain)
    fit = hankel.fit(order=order, tol=tol)
    return refine(fit, k, steps=refine_steps, lr=lr) if refine_steps else fit


# ---------------------------------------------------------------- running a fitted bank: convolution and recurrence

class DiagonalSSM(nn.Module):
    """A bank of H diagonal SSMs, x_t = λ ⊙ x_{t−1} + u_t, y_t = Re(c · x_t) + d·u_t (state (…, H, M) complex).

    Two ways to run it with the same outputs: `conv` (its kernel through lconv.conv.fft_conv, O(L log L)) and
    `recurrence` / `step` (one state update per token, O(M) per channel). Buffers (not trained): poles, residues
    (H, M) complex, direct (H,), order (H,) int64.
    """

    def __init__(self, poles, residues, direct, order, dtype=torch.float32):
        super().__init__()
        if dtype not in (torch.float32, torch.float64):
            raise ValueError(f"DiagonalSSM: dtype must be torch.float32 or torch.float64, got {dtype}")
        cdtype = torch.complex64 if dtype == torch.float32 else torch.complex128
        self.register_buffer("poles", poles.detach().to(torch.complex128).clone())  # kept in fp64 for the kernel
        self.register_buffer("residues", residues.detach().to(torch.complex128).clone())
        self.register_buffer("direct", direct.detach().to(torch.float64).clone())
        self.register_buffer("order", order.detach().to(torch.int64).clone())
        self.register_buffer("poles_c", self.poles.to(cdtype))  # for the recurrence, in the states' type
        self.register_buffer("residues_c", self.residues.to(cdtype))
        self.register_buffer("direct_r", self.direct.to(dtype))
        self.H, self.M = poles.shape

    def kernel(self, L):
        """k̂ (H, L) in the module's real dtype (computed in complex128)."""
        return ssm_kernel(self.poles, self.residues, self.direct, L).to(self.direct_r.dtype)

    def conv(self, u, D=None):
        """u (B, H, L) → y (B, H, L) = k̂ ∗ u (+ u·D): the convolutional form, through lconv.conv.fft_conv."""
        return fft_conv(u, self.kernel(u.shape[-1]).to(u.dtype), D=D)

    def final_state(self, u, chunk=2048):
        """The state after reading u (…, H, L) from zero: x_L = Σ_j λ^j u_{L−1−j}, (…, H, M) complex (powers in
        complex128, in blocks of `chunk` steps: memory H·M·chunk)."""
        L = u.shape[-1]
        u_rev = u.flip(-1).to(torch.complex128)  # (…, H, L): u_{L−1−j} at j
        x = 0
        for j0, V in _power_chunks(self.poles, L, chunk):  # V (H, M, T) = λ^j, j = j0 … j0 + T − 1
            x = x + torch.einsum("hmt,...ht->...hm", V, u_rev[..., j0:j0 + V.shape[-1]])  # (…, H, M)
        return x.to(self.poles_c.dtype)

    def zero_state(self, batch_shape, device=None):
        """x_0 = 0 of shape (*batch_shape, H, M)."""
        return torch.zeros(*batch_shape, self.H, self.M, dtype=self.poles_c.dtype, device=device)

    def step(self, x, u_t, D=None):
        """One token: x (…, H, M), u_t (…, H) → (y_t (…, H), x_t). D (H,) adds a skip u_t·D."""
        x = self.poles_c * x + u_t[..., None].to(x.dtype)  # (…, H, M)  x_t = λ x_{t−1} + u_t
        y = (self.residues_c * x).real.sum(-1) + self.direct_r * u_t  # (…, H)  y_t = Re(c·x_t) + d u_t
        if D is not None:
            y = y + D * u_t
        return y.to(u_t.dtype), x

    def recurrence(self, u, D=None):
        """u (B, H, L) → y (B, H, L) by `step`, token by token (the reference for conv)."""
        x = self.zero_state(u.shape[:-2], u.device)
        ys = []
        for t in range(u.shape[-1]):
            y, x = self.step(x, u[..., t], D)
            ys.append(y)
        return torch.stack(ys, dim=-1)  # (B, H, L)

    def extra_repr(self):
        return f"H={self.H}, modes={self.M}, order≤{int(self.order.max())}, dtype={self.direct_r.dtype}"


# ---------------------------------------------------------------- H3 / H3-Conv as a recurrence

class RecurrentH3(nn.Module):
    """H3 or H3-Conv (lconv.mixers.H3) with both kernels replaced by distilled diagonal SSMs: (B, L, D) → (B, L, D).

    The same block as H3: q, k, v = W_q u, W_k u, W_v u; k̃ = SSM_shift(k) + k·D_shift; y = q ⊙ (SSM_long(k̃ ⊙ v) +
    (k̃ ⊙ v)·D), heads as in H3; out = W_o y — projections and skips copied from the H3 it is built from, each kernel
    replaced by its DiagonalSSM (shift: D channels, long: n_heads channels). `forward` runs the convolutional form
    (lconv.conv.fft_conv), `prefill` the same and also returns the state after the last token, `step` one token
    from a state (O(order) per channel, any position), `recurrence` the whole sequence by `step` (the reference).
    The state is (x_shift (B, D, M₁), x_long (B·d·d, n_heads, M₂)) complex, d = head_dim.
    """

    def __init__(self, h3, shift_ssm, long_ssm):
        super().__init__()
        from lconv.mixers import H3

        if not isinstance(h3, H3):
            raise ValueError(f"RecurrentH3: build it from an lconv.mixers.H3, got {type(h3).__name__}")
        if shift_ssm.H != h3.d_model or long_ssm.H != h3.n_heads:
            raise ValueError(f"RecurrentH3: the shift SSM needs {h3.d_model} channels and the long SSM {h3.n_heads} "
                             f"(n_heads), got {shift_ssm.H} and {long_ssm.H}")
        self.d_model, self.l_max, self.head_dim, self.n_heads = h3.d_model, h3.l_max, h3.head_dim, h3.n_heads
        self.conv_kind = h3.conv
        for name in ("q_proj", "k_proj", "v_proj", "output_linear"):
            setattr(self, name, copy.deepcopy(getattr(h3, name)))
        self.D_shift = nn.Parameter(h3.D_shift.detach().clone())  # (D,)
        self.D = nn.Parameter(h3.D.detach().clone())  # (n_heads,)
        self.shift_ssm, self.long_ssm = shift_ssm, long_ssm

    def _check(self, u):
        from lconv.mixers import _check_input

        _check_input(u, self.d_model, self.l_max, "RecurrentH3")

    def _conv(self, u):
        """Convolutional form: u (B, L, D) → (y (B, L, D), k (B, D, L) and kv (B·d·d, nh, L), the SSMs' inputs)."""
        B, L, _ = u.shape
        nh, d = self.n_heads, self.head_dim
        q, k, v = (proj(u).transpose(1, 2) for proj in (self.q_proj, self.k_proj, self.v_proj))  # (B, D, L) each
        k1 = self.shift_ssm.conv(k, D=self.D_shift)  # (B, D, L)
        kv = k1.view(B, nh, d, 1, L) * v.view(B, nh, 1, d, L)  # (B, nh, d1, d2, L)
        kv = kv.permute(0, 2, 3, 1, 4).reshape(B * d * d, nh, L)  # (B·d1·d2, nh, L)
        y = self.long_ssm.conv(kv, D=self.D)  # (B·d1·d2, nh, L)
        y = y.view(B, d, d, nh, L)  # (B, d1, d2, nh, L)
        q = q.view(B, nh, d, L).transpose(1, 2)  # (B, d1, nh, L)
        y = (y * q[:, :, None]).sum(1)  # (B, d2, nh, L)  contract d1 with q
        y = y.transpose(1, 2).reshape(B, self.d_model, L).transpose(1, 2)  # (B, L, D)
        return self.output_linear(y), k, kv

    def forward(self, u):
        """u (B, L, D) → y (B, L, D), the convolutional form."""
        self._check(u)
        return self._conv(u)[0]

    def prefill(self, u):
        """u (B, L, D) → (y (B, L, D), state after u): the convolutional form plus the SSM states it ends in."""
        self._check(u)
        y, k, kv = self._conv(u)
        return y, (self.shift_ssm.final_state(k), self.long_ssm.final_state(kv))

    def zero_state(self, batch, device=None):
        """The state before any token, for a batch of `batch` sequences."""
        d = self.head_dim
        return (self.shift_ssm.zero_state((batch,), device), self.long_ssm.zero_state((batch * d * d,), device))

    def step(self, u_t, state):
        """One token: u_t (B, D) and a state → (y_t (B, D), next state). The same arithmetic as _conv at one t."""
        if u_t.ndim != 2 or u_t.shape[-1] != self.d_model:
            raise ValueError(f"RecurrentH3.step: u_t must be (B, D={self.d_model}), got {tuple(u_t.shape)}")
        B = u_t.shape[0]
        nh, d = self.n_heads, self.head_dim
        x1, x2 = state
        q, k, v = self.q_proj(u_t), self.k_proj(u_t), self.v_proj(u_t)  # (B, D) each
        k1, x1 = self.shift_ssm.step(x1, k, D=self.D_shift)  # (B, D)
        kv = k1.view(B, nh, d, 1) * v.view(B, nh, 1, d)  # (B, nh, d1, d2)
        kv = kv.permute(0, 2, 3, 1).reshape(B * d * d, nh)  # (B·d1·d2, nh)
        y, x2 = self.long_ssm.step(x2, kv, D=self.D)  # (B·d1·d2, nh)
        y = y.view(B, d, d, nh)  # (B, d1, d2, nh)
        y = (y * q.view(B, nh, d).transpose(1, 2)[:, :, None]).sum(1)  # (B, d2, nh)
        y = y.transpose(1, 2).reshape(B, self.d_model)  # (B, D)
        return self.output_linear(y), (x1, x2)

    def recurrence(self, u):
        """u (B, L, D) → y (B, L, D) by `step`, token by token from the zero state (the reference for forward)."""
        self._check(u)
        state = self.zero_state(u.shape[0], u.device)
        ys = []
        for t in range(u.shape[1]):
            y, state = self.step(u[:, t], state)
            ys.append(y)
        return torch.stack(ys, dim=1)  # (B, L, D)

    def extra_repr(self):
        return (f"d_model={self.d_model}, head_dim={self.head_dim}, from H3(conv={self.conv_kind!r}), "
                f"shift order ≤ {int(self.shift_ssm.order.max())}, long order ≤ {int(self.long_ssm.order.max())}")


# ---------------------------------------------------------------- a whole language model

def lm_kernels(model):
    """The kernels of every H3 / H3-Conv mixer of a CausalLM at its l_max, as applied at evaluation (no dropout).

    Returns {(block index, "shift" | "long"): kernel (H, L) float32 on the CPU}: shift (d_model, L) — for H3 the
    shift SSM's d_state taps — and long (n_heads, L).
    """
    from lconv.mixers import H3

    out = {}
    for i, block in enumerate(model.blocks):
        mixer = block.mixer
        if not isinstance(mixer, H3):
            continue
        was = mixer.training
        mixer.eval()
        try:
            with torch.no_grad():
                out[(i, "shift")] = mixer._shift_k(mixer.l_max).detach().float().cpu()  # (D, Ls)
                out[(i, "long")] = mixer.kernel(mixer.l_max)[0].detach().float().cpu()  # (n_heads, L)
        finally:
            mixer.train(was)
    if not out:
        raise ValueError("lm_kernels: the model has no H3 / H3-Conv mixer to distil (attention layers stay as they "
                         "are; long-conv classifiers are distilled kernel by kernel with distill)")
    return out


def hankel_fits(model, max_order=None):
    """{(block, "shift" | "long"): HankelFit} of every H3 kernel (lm_kernels): the eigendecompositions, once."""
    return {key: HankelFit(k, max_order=None if max_order is None else min(max_order, order_limit(k.shape[-1])))
            for key, k in lm_kernels(model).items()}


def distill_lm(model, order=None, tol=None, *, refine_steps=200, lr=1e-2, fits=None, dtype=torch.float32):
    """A copy of the CausalLM `model` whose H3 / H3-Conv mixers are RecurrentH3 with distilled kernels, and a table.

    order / tol as in `distill` (the order is capped at each kernel's L − 1, e.g. H3's 64-tap shift kernel);
    fits: hankel_fits(model) to reuse across calls. Attention layers, embeddings, MLPs and norms are copied as they
    are. Returns (model, table): the table (pandas DataFrame) has one row per kernel channel — block, kernel,
    channel, order, error (after refinement), error_hankel (before).
    """
    import pandas as pd

    from lconv.models import CausalLM

    if not isinstance(model, CausalLM):
        raise ValueError(f"distill_lm: pass an lconv.models.CausalLM, got {type(model).__name__}")
    kernels = lm_kernels(model)
    fits = hankel_fits(model) if fits is None else fits
    out = copy.deepcopy(model).cpu()
    rows = []
    for i, block in enumerate(out.blocks):
        if (i, "long") not in kernels:
            continue
        ssms = {}
        for name in ("shift", "long"):
            k = kernels[(i, name)]
            o = None if order is None else min(order, order_limit(k.shape[-1]))
            dist = distill(k, order=o, tol=tol, refine_steps=refine_steps, lr=lr, hankel=fits[(i, name)])
            ssms[name] = dist.ssm(dtype)
            rows += [{"block": i, "kernel": name, "channel": h, "order": int(dist.order[h]),
                      "error": float(dist.error[h]), "error_hankel": float(dist.error_hankel[h])}
                     for h in range(dist.order.numel())]
        block.mixer = RecurrentH3(block.mixer, ssms["shift"], ssms["long"])
    return out, pd.DataFrame(rows)


@torch.no_grad()
def stepwise_logits(model, tokens):
    """Logits (B, T, V) of a CausalLM computed token by token: prefill of the first token, then one `step` per token
    (the recurrent path of cached generation), to compare with model(tokens) (the convolutional path)."""
    logits, state = model.prefill(tokens[:, :1])  # (B, 1, V)
    out = [logits[:, 0]]
    for t in range(1, tokens.shape[1]):
        step, state = model.step(tokens[:, t], state)  # (B, V)
        out.append(step)
    return torch.stack(out, dim=1)  # (B, T, V)


def extend_context(model, l_max):
    """A copy of a distilled CausalLM that accepts sequences up to `l_max` (e.g. to time generation past training).

    Valid only where nothing depends on the length: every block's mixer a RecurrentH3 (its SSMs define the kernel at
    every lag) and no position embeddings; a ValueError otherwise. The weights are unchanged.
    """
    from lconv.models import CausalLM

    if not isinstance(model, CausalLM):
        raise ValueError(f"extend_context: pass an lconv.models.CausalLM, got {type(model).__name__}")
    if not isinstance(l_max, int) or l_max < 1:
        raise ValueError(f"extend_context: l_max must be a positive int, got {l_max!r}")
    bad = [i for i, b in enumerate(model.blocks) if not isinstance(b.mixer, RecurrentH3)]
    if bad or model.pos_emb is not None:
        raise ValueError(f"extend_context: blocks {bad} are not RecurrentH3 or the model has position embeddings "
                         "(trained for l_max positions only); only a fully distilled model has no length limit")
    out = copy.deepcopy(model)
    out.l_max = l_max
    for b in out.blocks:
        b.mixer.l_max = l_max
    return out


# ---------------------------------------------------------------- generation speed (notebook 06)

def _sync(device):
    if device.type == "cuda":
        torch.cuda.synchronize(device)


@torch.no_grad()
def generation_speed(model, lengths, *, cached, n_tokens=8, seed=0):
    """Time one generated token at each context length L: a DataFrame (L, seconds_per_token, tokens_per_s, prefill_s).

    cached=True: `model.prefill` of a random prompt of L tokens (timed as prefill_s), then `n_tokens` greedy
    `model.step` calls, each timed (recurrent layers: one state update; attention: one query against the KV cache).
    cached=False: `n_tokens` full forward passes over contexts of L … L + n_tokens − 1 tokens, what
    lconv.models.generate(cache=False) does per token (a long convolution: an FFT over the whole prefix). The
    per-token time is the median of the n_tokens timings (robust to other jobs on a shared CPU); batch size 1.
    Needs L + n_tokens ≤ model.l_max + 1. The weights' values do not change the time, only the shapes do.
    """
    import time

    import pandas as pd

    lengths = [int(L) for L in lengths]
    if not lengths or min(lengths) < 1 or max(lengths) + n_tokens - 1 > model.l_max:
        raise ValueError(f"generation_speed: every L must satisfy 1 ≤ L and L + n_tokens − 1 ≤ l_max={model.l_max}, "
                         f"got lengths {lengths} with n_tokens={n_tokens}")
    if not isinstance(n_tokens, int) or n_tokens < 1:
        raise ValueError(f"generation_speed: n_tokens must be an int ≥ 1, got {n_tokens!r}")
    dev = next(model.parameters()).device
    gen = torch.Generator().manual_seed(seed)
    was = model.training
    model.eval()
    rows = []
    try:
        for L in lengths:
            x = torch.randint(0, model.vocab_size, (1, L), generator=gen).to(dev)  # (1, L)
            times, prefill_s = [], float("nan")
            if cached:
                _sync(dev)
                t0 = time.perf_counter()
                logits, state = model.prefill(x)
                _sync(dev)
                prefill_s = time.perf_counter() - t0
                tok = logits[:, -1].argmax(-1)  # (1,)
                for _ in range(n_tokens):
                    t0 = time.perf_counter()
                    logits, state = model.step(tok, state)
                    tok = logits.argmax(-1)
                    _sync(dev)
                    times.append(time.perf_counter() - t0)
            else:
                for _ in range(n_tokens):
                    t0 = time.perf_counter()
                    tok = model(x[:, -model.l_max:])[:, -1].argmax(-1, keepdim=True)  # (1, 1)
                    _sync(dev)
                    times.append(time.perf_counter() - t0)
                    x = torch.cat([x, tok], dim=1)
            sec = float(np.median(times))
            rows.append({"L": L, "seconds_per_token": sec, "tokens_per_s": 1.0 / sec, "prefill_s": prefill_s})
    finally:
        model.train(was)
    return pd.DataFrame(rows)


def speed_statement(table):
    """Sentence from a generation_speed table with a `method` column: tokens/s at the longest L per method, the
    ratios to the fastest, and each method's fitted slope of log(seconds per token) against log L."""
    from lconv.experiments.long_convs import loglog_slope

    if table.empty or not {"method", "L", "seconds_per_token", "tokens_per_s"} <= set(table.columns):
        raise ValueError("speed_statement: pass generation_speed rows with a 'method' column")
    L_max = int(table.L.max())
    at = table[table.L == L_max].set_index("method").tokens_per_s.sort_values(ascending=False)
    best = at.index[0]
    parts = [f"{m} {v:,.0f}" for m, v in at.items()]
    ratios = [f"{at[best] / at[m]:.1f}× {m}" for m in at.index[1:]]
    slopes = {m: loglog_slope(g.L, g.seconds_per_token) for m, g in table.groupby("method") if g.L.nunique() >= 2}
    slope_txt = ", ".join(f"{m} {s:+.2f}" for m, s in slopes.items())
    return (f"At a context of {L_max:,} tokens: {', '.join(parts)} tokens/s; {best} is "
            + (f"{' and '.join(ratios)}" if ratios else "the only method") + " as fast. "
            f"Time per token grows as L^slope with slopes {slope_txt} (0: constant per token, 1: linear in L).")


# ---------------------------------------------------------------- reading the numbers

def order_table(fits, tol):
    """One row per named Distillation (e.g. per notebook-02 variant): how many states per channel the tolerance took.

    fits: {name: Distillation fitted with tol}; a channel 'met' the tolerance when its error ≤ tol (the others sit at
    the search's max_order). Columns: variant, channels, met (share), order_median, order_mean, order_max, states
    (sum over channels), error_mean.
    """
    import pandas as pd

    rows = []
    for name, f in fits.items():
        o = f.order.double()
        rows.append({"variant": name, "channels": int(o.numel()), "met": float((f.error <= tol * (1 + 1e-9)).double()
                                                                              .mean()),
                     "order_median": float(o.median()), "order_mean": float(o.mean()), "order_max": int(o.max()),
                     "states": int(o.sum()), "error_mean": float(f.error.mean())})
    return pd.DataFrame(rows)


def smoothness_order_verdict(table, tol, max_order):
    """Sentence ranking variants by the median order their channels need for relative kernel error ≤ tol.

    table: order_table rows. A variant with fewer than half its channels within tol at max_order gets "more than
    max_order" (its median is censored there). Fewer states = a kernel closer to a smooth, decaying sum of a few
    exponentials: the number this notebook offers for "smooth"."""
    if table.empty:
        raise ValueError("smoothness_order_verdict: empty table")

    def key(r):
        return (r.met < 0.5, r.order_median if r.met >= 0.5 else -r.met, r.order_mean)

    rows = sorted(table.itertuples(), key=key)
    parts = []
    for r in rows:
        need = f"{r.order_median:.0f}" if r.met >= 0.5 else f"more than {max_order}"
        parts.append(f"{r.variant} {need} ({100 * r.met:.0f}% of {r.channels} channels within tol at ≤ {max_order})")
    return (f"States per channel for a relative kernel error ≤ {tol:g} (median over channels), fewest first: "
            + "; ".join(parts) + ".")


def smallest_order_within(base_ppl, sweep, rel=0.01):
    """The smallest uniform order in `sweep` (rows with order, val_ppl) whose perplexity is within a relative `rel`
    of base_ppl, or None."""
    close = sorted(r["order"] for r in sweep if abs(r["val_ppl"] - base_ppl) <= rel * base_ppl)
    return close[0] if close else None


def distillation_statement(base_ppl, sweep, tol_row, rel=0.01):
    """Sentence on the distilled language model from measured numbers.

    base_ppl: the original model's validation perplexity; sweep: rows (order, error_mean, val_ppl) at uniform
    orders; tol_row: {tol, order_mean, error_mean, val_ppl} of the per-channel tolerance fit. Reports the perplexity
    change at the tolerance, the smallest uniform order within `rel` of the original, and the sweep's range."""
    if not sweep:
        raise ValueError("distillation_statement: pass at least one sweep row")
    rows = sorted(sweep, key=lambda r: r["order"])
    n_star = smallest_order_within(base_ppl, rows, rel)
    change = 100 * (tol_row["val_ppl"] - base_ppl) / base_ppl
    lo, hi = min(r["val_ppl"] for r in rows), max(r["val_ppl"] for r in rows)
    first = (f"the smallest uniform order within {100 * rel:g}% of it is {n_star} (kernel error "
             f"{next(r['error_mean'] for r in rows if r['order'] == n_star):.3f})" if n_star is not None else
             f"no uniform order tried (up to {rows[-1]['order']}) comes within {100 * rel:g}% of it")
    return (f"Original validation perplexity {base_ppl:.3f}. Distilled per channel to relative kernel error ≤ "
            f"{tol_row['tol']:g} (mean order {tol_row['order_mean']:.1f}, mean error {tol_row['error_mean']:.3f}): "
            f"{tol_row['val_ppl']:.3f} ({change:+.2f}%). Over uniform orders {rows[0]['order']}–{rows[-1]['order']} "
            f"the perplexity ranges {lo:.3f}–{hi:.3f}; {first}.")


# ---------------------------------------------------------------- per-profile settings (notebook 06)

# lm_orders: uniform orders for the perplexity curve (refined sweep_refine_steps Adam steps each); lm_tol: the
# per-channel tolerance of the recurrent model (refined refine_steps steps); speed_*: context lengths and timed
# tokens per length; smooth_*: the notebook-02 task whose trained variants are distilled, the tolerance and the
# order cap of that comparison; sample_n: tokens generated (capped by the model's l_max).
SETTINGS = {
    "smoke": dict(lm_orders=(1, 4, 16), lm_tol=0.3, sweep_refine_steps=10, refine_steps=20,
                  speed_lengths=(64, 128, 256), speed_tokens=3,
                  smooth_task="digits", smooth_tol=0.1, smooth_max_order=24, sample_n=40),
    "quick": dict(lm_orders=(1, 4, 16, 64), lm_tol=0.1, sweep_refine_steps=20, refine_steps=60,
                  speed_lengths=(1024, 2048, 4096, 8192, 16384), speed_tokens=8,
                  smooth_task="smnist", smooth_tol=0.1, smooth_max_order=64, sample_n=200),
    "full": dict(lm_orders=(4, 16, 64, 256), lm_tol=0.05, sweep_refine_steps=300, refine_steps=1000,
                 speed_lengths=(1024, 2048, 4096, 8192, 16384), speed_tokens=32,
                 smooth_task="cifar", smooth_tol=0.05, smooth_max_order=256, sample_n=200),
}


def settings(profile):
    """A copy of SETTINGS[profile]."""
    if profile not in SETTINGS:
        raise ValueError(f"profile must be one of {tuple(SETTINGS)}, got {profile!r}")
    return copy.deepcopy(SETTINGS[profile])
