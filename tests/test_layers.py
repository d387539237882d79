"""Kernels (long / S4D), LongConv (causality, lengths, backends) and the optimiser groups."""
import math
import sys
import warnings

import pytest
import torch

from lconv.conv import direct_conv, fft_conv
from lconv.layers import LongConv, LongConvKernel, S4DKernel, optim_tag, register_param, s4d_kernel
from lconv.regularize import smooth, squash
from lconv.train import cosine_with_warmup, make_optimizer, optimizer_groups


def test_long_kernel_random_init_and_forward():
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # the defaults must not warn
        kern = LongConvKernel(16, 256, channels=2)
    assert kern.raw.shape == (2, 16, 256)
    assert abs(kern.raw.std().item() - 0.002) < 2e-4
    assert abs(kern.trainable_fraction() - 0.317) < 0.03  # λ = 0.002 on init std 0.002
    raw_before = kern.raw.detach().clone()
    k = kern()
    assert k.shape == (2, 16, 256)
    torch.testing.assert_close(k, squash(kern.raw, 0.002))
    assert kern(100).shape == (2, 16, 100)
    assert torch.equal(kern.raw.detach(), raw_before)  # Squash never touches the stored weights
    k.sum().backward()
    below = raw_before.abs() < 0.002
    assert torch.equal(kern.raw.grad[below], torch.zeros_like(kern.raw.grad[below]))


def test_long_kernel_smooth_then_squash_and_dropout():
    kern = LongConvKernel(4, 32, lam=0.001, smooth_window=7, kernel_dropout=0.5)
    kern.eval()
    torch.testing.assert_close(kern(), squash(smooth(kern.raw, 7), 0.001))
    kern.train()
    assert (kern() == 0).float().mean() > (kern.eval()() == 0).float().mean()


def test_long_kernel_decay_init():
    H, L = 32, 512
    kern = LongConvKernel(H, L, init="decay")
    mag = kern.raw.detach().abs()[0]  # (H, L)
    early, late = mag[:, : L // 8].mean(-1), mag[:, -L // 4:].mean(-1)  # (H,)
    assert early[-4:].mean() > 10 * late[-4:].mean()  # the fastest channels have decayed to nothing
    assert late[:4].mean() > 5 * late[-4:].mean()  # channel 0 decays slowest
    j = torch.arange(L)
    envelope = 0.02 * torch.exp(-(j / L) * (H / 2) ** (5 / H))  # channel i = 5
    ratio = kern.raw.detach()[0, 5] / envelope
    assert abs(ratio.std().item() - 1.0) < 0.1  # randn under the envelope


def test_long_kernel_bad_arguments():
    with pytest.raises(ValueError, match=r"lam must be a finite float ≥ 0"):
        LongConvKernel(4, 16, lam=-0.1)
    with pytest.raises(ValueError, match=r"smooth_window must be None or an odd int"):
        LongConvKernel(4, 16, smooth_window=4)
    with pytest.raises(ValueError, match=r"init must be 'random' or 'decay'"):
        LongConvKernel(4, 16, init="zeros")
    with pytest.warns(UserWarning, match=r"lam=0.1 is large for the init scale"):
        LongConvKernel(4, 16, lam=0.1)
    with pytest.raises(ValueError, match=r"l_max ≥ 17"):
        LongConvKernel(4, 16)(17)


@pytest.mark.parametrize("init", ["lin", "inv"])
def test_s4d_convolution_equals_recurrence(init):
    kern = S4DKernel(3, 40, channels=2, d_state=8, init=init).double()
    u = torch.randn(2, 3, 40, dtype=torch.float64)
    k = kern()  # (C, H, L)
    y_conv = direct_conv(u, k)
    torch.testing.assert_close(fft_conv(u, k), y_conv, atol=1e-10, rtol=0)
    torch.testing.assert_close(kern.recurrence(u), y_conv, atol=1e-10, rtol=1e-10)


def test_s4d_init():
    kern = S4DKernel(64, 32, d_state=16, init="lin", dt_min=1e-3, dt_max=1e-1)
    dt = kern.log_dt.exp()
    assert (dt >= 1e-3).all() and (dt <= 1e-1).all() and dt.max() / dt.min() > 10
    torch.testing.assert_close(kern.A_imag[0], math.pi * torch.arange(8.0))
    torch.testing.assert_close(-kern.log_A_real.exp(), torch.full((64, 8), -0.5))
    inv = S4DKernel(2, 32, d_state=16, init="inv")
    torch.testing.assert_close(inv.A_imag[0, :2], torch.tensor([16 / math.pi * 15, 16 / math.pi * (16 / 3 - 1)]))
    for name in ("log_dt", "log_A_real", "A_imag"):
        assert optim_tag(kern, name) == {"weight_decay": 0.0, "lr": 1e-3}
    with pytest.raises(ValueError, match=r"d_state must be an even int"):
        S4DKernel(2, 8, d_state=7)


def test_s4d_kernel_gradcheck():
    kern = S4DKernel(2, 10, channels=2, d_state=4).double()
    params = tuple(p.detach().clone().requires_grad_() for p in (kern.log_dt, kern.log_A_real, kern.A_imag, kern.C))
    assert torch.autograd.gradcheck(lambda *p: s4d_kernel(*p, 10), params)
    with torch.no_grad():  # modes on both sides of the series/expm1 switch at |ΔA| = 1e-3 (dt = 0.01)
        params[1].copy_(torch.tensor([[-20.0, math.log(0.05)], [math.log(0.2), -3.0]]))
        params[2].zero_()
    assert torch.autograd.gradcheck(lambda *p: s4d_kernel(*p, 10), params)


def _one_mode(log_A_real, A_imag=0.0, dt=0.001315, dtype=torch.float32):
    """s4d_kernel of one channel, one mode, C = 1: K[l] = 2·Re(B̄·Ā^l)."""
    as_t = lambda x: torch.tensor(x, dtype=dtype)  # noqa: E731
    return s4d_kernel(as_t([math.log(dt)]), as_t([[log_A_real]]), as_t([[A_imag]]), as_t([[[[1.0, 0.0]]]]), 4)[0, 0]


@pytest.mark.parametrize("log_A_real", [-20.0, -104.0, -200.0])
def test_s4d_mode_with_re_A_near_zero_keeps_its_limit_in_fp32(log_A_real):
    """Issue 14: (exp(ΔA) − 1)/A gave 0.0 per tap at log_A_real = −20 in fp32 (the mode vanished) and NaN at ≤ −104
    (A underflows to 0). The limit ΔA → 0 is B̄ = Δ, so K = 2Δ = 0.00263 per tap at Δ = 0.001315."""
    k32, k64 = _one_mode(log_A_real), _one_mode(log_A_real, dtype=torch.float64)
    assert torch.isfinite(k32).all()
    torch.testing.assert_close(k64, torch.full((4,), 2 * 0.001315, dtype=torch.float64), rtol=1e-9, atol=0)
    torch.testing.assert_close(k32.double(), k64, rtol=1e-6, atol=0)
    osc32, osc64 = _one_mode(log_A_real, math.pi), _one_mode(log_A_real, math.pi, dtype=torch.float64)  # Im A ≠ 0
    torch.testing.assert_close(osc32.double(), osc64, rtol=1e-5, atol=1e-9)


def test_s4d_kernel_fp32_matches_fp64_over_the_whole_range_of_A():
    """Every mode from Re A = −e^3 to −e^-120, Im A from 0 to 100, dt from 1e-4 to 1: fp32 within a few ulps of fp64
    (relative to each channel's largest tap), the small-|ΔA| series and expm1 branches alike."""
    g = torch.Generator().manual_seed(0)
    H, N, L = 64, 8, 50
    log_dt = torch.empty(H, dtype=torch.float64).uniform_(math.log(1e-4), 0.0, generator=g)
    log_A_real = torch.empty(H, N, dtype=torch.float64).uniform_(-120.0, 3.0, generator=g)
    A_imag = torch.empty(H, N, dtype=torch.float64).uniform_(0.0, 100.0, generator=g)
    A_imag[:, :2] = 0.0  # real modes, the ones that vanished
    C = torch.randn(2, H, N, 2, dtype=torch.float64, generator=g)
    k64 = s4d_kernel(log_dt, log_A_real, A_imag, C, L)
    k32 = s4d_kernel(log_dt.float(), log_A_real.float(), A_imag.float(), C.float(), L).double()
    assert torch.isfinite(k32).all()
    err = ((k32 - k64).abs().amax(-1) / k64.abs().amax(-1)).max().item()
    assert err < 1e-4, err


def test_s4d_recurrence_equals_convolution_with_re_A_near_zero():
    kern = S4DKernel(2, 16, d_state=4).double()
    with torch.no_grad():
        kern.log_A_real.copy_(torch.tensor([[-20.0, -150.0], [math.log(0.5), -104.0]], dtype=torch.float64))
        kern.A_imag[:, 0] = 0.0
    u = torch.randn(3, 2, 16, dtype=torch.float64)
    torch.testing.assert_close(kern.recurrence(u)[:, 0], direct_conv(u, kern()[0]), atol=1e-12, rtol=1e-10)


@pytest.mark.parametrize("kernel, kw", [("long", {"lam": 0.0}), ("long", {}), ("s4d", {"d_state": 8})])
def test_longconv_is_causal(kernel, kw):
    torch.manual_seed(1)
    layer = LongConv(6, 32, channels=2, kernel=kernel, **kw).double().eval()
    if kernel == "long":
        with torch.no_grad():
            layer.kernel.raw.normal_(0, 0.05)  # non-zero taps at every lag after Squash
    u = torch.randn(2, 32, 6, dtype=torch.float64)
    y = layer(u)
    assert y.shape == u.shape
    for t in (0, 13, 30):
        v = u.clone()
        v[:, t + 1:] += torch.randn_like(v[:, t + 1:])
        y2 = layer(v)
        torch.testing.assert_close(y2[:, : t + 1], y[:, : t + 1], atol=1e-12, rtol=0)
        assert (y2[:, t + 1:] - y[:, t + 1:]).abs().max() > 1e-6  # and the future does change


def test_longconv_bidirectional_sees_the_future():
    layer = LongConv(4, 16, channels=2, bidirectional=True, lam=0.0).double().eval()
    assert layer.kernel.raw.shape == (4, 4, 16)  # 2C kernel channels
    u = torch.randn(1, 16, 4, dtype=torch.float64)
    v = u.clone()
    v[:, -1] += 1.0
    assert (layer(v)[:, 0] - layer(u)[:, 0]).abs().max() > 1e-8


def test_longconv_matches_written_out_forward():
    layer = LongConv(5, 24, channels=2, lam=0.001).double().eval()
    u = torch.randn(3, 20, 5, dtype=torch.float64)  # L < l_max
    k = squash(layer.kernel.raw, 0.001)[..., :20]  # (C, H, L)
    y = direct_conv(u.transpose(1, 2), k) + u.transpose(1, 2)[:, None] * layer.D[..., None]  # (B, C, H, L)
    y = torch.nn.functional.gelu(y.reshape(3, 10, 20).transpose(1, 2))  # (B, L, C·H)
    y = torch.nn.functional.glu(layer.output_linear(y), dim=-1)  # (B, L, H)
    torch.testing.assert_close(layer(u), y, atol=1e-10, rtol=0)


def test_longconv_bad_input():
    layer = LongConv(4, 16)
    with pytest.raises(ValueError, match=r"l_max ≥ 17 or crop the input"):
        layer(torch.randn(1, 17, 4))
    with pytest.raises(ValueError, match=r"\(B, L, H=4\) batch-first"):
        layer(torch.randn(1, 4, 16))
    with pytest.raises(ValueError, match=r"backend must be one of"):
        LongConv(4, 16, backend="cuda")
    with pytest.raises(ValueError, match=r"kernel must be 'long' or 's4d'"):
        LongConv(4, 16, kernel="ssm")


def test_triton_backend_missing_is_a_clear_error(monkeypatch):
    monkeypatch.setitem(sys.modules, "lconv.kernels", None)  # `import lconv.kernels` now fails
    with pytest.raises(ImportError, match=r"backend='torch'"):
        LongConv(4, 16, backend="triton")
    layer = LongConv(4, 16, backend="auto")  # falls back to torch
    torch.testing.assert_close(layer(torch.randn(2, 16, 4)).shape, torch.Size([2, 16, 4]))


@pytest.mark.parametrize("L", [20, 200])
def test_triton_backend_matches_torch(L):
    """backend='triton' (FlashButterfly; the Triton interpreter on CPU) equals the torch path, forward and backward."""
    pytest.importorskip("triton")
    torch.manual_seed(0)
    ref = LongConv(4, 256, channels=2, backend="torch")
    tri = LongConv(4, 256, channels=2, backend="triton")
    tri.load_state_dict(ref.state_dict())
    u = torch.randn(2, L, 4)
    y_ref, y_tri = ref(u), tri(u)
    torch.testing.assert_close(y_tri, y_ref, atol=1e-5, rtol=1e-4)
    y_ref.square().sum().backward()
    y_tri.square().sum().backward()
    torch.testing.assert_close(tri.kernel.raw.grad, ref.kernel.raw.grad, atol=1e-5, rtol=1e-4)
    assert ref.kernel.raw.grad.abs().max() > 0


def test_register_param_and_optimizer_groups():
    model = torch.nn.Sequential(torch.nn.LayerNorm(8), LongConv(8, 16, lr=5e-4))
    assert optim_tag(model[1].kernel, "raw") == {"weight_decay": 0.0, "lr": 5e-4}
    groups = optimizer_groups(model, lr=1e-2, weight_decay=0.05)
    by_id = {id(p): g for g in groups for p in g["params"]}
    assert by_id[id(model[1].kernel.raw)]["lr"] == 5e-4 and by_id[id(model[1].kernel.raw)]["weight_decay"] == 0.0
    assert by_id[id(model[1].output_linear.weight)]["weight_decay"] == 0.05
    assert by_id[id(model[1].output_linear.weight)]["lr"] == 1e-2
    for p in (model[1].output_linear.bias, model[0].weight, model[0].bias):
        assert by_id[id(p)]["weight_decay"] == 0.0
    assert len(by_id) == len(list(model.parameters()))  # every parameter in exactly one group
    m = torch.nn.Module()
    register_param(m, "w", torch.zeros(3), lr=None, weight_decay=0.1)
    assert optim_tag(m, "w") == {"weight_decay": 0.1}
    assert optimizer_groups(m, 1e-3, 0.0)[0]["lr"] == 1e-3  # untagged lr falls back to the global one


def test_make_optimizer_schedule():
    model = LongConv(4, 16, lr=1e-3)
    opt, sched = make_optimizer(model, lr=1e-2, weight_decay=0.05, warmup_steps=4, total_steps=20)
    assert isinstance(opt, torch.optim.AdamW)
    kernel_group = next(g for g in opt.param_groups if any(p is model.kernel.raw for p in g["params"]))
    lrs, klrs = [], []
    for _ in range(20):
        lrs.append(opt.param_groups[0]["lr"])
        klrs.append(kernel_group["lr"])
        opt.step()
        sched.step()
    assert lrs[:4] == pytest.approx([2.5e-3, 5e-3, 7.5e-3, 1e-2])
    assert klrs[3] == pytest.approx(1e-3) and kernel_group["weight_decay"] == 0.0
    assert all(a >= b for a, b in zip(lrs[3:], lrs[4:])) and lrs[-1] < 1e-3
    assert cosine_with_warmup(20, 4, 20) == pytest.approx(0.0)
    with pytest.raises(ValueError, match=r"warmup_steps must be an int in 0..total_steps"):
        make_optimizer(model, 1e-2, 0.0, warmup_steps=30, total_steps=20)


def test_optimiser_tags_survive_deepcopy():
    """Per-parameter settings are kept on the module, so a deep copy (e.g. an EMA or a converted layer) keeps them."""
    import copy

    model = copy.deepcopy(LongConv(4, 16, lr=5e-4))
    groups = optimizer_groups(model, lr=1e-2, weight_decay=0.05)
    kernel_group = next(g for g in groups if any(p is model.kernel.raw for p in g["params"]))
    assert kernel_group["lr"] == 5e-4 and kernel_group["weight_decay"] == 0.0


def test_readme_drop_in_example_runs():
    """README's 'Using lconv in your own model' example, executed as printed."""
    from pathlib import Path
    text = (Path(__file__).resolve().parents[1] / "README.md").read_text()
    start = text.index("class Block(nn.Module):")
    code = text[text.rindex("```python", 0, start) + len("```python"):text.index("```", start)]
    scope = {}
    exec(compile(code, "README.md", "exec"), scope)
    assert scope["y"].shape == (8, 1024, 64) and torch.isfinite(scope["y"]).all()
