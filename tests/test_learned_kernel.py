"""kernels: learned forward Butterfly blocks (dft1, dft2) in the Triton kernels vs a PyTorch autograd reference.

The operator: u's forward transform uses learned blocks A1 = dft1 (N1, N1), A2 = dft2 (N2, N2), unnormalised, in the
Monarch order Z[f1, f2] = Σ_{n1, n2} A1[f1, n1] · tw[f1, n2] · u[n1·N2 + n2] · A2[n2, f2]; k's spectrum and the inverse
FFT stay exact; y = Re(F^{-1}(F_k ⊙ Z))[:L] row by row (as the official `.real` of `ifft`). At A = DFT: the plain conv.
"""
import pytest
import torch
from test_kernels import EPS, assert_isolated, needs_triton, torch_conv

from lconv import kernels
import lconv.kernels.flash_butterfly
import lconv.kernels.launch  # noqa: F401  (loads the submodule read as kernels.launch)
from lconv.butterfly import default_sizes, dft_matrix
from lconv.butterfly import learned_butterfly_conv as learned_conv_ref  # the one reference

pytestmark = pytest.mark.usefixtures("kernel_device")  # compiled on a GPU, interpreted on CPU


def perturbed_blocks(N, H=None, scale=0.1, dtype=torch.complex64):
    """DFT blocks plus scale·(randn + i·randn), shared (M, M) or per channel (H, M, M)."""
    out = []
    for M in default_sizes(N):
        shape = (M, M) if H is None else (H, M, M)
        noise = torch.complex(torch.randn(shape), torch.randn(shape)).to(torch.complex128)
        out.append((dft_matrix(M) + scale * noise).to(dtype))
    return out


def learned_and_grads(fn, u, k, pre, post, dft1, dft2, dy):
    """Outputs and gradients of y = fn(u, k, pre, post, dft1, dft2) for every input (pre/post may be None)."""
    leaves = [None if t is None else t.detach().clone().requires_grad_() for t in (u, k, pre, post, dft1, dft2)]
    y = fn(*leaves)
    y.backward(dy.to(y.dtype))
    return (y.detach(), *(None if t is None else t.grad for t in leaves))


def ours(N, **kw):
    return lambda u, k, pre, post, d1, d2: kernels.flash_butterfly_conv(u, k, N, pre, post, dft1=d1, dft2=d2,
                                                                       backend="triton", **kw)


def ref64(N):
    def fn(u, k, pre, post, d1, d2):
        y = learned_conv_ref(u if pre is None else u * pre, k, N, d1, d2)
        return y if post is None else y * post
    return fn


def test_reference_is_the_plain_conv_at_dft_init():
    u, k = torch.randn(3, 2, 100, dtype=torch.float64), torch.randn(2, 100, dtype=torch.float64)
    N1, N2 = default_sizes(512)
    torch.testing.assert_close(learned_conv_ref(u, k, 512, dft_matrix(N1), dft_matrix(N2)), torch_conv(u, k, 512))


@needs_triton
@pytest.mark.parametrize("dtype", [torch.float32, torch.float16])
def test_dft_init_gives_the_plain_kernel_output(dtype):
    N, L = 1024, 300
    u, k = (torch.randn(3, 2, L) * 0.02).to(dtype), torch.randn(2, L)
    N1, N2 = default_sizes(N)
    plain = kernels.flash_butterfly_conv(u, k, N)
    learned = kernels.flash_butterfly_conv(u, k, N, dft1=dft_matrix(N1, dtype=torch.complex64),
                                           dft2=dft_matrix(N2, dtype=torch.complex64))
    assert learned.dtype == dtype
    tol = 2e-6 if dtype == torch.float32 else 4 * EPS[dtype]
    scale = plain.float().abs().max().item()
    assert (learned.float() - plain.float()).abs().max().item() <= tol * scale


def check_learned(N, L, B=3, H=2, per_channel=False, gated=False, only_dft1=False):
    """fp32 kernel vs fp64 autograd reference: forward and every gradient, relative to each reference's max."""
    u, k, dy = torch.randn(B, H, L) * 0.02, torch.randn(H, L), torch.randn(B, H, L) * 0.02
    pre, post = (torch.randn(B, H, L), torch.randn(B, H, L)) if gated else (None, None)
    d1, d2 = perturbed_blocks(N, H if per_channel else None)
    if only_dft1:
        d2 = None
    got = learned_and_grads(ours(N), u, k, pre, post, d1, d2, dy)
    N2 = default_sizes(N)[1]
    d2_ref = dft_matrix(N2) if d2 is None else d2.to(torch.complex128)
    want = learned_and_grads(ref64(N), u.double(), k.double(), None if pre is None else pre.double(),
                             None if post is None else post.double(), d1.to(torch.complex128), d2_ref, dy.double())
    names = ("y", "du", "dk", "dpregate", "dpostgate", "ddft1", "ddft2")
    for name, g, w in zip(names, got, want):
        if g is None:
            assert name in ("dpregate", "dpostgate") and not gated or name == "ddft2" and only_dft1, name
            continue
        assert g.shape == w.shape and g.dtype == (torch.complex64 if name.startswith("ddft") else torch.float32)
        err = (g.to(w.dtype) - w).abs().max().item()
        assert err <= 2e-5 * w.abs().max().item(), f"{name}: error {err:.3g} vs max {w.abs().max().item():.3g}"


@needs_triton
@pytest.mark.parametrize("N,L", [(256, 127), (512, 255), (2048, 700)])
def test_perturbed_blocks_match_autograd_reference(N, L):
    """N1 ≠ N2 at 512 (16·32) and 2048 (32·64): transposes and block shapes must line up."""
    check_learned(N, L)


@needs_triton
def test_per_channel_blocks_with_gates():
    check_learned(512, 200, B=2, H=3, per_channel=True, gated=True)


@needs_triton
def test_only_dft1_learned():
    check_learned(256, 128, B=1, H=2, only_dft1=True)


@needs_triton
def test_block_gradients_summed_over_chunks():
    """One row per program: dk and the block gradients are summed over 5 chunks and 3 channels by PyTorch."""
    B, H, L, N = 5, 3, 100, 256
    N1, N2 = default_sizes(N)
    u, k, dy = torch.randn(B, H, L) * 0.02, torch.randn(H, L), torch.randn(B, H, L) * 0.02
    d1, d2 = perturbed_blocks(N)
    plan = kernels.launch.get_plan(N, u.device)
    blocks = (kernels.launch.block_planes(d1, N1, plan["dft1_full"]),
              kernels.launch.block_planes(d2, N2, plan["dft2_full"]))
    k_f = kernels.launch.k_f_planes_full(k, N)
    y, _ = kernels.flash_butterfly._fwd(u, k_f, N, blocks=blocks, rows_per_prog=1)
    need = (True, True, False, False, True, True)  # du, dk, (no gates), dA1, dA2
    du, dk, _, _, g1, g2 = kernels.flash_butterfly._bwd(u, dy, k_f, N, L, blocks=blocks, need=need, rows_per_prog=1)
    want = learned_and_grads(ref64(N), u.double(), k.double(), None, None, d1.to(torch.complex128),
                             d2.to(torch.complex128), dy.double())
    got = (y, du, dk, kernels.flash_butterfly._block_grad(g1, d1, N1), kernels.flash_butterfly._block_grad(g2, d2, N2))
    for g, w in zip(got, (want[0], want[1], want[2], want[5], want[6])):
        assert (g.to(w.dtype) - w).abs().max().item() <= 2e-5 * w.abs().max().item()


@needs_triton
def test_fp16_forward():
    """fp16 u with perturbed blocks: error a few ulps of fp16 relative to the output's scale (blocks rounded too)."""
    N, L = 1024, 511
    u, k = (torch.randn(2, 2, L) * 0.02).half(), torch.randn(2, L)
    d1, d2 = perturbed_blocks(N)
    y = kernels.flash_butterfly_conv(u, k, N, dft1=d1, dft2=d2)
    want = learned_conv_ref(u.double(), k.double(), N, d1.to(torch.complex128), d2.to(torch.complex128))
    base = learned_conv_ref(u.float(), k, N, d1, d2).half()  # PyTorch in fp32, rounded to fp16 at the end
    err, err_torch = (y.double() - want).abs().max().item(), (base.double() - want).abs().max().item()
    assert y.dtype == torch.float16
    assert err <= 2 * err_torch + 1e-2
    assert err <= 8 * EPS[torch.float16] * want.abs().max().item(), f"error {err:.3g}, PyTorch's {err_torch:.3g}"


@needs_triton
@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_large_mean_input_does_not_overflow(dtype):
    """Issue 14's kind for learned blocks: u = 255 − 10·rand, k = 0.02 (output ≈ 5000 at N = 2048, L = 1024); y and
    du finite and within a few ulps of the fp64 reference at the output's scale."""
    N, L = 2048, 1024
    u, k = (255 - 10 * torch.rand(1, 2, L)).to(dtype), torch.full((2, L), 0.02)
    dy = (1 + 0.1 * torch.randn(1, 2, L)).to(dtype)
    d1, d2 = perturbed_blocks(N, scale=0.01)
    got = learned_and_grads(ours(N), u, k, None, None, d1, d2, dy)
    want = learned_and_grads(ref64(N), u.double(), k.double(), None, None, d1.to(torch.complex128),
                             d2.to(torch.complex128), dy.double())
    for name, g, w in zip(("y", "du"), got[:2], want[:2]):
        assert torch.isfinite(g).all(), name
        err = (g.double() - w).abs().max().item()
        assert err <= 8 * EPS[dtype] * w.abs().max().item(), f"{name}: error {err:.3g}, max {w.abs().max():.3g}"


@needs_triton
def test_learned_samples_stay_in_their_sample():
    """A NaN or a 1000× sample among the rows: every other row's y and du are bitwise what they are alone."""
    N, L = 512, 200
    k, dy = torch.randn(2, L), torch.randn(3, 2, L) * 0.02
    d1, d2 = perturbed_blocks(N)
    fn = lambda u: kernels.flash_butterfly_conv(u, k, N, dft1=d1, dft2=d2, backend="triton")  # noqa: E731
    for poison in ("nan", "huge"):
        u = torch.randn(3, 2, L) * 0.02
        if poison == "nan":
            u[2, 0, 9] = float("nan")
        else:
            u[2] *= 1000.0
        assert_isolated(fn, u.half(), dy=dy.half(), bad=2)


def test_auto_backend_equals_the_reference_backend():
    N, L = 256, 100
    u32, k32 = torch.randn(2, 2, L) * 0.02, torch.randn(2, L)
    d1c, d2c = perturbed_blocks(N)
    y_ref_backend = kernels.flash_butterfly_conv(u32, k32, N, dft1=d1c, dft2=d2c, backend="torch")
    y_auto = kernels.flash_butterfly_conv(u32, k32, N, dft1=d1c, dft2=d2c)
    torch.testing.assert_close(y_auto, y_ref_backend, atol=1e-5, rtol=1e-4)


U, K = torch.randn(2, 3, 100), torch.randn(3, 100)
D16 = dft_matrix(16, dtype=torch.complex64)
BAD = [
    (dict(dft1=D16.real), "dft1 must be a complex tensor"),
    (dict(dft1=D16[:8, :8]), "dft1 must be \\(16, 16\\) or per channel \\(3, 16, 16\\)"),
    (dict(dft2=torch.stack([D16] * 2)), "dft2 must be \\(16, 16\\) or per channel \\(3, 16, 16\\)"),
    (dict(dft1=D16.to("meta")), "move it with dft1.to"),
]


@pytest.mark.parametrize("bad,match", BAD, ids=[m[:24] for _, m in BAD])
def test_bad_blocks_raise_value_error_naming_the_fix(bad, match):
    with pytest.raises(ValueError, match=match):
        kernels.flash_butterfly_conv(U, K, 256, **bad)


def test_blocks_need_a_fused_size():
    with pytest.raises(ValueError, match="N"):
        kernels.flash_butterfly_conv(U, K, 8192, dft1=dft_matrix(64, dtype=torch.complex64))
