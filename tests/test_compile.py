"""torch.compile(fullgraph=True) of the layers: same outputs and gradients as eager, no graph break.

A graph break or a data-dependent host sync inside a forward makes `fullgraph=True` raise, so these tests fail on
either. The NaN/Inf check of `fft_conv` is eager-only (lconv.conv.finite_check_enabled): the last tests pin that
it still raises its clear error in eager mode and is skipped where it would cost a device sync.
"""
import pytest
import torch

from lconv.conv import fft_conv, finite_check_enabled
from lconv.models import SequenceClassifier

pytestmark = pytest.mark.slow


def _classifier(mixer, **kw):
    torch.manual_seed(0)
    return SequenceClassifier(d_input=1, n_classes=10, d_model=16, n_layers=2, l_max=128, mixer=mixer,
                              prenorm=False, dropout=0.0, **kw)


def _grads(model, x, forward=None):
    """Output and parameter gradients of `forward` (default: the model itself; a compiled wrapper shares its
    parameters)."""
    model.zero_grad(set_to_none=True)
    y = (model if forward is None else forward)(x)
    y.square().sum().backward()
    return y.detach(), {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}


def _input_grads_match(f, inputs, compile_backend="aot_eager"):
    """f(*inputs) compiled whole (fullgraph) equals eager: its output and the gradient of every input."""
    y_ref = f(*inputs)
    y_ref.square().sum().backward()
    g_ref = [t.grad.clone() for t in inputs]
    for t in inputs:
        t.grad = None
    torch._dynamo.reset()
    y = torch.compile(f, backend=compile_backend, fullgraph=True)(*inputs)
    y.square().sum().backward()
    torch.testing.assert_close(y, y_ref, rtol=1e-5, atol=1e-5)
    for t, g in zip(inputs, g_ref):
        torch.testing.assert_close(t.grad, g, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("backend", ["aot_eager", "inductor"])
@pytest.mark.parametrize("mixer, kw", [("longconv", dict(lam=0.002, smooth_window=3)), ("s4d", {})],
                         ids=["longconv-squash-smooth", "s4d"])
def test_fullgraph_compile_matches_eager(backend, mixer, kw):
    model = _classifier(mixer, **kw)
    x = torch.randn(3, 128, 1, generator=torch.Generator().manual_seed(1))
    y_ref, g_ref = _grads(model, x)
    torch._dynamo.reset()
    compiled = torch.compile(model, backend=backend, fullgraph=True)
    y, g = _grads(model, x, compiled)
    torch.testing.assert_close(y, y_ref, rtol=1e-4, atol=1e-5)
    assert g.keys() == g_ref.keys()
    for name in g_ref:
        torch.testing.assert_close(g[name], g_ref[name], rtol=1e-4, atol=1e-5, msg=lambda m: f"{name}: {m}")


def test_nan_input_still_raises_in_eager():
    u, k = torch.randn(2, 4, 64), torch.randn(4, 64)
    u[1, 2, 5] = float("nan")
    with pytest.raises(ValueError, match="u contains NaN or Inf"):
        fft_conv(u, k)
    model = _classifier("longconv")
    x = torch.randn(2, 128, 1)
    x[0, 3] = float("inf")
    with pytest.raises(ValueError, match="contains NaN or Inf"):
        model(x)


def test_finite_check_policy(monkeypatch):
    monkeypatch.delenv("LCONV_CHECK_FINITE", raising=False)
    assert finite_check_enabled("cpu") and not finite_check_enabled("cuda")  # a GPU forward never syncs
    monkeypatch.setenv("LCONV_CHECK_FINITE", "1")
    assert finite_check_enabled("cuda")
    monkeypatch.setenv("LCONV_CHECK_FINITE", "0")
    assert not finite_check_enabled("cpu")
    u = torch.full((1, 2, 8), float("nan"))
    assert torch.isnan(fft_conv(u, torch.randn(2, 8))).all()  # switched off: NaN passes through, as documented
    monkeypatch.setenv("LCONV_CHECK_FINITE", "yes")
    with pytest.raises(ValueError, match="LCONV_CHECK_FINITE='yes'"):
        fft_conv(u, torch.randn(2, 8))


def test_fullgraph_compile_token_input_and_h3():
    """Token ids (ListOps-style) through an H3 mixer: the id-range check is eager-only, so the graph is whole."""
    torch.manual_seed(0)
    model = SequenceClassifier(vocab_size=20, n_classes=10, d_model=16, n_layers=2, l_max=64, mixer="h3",
                               prenorm=True)
    x = torch.randint(0, 20, (3, 64), generator=torch.Generator().manual_seed(2))
    y_ref, g_ref = _grads(model, x)
    torch._dynamo.reset()
    y, g = _grads(model, x, torch.compile(model, backend="aot_eager", fullgraph=True))
    torch.testing.assert_close(y, y_ref, rtol=1e-4, atol=1e-5)
    for name in g_ref:
        torch.testing.assert_close(g[name], g_ref[name], rtol=1e-4, atol=1e-5, msg=lambda m: f"{name}: {m}")
    with pytest.raises(ValueError, match=r"token ids must lie in \[0, 20\)"):
        model(x + 1)


def _flash_case(gated, device):
    g = torch.Generator().manual_seed(3)
    u = torch.randn(2, 4, 128, generator=g).to(device).requires_grad_()
    k = torch.randn(4, 128, generator=g).to(device).requires_grad_()
    gates = [torch.randn(2, 4, 128, generator=g).to(device).requires_grad_() for _ in range(2)] if gated else []
    return [u, k, *gates]


@pytest.mark.parametrize("backend, compile_backend", [("triton", "aot_eager"), ("triton", "inductor"),
                                                      ("torch", "aot_eager")])
@pytest.mark.parametrize("gated", [False, True], ids=["plain", "gated"])
def test_flash_butterfly_conv_fullgraph_compile(kernel_device, backend, compile_backend, gated):
    """FlashButterflyConv (B, H, L) compiled whole: the Triton path is the operator lconv::flash_butterfly_fwd."""
    from lconv.kernels import FlashButterflyConv, HAS_TRITON, INTERPRET
    if backend == "triton" and not (HAS_TRITON and (kernel_device.type == "cuda" or INTERPRET)):
        pytest.skip("needs Triton: a GPU, or TRITON_INTERPRET=1 before importing lconv.kernels")
    module = FlashButterflyConv(256, dtype=torch.float32, backend=backend)
    _input_grads_match(module, _flash_case(gated, kernel_device), compile_backend)


def test_flash_butterfly_operator_passes_opcheck(kernel_device):
    """torch.library.opcheck: schema, fake (meta) implementation and registered autograd agree with the kernel; with
    w saved by the forward (save_w) and without it (the backward recomputes w for dpostgate)."""
    from lconv.kernels import HAS_TRITON, INTERPRET
    if not (HAS_TRITON and (kernel_device.type == "cuda" or INTERPRET)):
        pytest.skip("needs Triton")
    from lconv.kernels.flash_butterfly import flash_butterfly_op
    u, k, pre, post = _flash_case(True, kernel_device)
    torch.library.opcheck(flash_butterfly_op, (u, k, None, None, 256, False))
    torch.library.opcheck(flash_butterfly_op, (u, k, pre, post, 256, True))
    torch.library.opcheck(flash_butterfly_op, (u, k, pre, post, 256, False))


@pytest.mark.parametrize("gated", [False, True], ids=["plain", "gated"])
def test_three_pass_conv_fullgraph_compile(kernel_device, gated):
    """N > 4096 compiled whole too: the three-pass path is the operator lconv::three_pass_fwd (dynamo cannot trace
    into ThreePassFn's launchers); same output and gradients as eager."""
    from lconv.kernels import FlashButterflyConv, HAS_TRITON, INTERPRET
    if not (HAS_TRITON and (kernel_device.type == "cuda" or INTERPRET)):
        pytest.skip("needs Triton: a GPU, or TRITON_INTERPRET=1 before importing lconv.kernels")
    g = torch.Generator().manual_seed(4)
    inputs = [torch.randn(1, 2, 4096, generator=g).to(kernel_device).requires_grad_() for _ in range(3 if gated else 1)]
    inputs.insert(1, torch.randn(2, 4096, generator=g).to(kernel_device).requires_grad_())  # k (H, L)
    _input_grads_match(FlashButterflyConv(8192, dtype=torch.float32), inputs)


def test_three_pass_operator_passes_opcheck(kernel_device):
    """torch.library.opcheck of lconv::three_pass_fwd: schema, fake implementation and autograd agree with the
    kernels, with and without w saved for dpostgate."""
    from lconv.kernels import HAS_TRITON, INTERPRET
    if not (HAS_TRITON and (kernel_device.type == "cuda" or INTERPRET)):
        pytest.skip("needs Triton")
    from lconv.kernels.three_pass import three_pass_op
    g = torch.Generator().manual_seed(5)
    u, pre, post = (torch.randn(1, 2, 3000, generator=g).to(kernel_device).requires_grad_() for _ in range(3))
    k = torch.randn(2, 3000, generator=g).to(kernel_device).requires_grad_()
    torch.library.opcheck(three_pass_op, (u, k, None, None, 8192, False))
    torch.library.opcheck(three_pass_op, (u, k, pre, post, 8192, True))


@pytest.mark.parametrize("per_channel,gated", [(False, False), (True, True)], ids=["shared-plain", "per-channel-gated"])
def test_learned_blocks_fullgraph_compile(kernel_device, per_channel, gated):
    """Learned Butterfly blocks compiled whole: the operator lconv::learned_butterfly_fwd takes the blocks' fp32 planes
    (traced outside it), so the complex blocks get their gradients through autograd; output and every gradient equal
    eager (FlashButterflyFn)."""
    from lconv.butterfly import default_sizes, dft_matrix
    from lconv.kernels import HAS_TRITON, INTERPRET, flash_butterfly_conv
    if not (HAS_TRITON and (kernel_device.type == "cuda" or INTERPRET)):
        pytest.skip("needs Triton: a GPU, or TRITON_INTERPRET=1 before importing lconv.kernels")
    N, H = 256, 2
    N1, N2 = default_sizes(N)
    g = torch.Generator().manual_seed(6)
    u, pre, post = (torch.randn(2, H, 128, generator=g).to(kernel_device).requires_grad_() for _ in range(3))
    k = torch.randn(H, 128, generator=g).to(kernel_device).requires_grad_()
    d1 = dft_matrix(N1).expand(H, N1, N1) if per_channel else dft_matrix(N1)
    d1 = (d1 + 0.1 * torch.randn(d1.shape, dtype=d1.dtype, generator=g)).to(kernel_device).requires_grad_()
    d2 = dft_matrix(N2).to(kernel_device).requires_grad_()
    inputs = [u, k, pre, post, d1, d2] if gated else [u, k, d1, d2]

    def f(*args):
        u, k, *rest = args
        gates, (d1, d2) = (rest[:2], rest[2:]) if gated else ((None, None), rest)
        return flash_butterfly_conv(u, k, N, *gates, dft1=d1, dft2=d2)

    _input_grads_match(f, inputs)


def test_learned_operator_passes_opcheck(kernel_device):
    """torch.library.opcheck of lconv::learned_butterfly_fwd: shared and per-channel planes, one block fixed (None)."""
    from lconv.butterfly import default_sizes, dft_matrix
    from lconv.kernels import HAS_TRITON, INTERPRET
    if not (HAS_TRITON and (kernel_device.type == "cuda" or INTERPRET)):
        pytest.skip("needs Triton")
    from lconv.kernels.flash_butterfly import learned_butterfly_op
    from lconv.kernels.launch import learned_planes
    N1, N2 = default_sizes(256)
    g = torch.Generator().manual_seed(7)
    u, pre, post = (torch.randn(2, 2, 128, generator=g).to(kernel_device).requires_grad_() for _ in range(3))
    k = torch.randn(2, 128, generator=g).to(kernel_device).requires_grad_()
    blk1 = learned_planes(dft_matrix(N1).to(kernel_device), N1).requires_grad_()  # (2, N1, N1)
    blk2 = learned_planes(dft_matrix(N2).expand(2, N2, N2).to(kernel_device), N2).requires_grad_()  # (H, 2, N2, N2)
    torch.library.opcheck(learned_butterfly_op, (u, k, None, None, blk1, blk2, 256))
    torch.library.opcheck(learned_butterfly_op, (u, k, pre, post, None, blk2, 256))


def test_one_compiled_function_serves_several_fft_sizes(kernel_device):
    """A compiled function called with a second N recompiles with N specialised (each N is its own kernels): the
    operators take `int N`, so N never reaches their fake implementations as a symbol (with `SymInt N` the
    three-pass operator's size check raised on the second N)."""
    from lconv.kernels import HAS_TRITON, INTERPRET, flash_butterfly_conv
    if not (HAS_TRITON and (kernel_device.type == "cuda" or INTERPRET)):
        pytest.skip("needs Triton")
    torch._dynamo.reset()
    compiled = torch.compile(lambda u, k, N: flash_butterfly_conv(u, k, N), backend="aot_eager", fullgraph=True)
    g = torch.Generator().manual_seed(8)
    for N in (256, 512, 8192, 16384):
        u = torch.randn(1, 1, N // 2, generator=g).to(kernel_device).requires_grad_()
        k = torch.randn(1, N // 2, generator=g).to(kernel_device).requires_grad_()
        y = compiled(u, k, N)
        y.square().sum().backward()
        torch.testing.assert_close(y, flash_butterfly_conv(u, k, N), rtol=1e-5, atol=1e-5)
