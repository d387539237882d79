"""lconv.distill: kernels → diagonal SSMs, recurrent H3 layers, cached generation, and the notebook-06 helpers."""
import math

import numpy as np
import pandas as pd
import pytest
import torch

from lconv.distill import (DiagonalSSM, HankelFit, RecurrentH3, distill, distill_lm, distillation_statement,
                           extend_context, generation_speed, lm_kernels, order_table, refine, relative_error,
                           settings, smallest_order_within, stepwise_logits,
                           smoothness_order_verdict, speed_statement, ssm_kernel)
from lconv.experiments.language_modeling import build_lm
from lconv.mixers import H3
from lconv.models import CausalLM, generate

torch.set_num_threads(1)


def planted(H, L, n_pairs, n_real, seed=0, r=(0.5, 0.9)):
    """Kernels (H, L) float64 of known diagonal SSMs: n_pairs conjugate pairs + n_real real poles, and a direct
    term; returns (kernels, poles per channel (H, n_pairs + n_real) complex)."""
    g = np.random.default_rng(seed)
    t = np.arange(L)
    ks, ps = [], []
    for _ in range(H):
        rad = g.uniform(*r, n_pairs + n_real)
        ang = np.concatenate([g.uniform(0.2, 2.9, n_pairs), np.where(g.random(n_real) < 0.5, 0.0, np.pi)])
        p = rad * np.exp(1j * ang)
        p[n_pairs:] = p[n_pairs:].real
        c = g.normal(size=n_pairs + n_real) + 1j * np.concatenate([g.normal(size=n_pairs), np.zeros(n_real)])
        k = (c[:n_pairs, None] * p[:n_pairs, None] ** t).real.sum(0) * 2 + (c[n_pairs:, None].real *
                                                                            p[n_pairs:, None].real ** t).sum(0)
        k[0] += g.normal()
        ks.append(k)
        ps.append(p)
    return torch.tensor(np.stack(ks)), np.stack(ps)


# ---------------------------------------------------------------- fitting

def test_recovers_a_planted_diagonal_ssm_at_its_true_order():
    k, poles = planted(H=4, L=256, n_pairs=3, n_real=2)  # order 3·2 + 2 = 8
    fit = distill(k, order=8, refine_steps=0)
    assert fit.order.tolist() == [8] * 4
    assert fit.error.max() < 1e-11  # relative L2 error of the kernel: machine precision
    assert torch.allclose(fit.kernel(), k, atol=1e-12, rtol=0)
    for h in range(4):  # the poles themselves (pairs stored once, Im > 0; add the conjugates back)
        found = fit.poles[h][fit.residues[h] != 0].numpy()
        found = np.concatenate([found, found[fit.is_pair[h].numpy()[: found.size]].conj()])
        want = np.concatenate([poles[h], poles[h][:3].conj()])
        assert np.allclose(np.sort_complex(found), np.sort_complex(want), atol=1e-9)
    assert (fit.poles.abs() < 1).all()


def test_tolerance_search_finds_the_true_order_and_meets_every_tolerance():
    k, _ = planted(H=3, L=200, n_pairs=2, n_real=1, seed=1)  # order 5
    hf = HankelFit(k)
    assert hf.fit(tol=1e-9).order.tolist() == [5, 5, 5]
    rough = torch.randn(6, 120, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    hr = HankelFit(rough, max_order=80)
    for tol in (0.5, 0.2):
        f = hr.fit(tol=tol)
        met = f.error <= tol
        assert (met | (f.order == 80)).all()  # within tol, or at the cap
        assert all(hr.fit(order=int(o) - 1).error[h] > tol for h, o in enumerate(f.order) if met[h] and o > 1)


def _trained_kernels():
    """The kernels of a small long-conv classifier after 60 steps on the smoke digits task (a trained kernel)."""
    from lconv.data import get_task
    from lconv.experiments import long_conv_variant
    from lconv.inspect import learned_kernels
    from lconv.models import build_model
    from lconv.train import train

    task = get_task("digits", profile="smoke")
    model = build_model(task, long_conv_variant("long conv", kernel_lr=2e-2), d_model=8, n_layers=1)
    train(model, task, steps=60, lr=1e-2, batch_size=32, device="cpu", seed=0)
    return learned_kernels(model)[0, 0]  # (H, L)


def test_error_decreases_with_order_on_a_trained_kernel_and_refinement_never_hurts():
    k = _trained_kernels()  # (8, 64)
    hf = HankelFit(k)
    errs = [float(hf.fit(order=n).error.mean()) for n in (1, 2, 4, 8, 16, 32)]
    assert all(b < a for a, b in zip(errs, errs[1:])), errs
    assert errs[-1] < 0.5 * errs[0]
    fit = hf.fit(order=4)
    ref = refine(fit, k, steps=50)
    assert (ref.error <= fit.error + 1e-12).all() and ref.error.mean() < fit.error.mean()
    assert torch.equal(ref.error_hankel, fit.error) and (ref.poles.abs() < 1).all()
    # the reported error is the error of the SSM's own kernel
    assert np.allclose(relative_error(ref.kernel().numpy(), k.double().numpy()), ref.error.numpy())


@pytest.mark.parametrize("bad, match", [
    (torch.tensor([[0.1, float("nan"), 0.3, 0.2]]), "NaN"),
    (torch.ones(2, 2), "L ≥ 3"),
    (torch.ones(3, 8, dtype=torch.complex64), "real floating"),
    (torch.ones(3, 8, dtype=torch.long), "real floating"),
])
def test_bad_kernels_are_refused(bad, match):
    with pytest.raises(ValueError, match=match):
        distill(bad, order=1)


def test_bad_orders_and_tolerances_are_refused():
    k = torch.randn(2, 16)
    with pytest.raises(ValueError, match="order must be an int ≥ 1"):
        distill(k, order=0)
    with pytest.raises(ValueError, match="L − 1 = 15"):
        distill(k, order=16)  # L < order + 1: more states than taps
    with pytest.raises(ValueError, match="tol must be"):
        distill(k, tol=1.5)
    with pytest.raises(ValueError, match="exactly one"):
        distill(k, order=2, tol=0.1)
    with pytest.raises(ValueError, match="exactly one"):
        distill(k)
    with pytest.raises(ValueError, match="max_order"):
        HankelFit(k, max_order=4).fit(order=5)
    with pytest.raises(ValueError, match="not the one fitted"):
        refine(distill(k, order=2, refine_steps=0), torch.randn(3, 16))


# ---------------------------------------------------------------- recurrence = convolution

def test_diagonal_ssm_recurrence_equals_its_convolution_in_fp32():
    k, _ = planted(H=5, L=96, n_pairs=3, n_real=1, seed=2)
    ssm = distill(k, order=7, refine_steps=0).ssm(torch.float32)
    u = torch.randn(2, 5, 96)
    D = torch.randn(5)
    y_conv, y_rec = ssm.conv(u, D=D), ssm.recurrence(u, D=D)
    assert y_conv.dtype == y_rec.dtype == torch.float32
    assert (y_conv - y_rec).abs().max() <= 1e-5 * max(1.0, y_conv.abs().max().item())
    # final_state is the state the recurrence ends in
    x = ssm.zero_state((2,))
    for t in range(96):
        _, x = ssm.step(x, u[..., t])
    assert torch.allclose(ssm.final_state(u), x, atol=1e-4, rtol=1e-4)
    assert torch.allclose(ssm.final_state(u, chunk=10), x, atol=1e-4, rtol=1e-4)
    # the kernel helper agrees with the module's
    assert torch.allclose(ssm.kernel(96).double(), ssm_kernel(ssm.poles, ssm.residues, ssm.direct, 96), atol=1e-6)


@pytest.mark.parametrize("conv, head_dim", [("long", 1), ("long", 2), ("ssm", 1)])
def test_recurrent_h3_forward_recurrence_and_prefill_step_agree(conv, head_dim):
    torch.manual_seed(0)
    h3 = H3(8, 40, d_state=8, head_dim=head_dim, conv=conv, **({"lam": 0.0} if conv == "long" else {})).eval()
    with torch.no_grad():
        shift = distill(h3._shift_k(40), order=4, refine_steps=0).ssm()  # H3's shift kernel: 8 taps
        long = distill(h3.kernel(40)[0], order=12, refine_steps=0).ssm()
        rec = RecurrentH3(h3, shift, long).eval()
        u = torch.randn(2, 40, 8)
        y = rec(u)
        assert (y - rec.recurrence(u)).abs().max() < 1e-5 * max(1.0, y.abs().max().item())
        y_pre, state = rec.prefill(u[:, :25])
        assert torch.allclose(y_pre, y[:, :25], atol=1e-6)
        for t in range(25, 40):
            y_t, state = rec.step(u[:, t], state)
            assert (y_t - y[:, t]).abs().max() < 1e-5 * max(1.0, y.abs().max().item())


def test_ill_conditioned_fits_are_held_to_max_gain_or_warn_in_float32():
    fir = torch.zeros(4, 8)
    fir[:, 1:] = torch.randn(4, 7)  # a short FIR: its full order has all poles at 0, which no diagonal form holds
    fit = distill(fir, order=7, refine_steps=0, max_gain=None)
    assert fit.gain.max() > 1e4
    with pytest.warns(UserWarning, match="lose"):
        fit.ssm(torch.float32)
    held = distill(fir, order=7, refine_steps=30)  # the default max_gain = 1e3 regularises those channels
    assert held.gain.max() <= 1e3 * (1 + 1e-6) and (held.error >= fit.error - 1e-12).all()
    assert distill(planted(2, 64, 1, 1)[0], order=3, refine_steps=0).gain.max() < 1e3


def test_recurrent_h3_refuses_mismatched_ssms():
    h3 = H3(8, 16, conv="long")
    ssm = DiagonalSSM(torch.zeros(3, 1, dtype=torch.complex128), torch.zeros(3, 1, dtype=torch.complex128),
                      torch.zeros(3), torch.ones(3, dtype=torch.long))
    with pytest.raises(ValueError, match="channels"):
        RecurrentH3(h3, ssm, ssm)


# ---------------------------------------------------------------- cached generation

def _planted_h3conv(vocab=32, d_model=8, l_max=48, n_layers=2, attn_layers=(), order=(2, 1)):
    """An H3-Conv CausalLM (no Squash) whose every kernel is exactly a low-order diagonal SSM's, poles |λ| ≤ 0.6 so
    the window holds the whole response; and that order."""
    torch.manual_seed(0)
    model = CausalLM(vocab, d_model, n_layers, l_max, mixer="h3conv", lam=0.0, attn_layers=attn_layers,
                     n_heads=2).eval()
    for i, block in enumerate(model.blocks):
        if isinstance(block.mixer, H3):
            for j, kern in enumerate((block.mixer.shift_kernel, block.mixer.kernel)):
                k, _ = planted(kern.H, l_max, *order, seed=10 * i + j, r=(0.3, 0.6))
                kern.raw.data = (0.3 * k / k.norm(dim=-1, keepdim=True)).float()[None]  # (1, H, L)
    return model, 2 * order[0] + order[1]


def test_exact_distillation_generates_the_fft_models_tokens():
    model, order = _planted_h3conv()
    rec, table = distill_lm(model, order=order, refine_steps=0)
    assert table.error.max() < 1e-6 and set(table.order) == {order}
    assert all(isinstance(b.mixer, RecurrentH3) for b in rec.blocks)
    prompt = torch.tensor([1, 5, 7, 3])
    for temperature in (0.0, 1.0):
        fft = generate(model, prompt, 40, temperature=temperature, top_k=8, seed=3)  # the original, by FFT
        cached = generate(rec, prompt, 40, temperature=temperature, top_k=8, seed=3, cache=True)
        assert torch.equal(fft, cached)


@pytest.mark.parametrize("variant", ["distilled", "hybrid", "transformer"])
def test_cached_generation_equals_uncached_token_for_token(variant):
    if variant == "transformer":
        model = build_lm("Transformer", 32, 64, d_model=16, n_layers=2, n_heads=2)
    else:
        model, _ = _planted_h3conv(l_max=64, attn_layers=(1,) if variant == "hybrid" else ())
        model, _ = distill_lm(model, order=3, refine_steps=5)  # a lossy fit: both forms must still agree
    prompt = torch.tensor([[2, 9, 4], [7, 7, 1]])
    for temperature in (0.0, 0.9):
        a = generate(model, prompt, 50, temperature=temperature, seed=1)
        b = generate(model, prompt, 50, temperature=temperature, seed=1, cache=True)
        assert torch.equal(a, b)
    with torch.no_grad():
        full = model(a)
        assert (stepwise_logits(model, a) - full).abs().max() < 1e-4 * max(1.0, full.abs().max().item())


def test_cached_generation_refuses_what_it_cannot_do():
    model, _ = _planted_h3conv(l_max=16)
    with pytest.raises(ValueError, match="no stateful form"):
        generate(model, torch.tensor([1, 2]), 3, cache=True)  # a long convolution has no state: distil it first
    rec, _ = distill_lm(model, order=3, refine_steps=0)
    with pytest.raises(ValueError, match="exceed l_max"):
        generate(rec, torch.tensor([1, 2, 3]), 15, cache=True)
    _, state = rec.prefill(torch.tensor([[1] * 16]))
    with pytest.raises(ValueError, match="past l_max"):
        rec.step(torch.tensor([1]), state)
    with pytest.raises(ValueError, match="no H3"):
        lm_kernels(build_lm("Transformer", 32, 16, d_model=16, n_layers=1, n_heads=2))
    with pytest.raises(ValueError, match="CausalLM"):
        distill_lm(H3(8, 16), order=2)


def test_extend_context_only_for_length_free_models():
    model, _ = _planted_h3conv(l_max=32)
    rec, _ = distill_lm(model, order=3, refine_steps=0)
    long = extend_context(rec, 200)
    assert long.l_max == 200 and rec.l_max == 32
    out = generate(long, torch.tensor([1, 2, 3]), 100, temperature=0.0, cache=True)
    assert out.shape == (103,)
    with pytest.raises(ValueError, match="not RecurrentH3"):
        extend_context(model, 200)


# ---------------------------------------------------------------- notebook helpers

def test_generation_speed_table_and_statement():
    model, _ = _planted_h3conv(l_max=80)
    rec, _ = distill_lm(model, order=3, refine_steps=0)
    rows = []
    for name, m, cached in (("recurrent", rec, True), ("FFT per token", model, False)):
        t = generation_speed(m, (16, 64), cached=cached, n_tokens=2)
        assert list(t.columns) == ["L", "seconds_per_token", "tokens_per_s", "prefill_s"]
        assert (t.tokens_per_s > 0).all() and np.allclose(t.tokens_per_s * t.seconds_per_token, 1)
        rows.append(t.assign(method=name))
    text = speed_statement(pd.concat(rows))
    assert "At a context of 64 tokens" in text and "slopes" in text
    with pytest.raises(ValueError, match="l_max"):
        generation_speed(rec, (80,), cached=True, n_tokens=2)


def test_order_table_verdict_and_distillation_statement():
    k, _ = planted(H=4, L=64, n_pairs=1, n_real=0, seed=3)  # order 2: "smooth"
    rough = torch.randn(4, 64, dtype=torch.float64, generator=torch.Generator().manual_seed(1))
    fits = {"smooth": HankelFit(k, max_order=20).fit(tol=0.05), "rough": HankelFit(rough, max_order=20).fit(tol=0.05)}
    table = order_table(fits, 0.05)
    assert table.set_index("variant").loc["smooth", "order_median"] == 2
    assert table.set_index("variant").loc["smooth", "met"] == 1.0
    text = smoothness_order_verdict(table, 0.05, 20)
    assert text.index("smooth 2") < text.index("rough")
    sweep = [{"order": 2, "error_mean": 0.5, "val_ppl": 7.0}, {"order": 8, "error_mean": 0.1, "val_ppl": 6.01}]
    s = distillation_statement(6.0, sweep, {"tol": 0.1, "order_mean": 5.0, "error_mean": 0.08, "val_ppl": 6.03})
    assert "+0.50%" in s and "smallest uniform order within 1% of it is 8" in s
    assert smallest_order_within(6.0, sweep) == 8 and smallest_order_within(6.0, sweep[:1]) is None
    s = distillation_statement(6.0, sweep[:1], {"tol": 0.1, "order_mean": 5.0, "error_mean": 0.08, "val_ppl": 6.03})
    assert "no uniform order tried" in s


def test_settings_profiles():
    for p in ("smoke", "quick", "full"):
        cfg = settings(p)
        assert cfg["lm_tol"] > 0 and min(cfg["lm_orders"]) >= 1
    with pytest.raises(ValueError, match="profile"):
        settings("huge")
    assert math.isclose(settings("quick")["smooth_tol"], 0.1)
