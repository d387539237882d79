r"""Why Squash and Smooth can help, in seconds: learn one long-convolution kernel from noisy examples of a known one.

A teacher kernel k* (L,) makes the data: y = k* ∗ u + σ·ε with u, ε ~ N(0, 1) of length L (causal convolution,
lconv.fft_conv). A student kernel k of the same length, initialised randn·0.002 and parametrised exactly as in the
model (lconv.layers.LongConvKernel: k = squash(smooth(K))), is fitted to n such examples by Adam on the mean squared
error, the same optimiser the classifiers use. With L free taps and n·L noisy equations the student can fit the
noise when n is small; the paper's regularisers restrict what it can fit:

- **Squash** k = sign(K)·relu(|K| − λ) is the soft threshold, the proximal step of the penalty λ‖k‖₁: it zeroes every
  tap the data do not push beyond λ, so it helps when the truth is *sparse* (a decaying kernel is: its tail is
  below the noise) and biases every tap by λ, which hurts when many true taps are small but not zero.
- **Smooth** (moving average over w taps) is a low-pass filter on k: the student can only express kernels whose
  spectrum is small above ~L/w cycles, so it removes high-frequency noise when the truth is *smooth* and cannot fit
  a truth that has high-frequency content.

`TARGETS` holds one teacher of each kind: "decaying" (an S4D kernel: sparse and smooth, what the paper expects of
a good long-conv kernel), "spiky" (a few isolated taps: sparse, not smooth) and "rough" (white noise under a slow
decay: neither sparse nor smooth). `study` fits every (target, n, variant, seed) and reports, per fit, the kernel
error ‖k − k*‖/‖k*‖, the excess prediction error on fresh inputs E‖(k − k*) ∗ u‖² / E‖k* ∗ u‖² (the test error
above the noise floor) and the learned kernel's spectral total variation (lconv.inspect, ≈ 0.46 for white noise);
`effects` turns it into regulariser − plain differences with standard errors over seeds, `verdicts` into sentences.
"""
from __future__ import annotations

import math

import torch

from lconv.conv import fft_conv
from lconv.inspect import spectral_total_variation
from lconv.layers import LongConvKernel, s4d_kernel
from lconv.regularize import smooth, squash

TARGETS = ("decaying", "spiky", "rough")
# study() keyword arguments per workbook profile: "quick" runs in about a minute on one core
SETTINGS = {
    "smoke": dict(ns=(1, 16), L=128, seeds=(0, 1), steps=150),
    "quick": dict(ns=(1, 4, 16, 64), L=256, seeds=(0, 1, 2), steps=300),
    "full": dict(ns=(1, 2, 4, 8, 16, 32, 64, 128), L=1024, seeds=(0, 1, 2, 3, 4), steps=600),
}
# name → LongConvKernel options; "plain" is the unregularised long conv of the paper's ablation
VARIANTS = {"plain": {}, "Squash": {"lam": True}, "Smooth": {"smooth_window": True},
            "Squash + Smooth": {"lam": True, "smooth_window": True}, "Squash (model form)": {}}


def target_kernel(kind: str, L: int, seed: int = 0) -> torch.Tensor:
    """Teacher kernel k* (L,) float32 with ‖k*‖₂ = 1: "decaying" (an S4D kernel, lconv.layers.s4d_kernel: 4 complex
    modes A = −4 + iπn, n = 0…3, dt 0.02, so every mode decays as e^(−0.08 t) and turns at most 0.19 rad per tap),
    "spiky" (8 taps of ±1 at random positions in the first half), "rough" (white noise times e^(−t/(L/2)))."""
    if kind not in TARGETS:
        raise ValueError(f"target_kernel: kind must be one of {TARGETS}, got {kind!r}")
    if not isinstance(L, int) or L < 16:
        raise ValueError(f"target_kernel: L must be an int ≥ 16, got {L!r}")
    g = torch.Generator().manual_seed(seed)
    t = torch.arange(L, dtype=torch.float64)
    if kind == "decaying":
        N = 4  # complex modes (8 real states)
        log_dt = torch.tensor([math.log(0.02)], dtype=torch.float64)  # (1,)
        log_A_real = torch.full((1, N), math.log(4.0), dtype=torch.float64)  # (1, N)  Re A = −4: e^(−0.08 t)
        A_imag = (math.pi * torch.arange(N, dtype=torch.float64))[None]  # (1, N)  S4D-Lin
        C = torch.randn(1, 1, N, 2, generator=g, dtype=torch.float64)  # (1, 1, N, 2)
        k = s4d_kernel(log_dt, log_A_real, A_imag, C, L)[0, 0]  # (L,)
    elif kind == "spiky":
        k = torch.zeros(L, dtype=torch.float64)
        pos = torch.randperm(L // 2, generator=g)[:8]
        k[pos] = torch.where(torch.rand(8, generator=g) < 0.5, -1.0, 1.0).double()
    else:
        k = torch.randn(L, generator=g, dtype=torch.float64) * torch.exp(-t / (L / 2))
    return (k / k.norm()).float()


def make_data(k_star: torch.Tensor, n: int, noise: float, seed: int = 0):
    """n examples (u, y): u (n, 1, L) ~ N(0, 1), y = fft_conv(u, k*) + noise·N(0, 1), both float32."""
    if not isinstance(n, int) or n < 1:
        raise ValueError(f"make_data: n must be a positive int, got {n!r}")
    g = torch.Generator().manual_seed(seed)
    L = k_star.shape[-1]
    u = torch.randn(n, 1, L, generator=g)  # (n, 1, L)
    y = fft_conv(u, k_star[None]) + noise * torch.randn(n, 1, L, generator=g)  # (n, 1, L)
    return u, y


def _lipschitz(u, smooth_window=None, iters=30):
    """Largest eigenvalue of the Hessian of mean((u ∗ A·K − y)²) in K (A the moving average or the identity), by
    power iteration on the linear map's normal operator: the step 1/Lip makes gradient descent converge."""
    L = u.shape[-1]
    g = torch.Generator().manual_seed(0)
    v = torch.randn(L, generator=g)
    lip = 1.0
    for _ in range(iters):
        v = v / v.norm()
        K = v.clone().requires_grad_(True)
        k = smooth(K, smooth_window) if smooth_window else K
        f = fft_conv(u, k[None], check_finite=False).pow(2).mean()  # v'Hv / 2
        (hv,) = torch.autograd.grad(f, K)
        lip = float(hv.norm())
        v = hv.detach()
    return lip


def fit_kernel(u, y, *, lam=0.0, smooth_window=None, steps=300) -> torch.Tensor:
    """The regularised least-squares kernel (L,) float32 from (u (n, 1, L), y (n, 1, L)), by FISTA from zero.

    Objective: mean((u ∗ k − y)²) + lam·‖K‖₁ with k = smooth(K, smooth_window) (k = K without Smooth). The proximal
    step of lam·‖K‖₁ is Squash, lconv.regularize.squash(K, step·lam): plain = least squares (early-stopped at
    `steps`), Squash = the lasso, Smooth = least squares over low-passed kernels, both = the lasso over them.
    """
    if lam < 0:
        raise ValueError(f"fit_kernel: lam must be ≥ 0, got {lam!r}")
    step = 1.0 / _lipschitz(u, smooth_window)
    K = torch.zeros(u.shape[-1])
    z, t = K.clone(), 1.0
    for _ in range(steps):
        z.requires_grad_(True)
        k = smooth(z, smooth_window) if smooth_window else z
        f = (fft_conv(u, k[None], check_finite=False) - y).pow(2).mean()
        (grad,) = torch.autograd.grad(f, z)
        K_next = squash(z.detach() - step * grad, step * lam)  # squash(·, 0) is the identity
        t_next = (1 + math.sqrt(1 + 4 * t * t)) / 2
        z = K_next + (t - 1) / t_next * (K_next - K)  # Nesterov momentum
        K, t = K_next, t_next
    return (smooth(K, smooth_window) if smooth_window else K).detach()  # (L,)


def fit_model_form(u, y, *, lam=0.002, steps=600, lr=1e-3, seed=0) -> torch.Tensor:
    """Squash as the classifiers use it: k = squash(K, lam) as a parametrisation (lconv.layers.LongConvKernel,
    init randn·0.002), trained by Adam at the paper's kernel lr with a cosine decay. Taps that start (or later
    land) inside [−lam, lam] get zero gradient and stay at zero: with lam on the init scale, 68% never train."""
    torch.manual_seed(seed)
    kernel = LongConvKernel(1, u.shape[-1], lam=lam, lr=lr)
    opt = torch.optim.Adam(kernel.parameters(), lr=lr)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, steps)
    for _ in range(steps):
        loss = (fft_conv(u, kernel()[0], check_finite=False) - y).pow(2).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
        sched.step()
    with torch.no_grad():
        return kernel()[0, 0].clone()  # (L,)


def excess_error(k: torch.Tensor, k_star: torch.Tensor) -> float:
    """E‖(k − k*) ∗ u‖² / E‖k* ∗ u‖² for white u of length L (exact, no sampling): Σ_s (L − s)(k − k*)[s]² over
    Σ_s (L − s) k*[s]², since tap s reaches L − s outputs of a causal convolution."""
    w = torch.arange(k.shape[-1], 0, -1, dtype=torch.float64)  # (L,) outputs each tap reaches
    d = (k - k_star).double()
    return float((w * d ** 2).sum() / (w * k_star.double() ** 2).sum())


def universal_lam(n: int, L: int, noise: float) -> float:
    """λ of the lasso mean((u ∗ k − y)²) + λ‖k‖₁ that thresholds the least-squares kernel at the universal
    threshold τ = σ_tap·√(2 ln L) (Donoho & Johnstone 1994), σ_tap = noise/√(n·L) the per-tap noise of least
    squares for white u; λ = 2τ because that objective's curvature is ≈ 2 per tap."""
    return 2 * noise * math.sqrt(2 * math.log(L) / (n * L))


def _fit(name, u, y, *, lam, smooth_window, steps, seed):
    """Fit variant `name` (VARIANTS) to (u, y): the kernel (L,)."""
    if name == "Squash (model form)":
        return fit_model_form(u, y, steps=2 * steps, seed=seed)
    if name == "Squash + Smooth":  # the models' order, squash(smooth(K)): Smooth's fit, squashed at the threshold
        return squash(fit_kernel(u, y, smooth_window=smooth_window, steps=steps), lam / 2)
    opts = VARIANTS[name]
    return fit_kernel(u, y, lam=lam if opts.get("lam") else 0.0,
                      smooth_window=smooth_window if opts.get("smooth_window") else None, steps=steps)


def study(targets=TARGETS, ns=(1, 2, 4, 8, 16, 32), *, L=256, noise=1.0, smooth_window=7, seeds=(0, 1, 2),
          steps=300, variants=tuple(VARIANTS)):
    """Fit every (target, n, variant, seed); a DataFrame with columns target, n, variant, seed, lam, kernel_error,
    excess_error, spectral_tv. The teacher is fixed per target; seeds change the data (and the model form's init).
    λ follows `universal_lam(n, L, noise)`: the threshold shrinks as the examples grow.
    """
    import pandas as pd

    unknown = sorted(set(variants) - set(VARIANTS))
    if unknown:
        raise ValueError(f"study: unknown variant(s) {unknown}; choose from {list(VARIANTS)}")
    rows = []
    for target in targets:
        k_star = target_kernel(target, L)
        for n in ns:
            lam = universal_lam(n, L, noise)
            for seed in seeds:
                u, y = make_data(k_star, n, noise, seed=1000 + seed)
                for name in variants:
                    k = _fit(name, u, y, lam=lam, smooth_window=smooth_window, steps=steps, seed=seed)
                    rows.append({"target": target, "n": n, "variant": name, "seed": seed, "lam": lam,
                                 "kernel_error": float((k - k_star).norm() / k_star.norm()),
                                 "excess_error": excess_error(k, k_star), "spectral_tv": spectral_total_variation(k)})
    return pd.DataFrame(rows)


def effects(table, base="plain", metric="excess_error"):
    """Per (target, n, variant ≠ base): mean of `metric` over seeds for the variant and for `base`, their paired
    difference (variant − base, < 0 = the regulariser helps) and its standard error over seeds (NaN for one seed)."""
    import pandas as pd

    wide = table.pivot_table(index=["target", "n", "seed"], columns="variant", values=metric)
    rows = []
    for (target, n), g in wide.groupby(level=["target", "n"], sort=False):
        for v in [c for c in wide.columns if c != base]:
            d = (g[v] - g[base]).to_numpy()
            se = float(d.std(ddof=1) / math.sqrt(len(d))) if len(d) > 1 else float("nan")
            rows.append({"target": target, "n": n, "variant": v, base: float(g[base].mean()),
                         "regularised": float(g[v].mean()), "difference": float(d.mean()), "se": se})
    return pd.DataFrame(rows)


def verdicts(effect_table, margin_se=2.0) -> str:
    """One sentence per (target, variant): at which n the regulariser lowers the error by more than `margin_se`
    standard errors (helps), raises it (hurts), or neither; from `effects`' table."""
    lines = []
    for (target, v), g in effect_table.groupby(["target", "variant"], sort=False):
        tol = margin_se * g["se"].fillna(0.0)
        helps = g.loc[g["difference"] < -tol, "n"].tolist()
        hurts = g.loc[g["difference"] > tol, "n"].tolist()
        best = g.loc[g["difference"].idxmin()]
        parts = []
        if helps:
            parts.append(f"helps at n = {', '.join(map(str, helps))} (best at n = {best['n']}: excess error "
                         f"{best['regularised']:.3f} vs {best['plain']:.3f} plain)")
        if hurts:
            worst = g.loc[g["difference"].idxmax()]
            parts.append(f"hurts at n = {', '.join(map(str, hurts))} (worst at n = {worst['n']}: "
                         f"{worst['regularised']:.3f} vs {worst['plain']:.3f})")
        lines.append(f"{target} teacher, {v}: " + ("; ".join(parts) if parts else
                                                   "no difference beyond two standard errors at any n") + ".")
    return "\n".join(lines)


def example_fits(target="decaying", n=2, *, L=256, noise=1.0, smooth_window=7, steps=300, seed=0,
                 variants=tuple(VARIANTS)):
    """The teacher and each variant's learned kernel for one (target, n): {"teacher": k*, variant: k}, each (L,)."""
    k_star = target_kernel(target, L)
    u, y = make_data(k_star, n, noise, seed=1000 + seed)
    lam = universal_lam(n, L, noise)
    return {"teacher": k_star, **{name: _fit(name, u, y, lam=lam, smooth_window=smooth_window, steps=steps,
                                             seed=seed) for name in variants}}


__all__ = ["SETTINGS", "TARGETS", "VARIANTS", "target_kernel", "make_data", "fit_kernel", "excess_error", "study", "effects",
           "verdicts", "example_fits", "universal_lam", "fit_model_form"]
