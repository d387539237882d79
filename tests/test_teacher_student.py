"""The teacher–student mechanism experiment: teachers, data, the regularised fits and the numbers read from them."""
import math

import pandas as pd
import pytest
import torch

from lconv import fft_conv, squash
from lconv.teacher_student import (TARGETS, effects, excess_error, fit_kernel, fit_model_form, make_data, study,
                                   target_kernel, universal_lam, verdicts)


@pytest.mark.parametrize("kind", TARGETS)
def test_teachers_are_unit_norm_and_of_their_kind(kind):
    k = target_kernel(kind, 256)
    assert k.shape == (256,) and k.dtype == torch.float32
    assert abs(k.norm().item() - 1) < 1e-5
    zeros = (k == 0).float().mean().item()
    assert (zeros > 0.9) == (kind == "spiky")  # only the spiky teacher has exact zeros (8 taps of 256 are not)
    if kind == "decaying":
        assert k[128:].abs().max() < 1e-3 * k.abs().max()  # decays well within the kernel


def test_bad_teacher_and_data_arguments_are_refused():
    with pytest.raises(ValueError, match="kind must be one of"):
        target_kernel("smooth", 256)
    with pytest.raises(ValueError, match="L must be"):
        target_kernel("decaying", 8)
    with pytest.raises(ValueError, match="n must be a positive int"):
        make_data(target_kernel("rough", 64), 0, 1.0)
    with pytest.raises(ValueError, match="lam must be"):
        fit_kernel(*make_data(target_kernel("rough", 64), 1, 1.0), lam=-1.0)
    with pytest.raises(ValueError, match="unknown variant"):
        study(variants=("lasso",))


def test_excess_error_is_the_expected_prediction_error_on_white_inputs():
    g = torch.Generator().manual_seed(0)
    k_star, k = torch.randn(32, generator=g), torch.randn(32, generator=g)
    u = torch.randn(20000, 1, 32, generator=g, dtype=torch.float64)  # Monte Carlo over white inputs
    num = (fft_conv(u, (k - k_star).double()[None]) ** 2).sum(-1).mean()
    den = (fft_conv(u, k_star.double()[None]) ** 2).sum(-1).mean()
    assert excess_error(k, k_star) == pytest.approx((num / den).item(), rel=0.03)
    assert excess_error(k_star, k_star) == 0.0


def test_noise_free_least_squares_recovers_the_teacher():
    k_star = target_kernel("rough", 64)
    u, y = make_data(k_star, 4, noise=0.0)
    k = fit_kernel(u, y, steps=400)
    assert excess_error(k, k_star) < 1e-3


def test_squash_is_the_proximal_step_of_the_l1_penalty():
    # For an orthogonal design (here: one example with u = unit impulse, so y = k* + noise) the lasso solution of
    # mean((u ∗ k − y)²) + λ‖k‖₁ is the soft threshold of y at λ·L/2 (the mean divides by L; the curvature is 2/L).
    L, lam = 32, 0.01
    u = torch.zeros(1, 1, L)
    u[..., 0] = 1.0
    y = torch.randn(1, 1, L)
    k = fit_kernel(u, y, lam=lam, steps=500)
    assert torch.allclose(k, squash(y[0, 0], lam * L / 2), atol=1e-4)


def test_universal_lambda_shrinks_with_the_examples():
    assert universal_lam(4, 256, 1.0) == pytest.approx(universal_lam(1, 256, 1.0) / 2)
    assert universal_lam(1, 256, 1.0) == pytest.approx(2 * math.sqrt(2 * math.log(256) / 256))


def test_model_form_squash_keeps_taps_below_lambda_at_zero():
    u, y = make_data(target_kernel("decaying", 64), 2, 1.0)
    torch.manual_seed(3)
    k0 = torch.randn(1, 64) * 0.002  # the init LongConvKernel draws under the same seed
    k = fit_model_form(u, y, steps=50, seed=3)
    dead = k0[0].abs() <= 0.002
    assert dead.any() and (k[dead] == 0).all()  # no gradient ever reached them


def test_study_effects_and_verdicts_read_the_fits():
    table = study(targets=("spiky",), ns=(1, 64), L=64, seeds=(0, 1), steps=150,
                  variants=("plain", "Squash", "Smooth"))
    assert len(table) == 1 * 2 * 2 * 3 and set(table.columns) >= {"excess_error", "kernel_error", "spectral_tv"}
    eff = effects(table)
    assert set(eff.variant) == {"Squash", "Smooth"} and len(eff) == 4
    row = eff[(eff.variant == "Squash") & (eff.n == 1)].iloc[0]
    assert row.difference < 0  # one example of a sparse teacher: the lasso beats least squares
    text = verdicts(eff)
    assert text.count("\n") == 1 and "spiky teacher, Squash: helps at n = 1" in text
    # a made-up table reads as written: helps at n = 2, hurts at n = 8
    fake = pd.DataFrame({"target": "t", "n": [2, 8], "variant": "V", "plain": [1.0, 0.1], "regularised": [0.5, 0.3],
                         "difference": [-0.5, 0.2], "se": [0.1, 0.05]})
    assert verdicts(fake) == ("t teacher, V: helps at n = 2 (best at n = 2: excess error 0.500 vs 1.000 plain); "
                              "hurts at n = 8 (worst at n = 8: 0.300 vs 0.100).")
