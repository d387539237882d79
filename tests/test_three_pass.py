"""kernels.three_pass: the three-pass FlashButterfly (N = 8192 … 2^20) against fp64 torch.fft, plain and gated.

Error criterion (y, du, dk, dpregate, dpostgate), as in tests/test_kernels.py: max error against an fp64 reference on
the same (dtype-rounded) inputs is at most 2× PyTorch's own error in that dtype (fp32 torch.fft conv of the rounded
inputs, gates applied in the dtype, output cast to the dtype) plus atol 1e-2 (dk: 1e-1), for u = randn·0.02 and
kernels k = randn with no decay; plus a tighter few-ulps check so smaller bugs still fail.
"""
import pytest
import torch

from test_kernels import assert_error_rule, assert_isolated

from lconv import kernels
from lconv.kernels import launch as kl, three_pass as tp
from lconv.butterfly import three_pass_reference, three_pass_sizes
from lconv.conv import fft_conv

pytestmark = pytest.mark.usefixtures("kernel_device")  # compiled on a GPU, interpreted on CPU

needs_triton = pytest.mark.skipif(not (kl.HAS_TRITON and (torch.cuda.is_available() or kl.INTERPRET)),
                                  reason="Triton kernels need a GPU or TRITON_INTERPRET=1")

EPS = {torch.float32: 2.0 ** -20, torch.float16: 2.0 ** -11, torch.bfloat16: 2.0 ** -8}


def torch_conv(u, k, N, pregate=None, postgate=None):
    """postgate ⊙ first L of the N-point circular convolution of zero-padded pregate ⊙ u and k, by torch.fft."""
    v = u if pregate is None else u * pregate
    y = torch.fft.irfft(torch.fft.rfft(v.to(k.dtype), n=N) * torch.fft.rfft(k, n=N), n=N)[..., :u.shape[-1]]
    y = y.to(u.dtype)
    return y if postgate is None else y * postgate


def conv_and_grads(fn, tensors, dy):
    """Output and gradients of every input of y = fn(*tensors) with upstream gradient dy."""
    leaves = [t.detach().clone().requires_grad_() for t in tensors]
    y = fn(*leaves)
    y.backward(dy.to(y.dtype))
    return [y.detach()] + [t.grad for t in leaves]


def check_against_torch(N, L, dtype, gated, B=2, H=2, Lk=None):
    """Run the Triton path, fp64 and in-dtype torch.fft; assert the error criterion of the module docstring."""
    Lk = L if Lk is None else Lk
    u = (torch.randn(B, H, L) * 0.02).to(dtype)
    k = torch.randn(H, Lk)
    dy = (torch.randn(B, H, L) * 0.02).to(dtype)
    gates = (torch.rand(B, H, L).to(dtype), torch.rand(B, H, L).to(dtype)) if gated else ()
    names = ("y", "du", "dk", "dpregate", "dpostgate")[:3 + len(gates)]

    def ours_fn(u, k, *g):
        return kernels.three_pass_conv(u, k, N, *g, backend="triton")

    ours = conv_and_grads(ours_fn, (u, k, *gates), dy)
    ref = conv_and_grads(lambda u, k, *g: torch_conv(u, k, N, *g), [t.double() for t in (u, k, *gates)], dy)
    base = conv_and_grads(lambda u, k, *g: torch_conv(u, k, N, *g), (u, k, *gates), dy)  # PyTorch in dtype
    errors = {}
    for name, o, r, b in zip(names, ours, ref, base):
        assert o.dtype == (torch.float32 if name == "dk" else dtype), name
        atol = 1e-1 if name == "dk" else 1e-2
        err, err_torch = (o.double() - r).abs().max().item(), (b.double() - r).abs().max().item()
        errors[name] = (err, err_torch)
        assert err <= 2 * err_torch + atol, f"{name}: error {err:.3g} vs PyTorch's {err_torch:.3g} ({dtype}, N={N})"
        assert err <= 4 * err_torch + 4 * EPS[dtype] * r.abs().max().item(), f"{name}: error {err:.3g} ({dtype})"
    return ours, errors


# ------------------------------------------------------------------------------------------------------------------
# The PyTorch reference of the algorithm (runs without Triton)
# ------------------------------------------------------------------------------------------------------------------

def test_sizes_split_every_N_into_a_dot_sized_outer_factor_and_an_on_chip_inner_conv():
    for N in kl.THREE_PASS_N:
        N0, M1, M2 = three_pass_sizes(N)
        assert N0 * M1 * M2 == N and 16 <= N0 and M1 * M2 <= 4096 and min(M1, M2) >= 16
    assert three_pass_sizes(1 << 20) == (256, 64, 64)
    assert three_pass_sizes(8192) == (16, 16, 32)


@pytest.mark.parametrize("N,L,gated", [(8192, 4095, False), (8192, 8192, True), (16384, 7001, True)])
def test_reference_equals_torch_fft_in_fp64(N, L, gated):
    u, k = torch.randn(3, 2, L, dtype=torch.float64), torch.randn(2, L, dtype=torch.float64)
    gates = (torch.rand_like(u), torch.rand_like(u)) if gated else ()
    y = three_pass_reference(u, k, N, *gates)
    torch.testing.assert_close(y, torch_conv(u, k, N, *gates), atol=1e-11, rtol=1e-11)


def test_reference_is_the_causal_linear_conv_for_L_up_to_N_over_2():
    u, k = torch.randn(2, 3, 4000, dtype=torch.float64), torch.randn(3, 1000, dtype=torch.float64)
    torch.testing.assert_close(three_pass_reference(u, k, 8192), fft_conv(u, k), atol=1e-10, rtol=1e-10)


def test_reference_backend_runs_without_triton_and_is_differentiable():
    u = torch.randn(2, 2, 300, requires_grad=True)
    k = torch.randn(2, 300, requires_grad=True)
    y = kernels.three_pass_conv(u, k, 8192, backend="torch")
    y.sum().backward()
    assert u.grad.shape == u.shape and k.grad.shape == k.shape
    torch.testing.assert_close(y, fft_conv(u, k), atol=1e-4, rtol=1e-4)


# ------------------------------------------------------------------------------------------------------------------
# The Triton kernels (interpreter on CPU)
# ------------------------------------------------------------------------------------------------------------------

CASES = [(N, L, dtype, gated) for N in (8192, 16384) for L in (N // 2 - 1, N)
         for dtype in (torch.float32, torch.float16) for gated in (False, True)]


@needs_triton
@pytest.mark.parametrize("N,L,dtype,gated", CASES,
                         ids=[f"N{n}-L{ell}-{str(d)[6:]}-{'gated' if g else 'plain'}" for n, ell, d, g in CASES])
def test_forward_backward_match_fp64(N, L, dtype, gated):
    check_against_torch(N, L, dtype, gated)


@needs_triton
@pytest.mark.slow
@pytest.mark.parametrize("N,dtype", [(1 << 18, torch.float16), (1 << 19, torch.bfloat16), (1 << 20, torch.float16)])
def test_factored_outer_dft_meets_the_error_rule(N, dtype):
    """N ≥ 256K (N0 ≥ 64): the outer N0-point DFT of passes 1 and 3 runs factored, 16 × N0/16 (the small factor 4 or 8
    as broadcast sums, 16 as a dot); y and every gradient, gated, one row (about 20–35 s each on a 2-core CPU)."""
    assert kl.outer_blocks(three_pass_sizes(N)[0])["A"] == 16
    check_against_torch(N, N // 2, dtype, gated=True, B=1, H=1)


@needs_triton
def test_odd_batch_short_kernel_and_bf16():
    """B odd, Lk < L (dk comes back as (H, Lk)), bf16 loads and stores."""
    (_, _, dk), _ = check_against_torch(8192, 3001, torch.bfloat16, gated=False, B=3, Lk=777)
    assert dk.shape == (2, 777)


@needs_triton
@pytest.mark.parametrize("dtype", [torch.float32, torch.float16])
def test_kernel_is_exactly_the_reference_algorithm(dtype):
    u = (torch.randn(3, 2, 5000) * 0.02).to(dtype)
    k = torch.randn(2, 5000)
    pre, post = torch.rand_like(u), torch.rand_like(u)
    y = kernels.three_pass_conv(u, k, 16384, pre, post, backend="triton")
    ref = three_pass_reference(u, k, 16384, pre, post)  # same factors, packing, scaling and k_f, fp32
    tol = 2e-6 if dtype == torch.float32 else 3e-3
    torch.testing.assert_close(y.float(), ref.float(), atol=tol, rtol=tol)


@needs_triton
@pytest.mark.slow
def test_dk_reduction_over_chunks_and_single_gradients():
    """One row per pass-2 program (dk summed over 5 chunks); each gradient alone."""
    B, H, L, N = 5, 1, 3000, 8192
    u, k, dy = torch.randn(B, H, L) * 0.02, torch.randn(H, L), torch.randn(B, H, L) * 0.02
    pre, post = torch.rand(B, H, L), torch.rand(B, H, L)
    k_f = tp.k_f_three_pass(k, N)
    y, w = tp._fwd(u, k_f, N, pre, post, save_w=True, rows_per_prog=1)
    du, dk, dpre, dpost = tp._bwd(u, dy, k_f, N, L, pre, post, w, need_dpre=True, need_dpost=True,
                                  rows_per_prog=1)
    ref = conv_and_grads(lambda *t: torch_conv(t[0], t[1], N, t[2], t[3]),
                         [t.double() for t in (u, k, pre, post)], dy.double())
    for name, o, r in zip(("y", "du", "dk", "dpregate", "dpostgate"), (y, du, dk, dpre, dpost), ref):
        torch.testing.assert_close(o.double(), r, atol=1e-5, rtol=1e-5, msg=name)
    torch.testing.assert_close(w.double(), torch_conv(u.double() * pre, k.double(), N), atol=1e-5, rtol=1e-5)
    only = tp._bwd(u, dy, k_f, N, L, pre, post, w, need_du=False, need_dk=True)
    assert only[0] is None and only[2] is None and only[3] is None
    torch.testing.assert_close(only[1], dk)
    only = tp._bwd(u, dy, k_f, N, L, pre, post, w, need_du=False, need_dk=False, need_dpost=True)
    assert only[:3] == (None, None, None)
    torch.testing.assert_close(only[3], dpost)
    kk = k.clone().requires_grad_()
    kernels.three_pass_conv(u, kk, N, pre, post).backward(dy)  # autograd: only dk requested, no w saved
    torch.testing.assert_close(kk.grad, dk, atol=1e-6, rtol=1e-5)


@needs_triton
@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
@pytest.mark.parametrize("gated", [False, True])
def test_issue14_raw_pixels_do_not_overflow(dtype, gated):
    """Issue 14: the three-pass kernel at N = 8192 gave NaN for u = 255, k = 0.02 in fp16 (the output, at most
    255·0.02·4096 = 20890, fits); y and every gradient, plain and gated, now meet the error rule."""
    N, L = 8192, 4096
    u = torch.full((1, 1, L), 255.0, dtype=dtype)
    k = torch.full((1, L), 0.02)
    dy = torch.full((1, 1, L), 0.01, dtype=dtype)  # every gradient fits too (dpregate = u ⊙ dv ≤ 255·1.3)
    gates = (torch.ones_like(u), (0.5 + torch.rand(1, 1, L)).to(dtype)) if gated else ()
    names = ("y", "du", "dk", "dpregate", "dpostgate")[:3 + len(gates)]
    ours = conv_and_grads(lambda u, k, *g: kernels.three_pass_conv(u, k, N, *g, backend="triton"), (u, k, *gates), dy)
    ref = conv_and_grads(lambda u, k, *g: torch_conv(u, k, N, *g), [t.double() for t in (u, k, *gates)], dy)
    base = conv_and_grads(lambda u, k, *g: torch_conv(u, k, N, *g), (u, k, *gates), dy)
    assert 20000 < ref[0].abs().max().item() < 65504  # fits fp16 (ungated: 20890; the postgate is at most 1.5)
    for name, o, r, b in zip(names, ours, ref, base):
        assert_error_rule(name, o, r, b, dtype, 1e-1 if name == "dk" else 1e-2)


@needs_triton
def test_samples_stay_in_their_sample():
    """NaN in one sample's u, a NaN in its dy, a sample 1000× its neighbour (fp16): the other samples' y and du are
    bitwise what they are alone (each row runs its own three passes; Inf and fp32/bf16: tests/test_kernels.py)."""
    B, H, L, N, dtype = 3, 1, 3000, 8192, torch.float16
    k = torch.randn(H, L)
    dy = (torch.randn(B, H, L) * 0.02).to(dtype)
    fn = lambda u: kernels.three_pass_conv(u, k, N, backend="triton")  # noqa: E731
    for poison in ("nan", "huge"):
        u = torch.randn(B, H, L) * 0.02
        if poison == "huge":
            u[1] *= 1000.0
        else:
            u[1, 0, 77] = float(poison)
        assert_isolated(fn, u.to(dtype), dy=dy, bad=1)
    d = dy.clone()
    d[0, 0, 5] = float("nan")
    assert_isolated(fn, (torch.randn(B, H, L) * 0.02).to(dtype), dy=d, bad=0)


def test_reference_is_row_by_row_over_half_the_outer_rows():
    """The reference keeps rows apart (a NaN stays in its row) and equals torch.fft for odd N0/2 + 1 row counts."""
    u, k = torch.randn(2, 2, 5000, dtype=torch.float64), torch.randn(2, 5000, dtype=torch.float64)
    u[0, 1, 9] = float("nan")
    y = three_pass_reference(u, k, 16384)
    assert torch.isnan(y[0, 1]).all() and torch.isfinite(y[1]).all() and torch.isfinite(y[0, 0]).all()
    torch.testing.assert_close(y[1], torch_conv(u[1:], k, 16384)[0], atol=1e-10, rtol=1e-10)


# ------------------------------------------------------------------------------------------------------------------
# Input checks: ValueError naming the fix
# ------------------------------------------------------------------------------------------------------------------

U, K = torch.randn(2, 3, 128), torch.randn(3, 128)
BAD = [
    (dict(N=4096), "not supported by the three-pass kernel.*8192"),
    (dict(N=10000), "supported N"),
    (dict(N=8192.0), "supported N"),
    (dict(u=U[0]), r"u must be \(B, H, L\)"),
    (dict(k=K[None]), "squeeze the leading 1"),
    (dict(k=K[:2]), "k has 2 channels but u has H=3"),
    (dict(u=torch.randn(2, 3, 9000)), "must be ≤ the FFT size N=8192"),
    (dict(u=U.double()), "cast it to torch.float32"),
    (dict(k=K.half()), r"k.float\(\)"),
    (dict(u=torch.randn(2, 128, 3).transpose(1, 2)), "contiguous"),
    (dict(pregate=torch.rand(2, 3, 127), postgate=U), "pregate must match u"),
    (dict(pregate=U, postgate=U.half()), "postgate must match u"),
    (dict(postgate=U), "both pregate and postgate or neither"),
    (dict(backend="cuda"), "backend='cuda'"),
]


@pytest.mark.parametrize("bad,match", BAD, ids=[next(iter(b)) + str(i) for i, (b, _) in enumerate(BAD)])
def test_bad_inputs_raise_value_error_naming_the_fix(bad, match):
    args = dict(u=U, k=K, N=8192, pregate=None, postgate=None, backend="torch") | bad
    with pytest.raises(ValueError, match=match):
        kernels.three_pass_conv(**args)


@needs_triton
def test_public_api_dispatches_long_fft_sizes_here():
    """kernels.FlashButterflyConv(seqlen=N > 4096) runs the three-pass kernels (wired in kernels/conv.py)."""
    from lconv import kernels
    u, k = (torch.randn(2, 2, 4000) * 0.02).half(), torch.randn(2, 4000)
    pre, post = torch.rand_like(u), torch.rand_like(u)
    y = kernels.FlashButterflyConv(8192, dtype=torch.float16)(u, k, pre, post)
    torch.testing.assert_close(y, kernels.three_pass_conv(u, k, 8192, pre, post), atol=0, rtol=0)
