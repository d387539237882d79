"""kernels: fused gating y = postgate ⊙ conv(pregate ⊙ u, k) and its gradients, Triton (interpreter on CPU) vs fp64.

Same error criterion as tests/test_kernels.py: max error against an fp64 reference on the same (dtype-rounded)
inputs ≤ 2× PyTorch's own error in that dtype (gates, conv output and gradients rounded to the dtype where PyTorch
would round them) + atol 1e-2 (dk: 1e-1), for u, dy = randn·0.02, gates randn, k randn with no decay.
"""
import pytest
import torch
from test_kernels import EPS, assert_error_rule, assert_isolated, needs_triton, torch_conv

from lconv import kernels
import lconv.kernels.flash_butterfly
import lconv.kernels.launch  # noqa: F401  (loads the submodule read as kernels.launch)

pytestmark = pytest.mark.usefixtures("kernel_device")  # compiled on a GPU, interpreted on CPU


def gated_and_grads(fn, u, k, pre, post, dy):
    """y, du, dk, dpregate, dpostgate of y = fn(u, k, pre, post) with upstream gradient dy."""
    leaves = [t.detach().clone().requires_grad_() for t in (u, k, pre, post)]
    y = fn(*leaves)
    y.backward(dy.to(y.dtype))
    return (y.detach(), *(t.grad for t in leaves))


def check_gated(N, L, dtype, B=2, H=2):
    """Triton vs fp64 vs PyTorch-in-dtype; returns {name: (our error, PyTorch's error)}."""
    u = (torch.randn(B, H, L) * 0.02).to(dtype)
    k = torch.randn(H, L)
    pre, post = torch.randn(B, H, L).to(dtype), torch.randn(B, H, L).to(dtype)
    dy = (torch.randn(B, H, L) * 0.02).to(dtype)

    def ours_fn(u, k, pre, post):
        return kernels.flash_butterfly_conv(u, k, N, pre, post, backend="triton")

    def torch_fn(u, k, pre, post):  # fp32 FFT conv; products and outputs rounded to the dtype like PyTorch would
        v = (u * pre).to(dtype).float()
        return (torch_conv(v, k, N).to(dtype).float() * post).to(dtype)

    ours = gated_and_grads(ours_fn, u, k, pre, post, dy)
    ref = gated_and_grads(lambda u, k, pre, post: torch_conv(u * pre, k, N) * post,
                          u.double(), k.double(), pre.double(), post.double(), dy.double())
    base = gated_and_grads(torch_fn, u.float(), k, pre.float(), post.float(), dy.float())
    names = ("y", "du", "dk", "dpregate", "dpostgate")
    errs = {}
    for name, o, r, b in zip(names, ours, ref, base):
        assert o.dtype == (torch.float32 if name == "dk" else dtype), name
        if name != "dk":
            b = b.to(dtype)  # PyTorch's gradients in the input dtype, like ours
        atol = 1e-1 if name == "dk" else 1e-2
        err, err_torch = (o.double() - r).abs().max().item(), (b.double() - r).abs().max().item()
        assert err <= 2 * err_torch + atol, f"{name}: error {err:.3g} vs PyTorch's {err_torch:.3g} ({dtype}, N={N})"
        assert err <= 4 * err_torch + 4 * EPS[dtype] * r.abs().max().item(), f"{name}: error {err:.3g} ({dtype})"
        errs[name] = (err, err_torch)
    return errs


CASES = [(N, L, dtype) for N, L in ((256, 127), (1024, 511), (1024, 301), (4096, 2047))
         for dtype in (torch.float32, torch.float16)]


@needs_triton
@pytest.mark.parametrize("N,L,dtype", CASES, ids=[f"N{n}-L{ell}-{str(d)[6:]}" for n, ell, d in CASES])
def test_gated_forward_backward_match_fp64(N, L, dtype):
    check_gated(N, L, dtype)


@needs_triton
def test_gated_odd_batch_and_bf16():
    """B odd (a chunk's last row beyond B is masked, gates too) and bf16 loads/stores."""
    check_gated(512, 255, torch.float32, B=3, H=1)
    check_gated(256, 127, torch.bfloat16, B=1, H=2)


@needs_triton
def test_gate_gradients_alone_and_chunked():
    """Only the gates need gradients; and one pair per program (dk summed over chunks) gives the same numbers."""
    B, H, L, N = 5, 2, 100, 256
    u, k = torch.randn(B, H, L) * 0.02, torch.randn(H, L)
    pre, post, dy = torch.randn(B, H, L), torch.randn(B, H, L), torch.randn(B, H, L) * 0.02
    ref = gated_and_grads(lambda u, k, pre, post: torch_conv(u * pre, k, N) * post,
                          u.double(), k.double(), pre.double(), post.double(), dy.double())
    pre_g, post_g = pre.clone().requires_grad_(), post.clone().requires_grad_()
    kernels.flash_butterfly_conv(u, k, N, pre_g, post_g).backward(dy)
    torch.testing.assert_close(pre_g.grad.double(), ref[3], atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(post_g.grad.double(), ref[4], atol=1e-5, rtol=1e-5)
    k_f = kernels.launch.k_f_planes(k, N)
    y, w = kernels.flash_butterfly._fwd(u, k_f, N, pre, post, rows_per_prog=1, save_w=True)
    du, dk, dpre, dpost, _, _ = kernels.flash_butterfly._bwd(u, dy, k_f, N, L, pre, post,
                                                             need=(True,) * 4 + (False,) * 2, rows_per_prog=1, w=w)
    for got, want in zip((y, du, dk, dpre, dpost), ref):
        torch.testing.assert_close(got.double(), want, atol=1e-5, rtol=1e-5)


def test_module_and_reference_backend_with_gates():
    u = (torch.randn(2, 3, 100) * 0.02)
    k = torch.randn(3, 100)
    pre, post = torch.randn_like(u), torch.randn_like(u)
    ref = torch_conv((u * pre).double(), k.double(), 256) * post.double()
    for backend in ("auto", "torch"):
        y = kernels.FlashButterflyConv(256, dtype=torch.float32, backend=backend)(u, k, pre, post)
        torch.testing.assert_close(y.double(), ref, atol=1e-5, rtol=1e-5)


U, K = torch.randn(2, 3, 128), torch.randn(3, 128)
BAD = [
    (dict(pregate=torch.ones_like(U)), "pass both pregate and postgate or neither: postgate is missing"),
    (dict(postgate=torch.ones_like(U)), "pregate is missing; use torch.ones_like"),
    (dict(pregate=torch.ones(2, 3, 64), postgate=torch.ones_like(U)), "pregate must match u: shape \\(2, 3, 128\\)"),
    (dict(pregate=torch.ones_like(U), postgate=torch.ones_like(U).half()), "postgate must match u.*float16"),
    (dict(pregate=torch.ones(2, 128, 3).transpose(1, 2), postgate=torch.ones_like(U)), "call .contiguous\\(\\)"),
    (dict(pregate="triton", postgate=torch.ones_like(U)), "pass backend= by keyword"),
]


@pytest.mark.parametrize("bad,match", BAD, ids=[m[:28] for _, m in BAD])
def test_bad_gates_raise_value_error_naming_the_fix(bad, match):
    with pytest.raises(ValueError, match=match):
        kernels.flash_butterfly_conv(U, K, 256, bad.get("pregate"), bad.get("postgate"))
    with pytest.raises(ValueError, match=match):
        kernels.FlashButterflyConv(256, dtype=torch.float32)(U, K, bad.get("pregate"), bad.get("postgate"))


@needs_triton
@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_issue14_gated_raw_pixels_do_not_overflow(dtype):
    """Issue 14: the gated kernel gave NaN for u = 255, k = 0.02 at N = 2048 in fp16 (output max 5224 fits)."""
    N, L = 2048, 1024
    u = torch.full((1, 2, L), 255.0, dtype=dtype)
    k = torch.full((2, L), 0.02)
    pre, post = torch.ones_like(u), (0.5 + torch.rand(1, 2, L)).to(dtype)
    dy = torch.full((1, 2, L), 2.0, dtype=dtype)
    ours = gated_and_grads(lambda u, k, a, b: kernels.flash_butterfly_conv(u, k, N, a, b, backend="triton"),
                           u, k, pre, post, dy)
    ref = gated_and_grads(lambda u, k, a, b: torch_conv(u * a, k, N) * b,
                          u.double(), k.double(), pre.double(), post.double(), dy.double())
    base = gated_and_grads(lambda u, k, a, b: (torch_conv((u * a).to(dtype).float(), k, N).to(dtype).float() * b),
                           u.float(), k, pre.float(), post.float(), dy.float())
    for name, o, r, b in zip(("y", "du", "dk", "dpregate", "dpostgate"), ours, ref, base):
        assert_error_rule(name, o, r, b if name == "dk" else b.to(dtype), dtype, 1e-1 if name == "dk" else 1e-2)


@needs_triton
@pytest.mark.parametrize("dtype", [torch.float32, torch.float16])
def test_gated_samples_stay_in_their_sample(dtype):
    """A NaN in one sample's pregate, an Inf in its postgate, or a sample 1000× its neighbour: the other samples'
    y and du are bitwise what they are alone."""
    B, H, L, N = 3, 2, 200, 512
    k = torch.randn(H, L)
    dy = (torch.randn(B, H, L) * 0.02).to(dtype)
    fn = lambda u, a, b: kernels.flash_butterfly_conv(u, k, N, a, b, backend="triton")  # noqa: E731
    for poison in ("nan pre", "inf post", "huge"):
        u, pre, post = torch.randn(B, H, L) * 0.02, torch.randn(B, H, L), torch.randn(B, H, L)
        if poison == "nan pre":
            pre[0, 1, 3] = float("nan")
        elif poison == "inf post":
            post[0, 0, 50] = float("inf")
        else:
            u[0] *= 1000.0
        assert_isolated(fn, u.to(dtype), (pre.to(dtype), post.to(dtype)), dy=dy, bad=0)


# ------------------------------------------------------------------------------------------------------------------
# Issue 20: the forward saves w = conv(pregate ⊙ u, k) for dpostgate = dy ⊙ w, only when postgate needs a gradient
# ------------------------------------------------------------------------------------------------------------------

@needs_triton
def test_w_is_saved_only_when_postgate_needs_a_gradient(monkeypatch):
    """flash_butterfly_conv asks the forward for w exactly when postgate requires grad under grad mode (eager:
    FlashButterflyFn; no grad: forward_only); the operator used under torch.compile returns w = conv(pregate ⊙ u, k)
    in u's dtype then, an empty tensor otherwise."""
    import lconv.kernels.conv as kconv

    asked = []
    fb = kernels.flash_butterfly
    real_op, real_fwd = kconv.flash_butterfly_op, fb._fwd

    def recording_fwd(*args, **kwargs):
        asked.append(kwargs.get("save_w", False))
        return real_fwd(*args, **kwargs)

    monkeypatch.setattr(fb, "_fwd", recording_fwd)
    B, H, L, N = 2, 2, 100, 256
    u, k = torch.randn(B, H, L) * 0.02, torch.randn(H, L)
    pre, post = torch.randn(B, H, L), torch.randn(B, H, L)
    kernels.flash_butterfly_conv(u, k, N, pre, post.requires_grad_())
    kernels.flash_butterfly_conv(u.requires_grad_(), k.requires_grad_(), N, pre.requires_grad_(),
                                 post.detach())  # every input but the postgate
    with torch.no_grad():
        kernels.flash_butterfly_conv(u, k, N, pre, post.requires_grad_())
    kernels.flash_butterfly_conv(u, k, N)
    assert asked == [True, False, False, False]
    u, k, pre, post = u.detach(), k.detach(), pre.detach(), post.detach()
    y, _, w = real_op(u, k, pre, post, N, True)
    torch.testing.assert_close(w.double(), torch_conv((u * pre).double(), k.double(), N), atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(y, w * post, atol=1e-6, rtol=1e-6)
    assert real_op(u, k, pre, post, N, False)[2].numel() == 0
    assert real_op(u, k, None, None, N, True)[2].numel() == 0  # no gates, no w


@needs_triton
@pytest.mark.parametrize("dtype", [torch.float32, torch.float16])
def test_dpostgate_from_saved_w_equals_the_reference(dtype):
    """dpostgate = dy ⊙ w with w saved by the forward in u's dtype: the fp32 product of the two, rounded once (as
    PyTorch's dy * w), bitwise the same when w is recomputed in the backward (w=None), and within the error rule of
    the fp64 reference."""
    B, H, L, N = 3, 2, 300, 1024
    u, k = (torch.randn(B, H, L) * 0.02).to(dtype), torch.randn(H, L)
    pre, post = torch.randn(B, H, L).to(dtype), torch.randn(B, H, L).to(dtype)
    dy = (torch.randn(B, H, L) * 0.02).to(dtype)
    k_f = kernels.launch.k_f_planes(k, N)
    y, w = kernels.flash_butterfly._fwd(u, k_f, N, pre, post, save_w=True)
    assert w.dtype == dtype and w.shape == u.shape
    need = (False, False, False, True, False, False)
    dpost = kernels.flash_butterfly._bwd(u, dy, k_f, N, L, pre, post, need=need, w=w)[3]
    assert torch.equal(dpost, dy * w)
    assert torch.equal(dpost, kernels.flash_butterfly._bwd(u, dy, k_f, N, L, pre, post, need=need)[3])  # recomputed
    w_ref = torch_conv(u.double() * pre.double(), k.double(), N)
    w_torch = torch_conv((u * pre).float(), k, N).to(dtype)  # PyTorch's conv in the dtype
    assert_error_rule("w", w, w_ref, w_torch, dtype, 1e-2)
    assert_error_rule("dpostgate", dpost, dy.double() * w_ref, dy * w_torch, dtype, 1e-2)


SUBSETS = [("u",), ("k",), ("pregate",), ("postgate",), ("u", "postgate"), ("k", "pregate"), ("pregate", "postgate")]


@needs_triton
@pytest.mark.parametrize("wanted", SUBSETS, ids=["+".join(s) for s in SUBSETS])
def test_gradients_of_some_inputs_only(wanted):
    """Any subset of u, k, pregate, postgate requiring grad: those get the fp64 reference's gradients, the others
    none (the kernels compute only what is needed: no w without postgate, no dk launch without k)."""
    B, H, L, N = 2, 2, 100, 256
    names = ("u", "k", "pregate", "postgate")
    base = dict(zip(names, (torch.randn(B, H, L) * 0.02, torch.randn(H, L), torch.randn(B, H, L),
                            torch.randn(B, H, L))))
    dy = torch.randn(B, H, L) * 0.02
    ref = gated_and_grads(lambda u, k, pre, post: torch_conv(u * pre, k, N) * post,
                          *(base[n].double() for n in names), dy.double())
    leaves = {n: t.clone().requires_grad_(n in wanted) for n, t in base.items()}
    y = kernels.flash_butterfly_conv(leaves["u"], leaves["k"], N, leaves["pregate"], leaves["postgate"])
    y.backward(dy)
    for i, n in enumerate(names):
        if n in wanted:
            torch.testing.assert_close(leaves[n].grad.double(), ref[1 + i], atol=1e-5, rtol=1e-5)
        else:
            assert leaves[n].grad is None
