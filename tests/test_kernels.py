"""kernels: the fused FlashButterfly Triton kernels (interpreter on CPU) against fp64 torch.fft and lconv.butterfly.

Error criterion (forward, du, dk; `assert_error_rule`): max error against an fp64 reference on the same
(dtype-rounded) inputs is at most 2× PyTorch's own error in that dtype (fp32 torch.fft conv of the rounded inputs,
output cast to the dtype) plus atol 1e-2 (dk: 1e-1) — atol relative to the output's scale where that exceeds 1
(inputs with a large mean) — and, tighter, at most 4× PyTorch's error plus 4 ulps of the dtype at the output's
scale; for u = randn·0.02 and kernels k = randn with no decay, as in flash-fft-conv's tests, and for the families of
issue 14 (large means, samples of very different sizes, inputs near the dtype's limits).
"""
import os
import subprocess
import sys
import textwrap

import pytest
import torch

from lconv import kernels
from lconv.kernels import flash_butterfly as fb, launch as kl
from lconv.butterfly import real_butterfly_conv
from lconv.conv import fft_conv

pytestmark = pytest.mark.usefixtures("kernel_device")  # compiled on a GPU, interpreted on CPU

needs_triton = pytest.mark.skipif(not (kernels.HAS_TRITON and (torch.cuda.is_available() or kernels.INTERPRET)),
                                  reason="Triton kernels need a GPU or TRITON_INTERPRET=1")


EPS = {torch.float32: 2.0 ** -20, torch.float16: 2.0 ** -11, torch.bfloat16: 2.0 ** -8}


def torch_conv(u, k, N):
    """First L entries of the N-point circular convolution of zero-padded u (B, H, L) and k (H, Lk) by torch.fft."""
    return torch.fft.irfft(torch.fft.rfft(u, n=N) * torch.fft.rfft(k, n=N), n=N)[..., :u.shape[-1]]


def conv_and_grads(fn, u, k, dy):
    """y, du, dk of y = fn(u, k) with upstream gradient dy."""
    u = u.detach().clone().requires_grad_()
    k = k.detach().clone().requires_grad_()
    y = fn(u, k)
    y.backward(dy.to(y.dtype))
    return y.detach(), u.grad, k.grad


def assert_error_rule(name, o, r, b, dtype, atol):
    """The module docstring's error rule for our output o, the fp64 reference r and PyTorch's in-dtype output b."""
    assert torch.isfinite(o).all(), f"{name}: {int((~torch.isfinite(o)).sum())} non-finite values"
    scale = r.abs().max().item()
    err, err_torch = (o.double() - r).abs().max().item(), (b.double() - r).abs().max().item()
    assert err <= 2 * err_torch + atol * max(1.0, scale), f"{name}: error {err:.3g} vs PyTorch's {err_torch:.3g}"
    assert err <= 4 * err_torch + 4 * EPS[dtype] * scale, f"{name}: error {err:.3g} ({dtype}, scale {scale:.3g})"
    return err, err_torch


def check_against_torch(N, L, dtype, B=2, H=3, Lk=None, device=None):
    """Run the Triton path, fp64 and in-dtype torch.fft; assert the error criterion of the module docstring."""
    Lk = L if Lk is None else Lk
    u = (torch.randn(B, H, L, device=device) * 0.02).to(dtype)
    k = torch.randn(H, Lk, device=device)
    dy = (torch.randn(B, H, L, device=device) * 0.02).to(dtype)
    ours = conv_and_grads(lambda u, k: kernels.flash_butterfly_conv(u, k, N, backend="triton"), u, k, dy)
    ref = conv_and_grads(lambda u, k: torch_conv(u, k, N), u.double(), k.double(), dy.double())
    base = conv_and_grads(lambda u, k: torch_conv(u, k, N).to(dtype), u.float(), k, dy.float())  # PyTorch in dtype
    assert ours[0].dtype == dtype and ours[1].dtype == dtype and ours[2].dtype == torch.float32
    for name, o, r, b, atol in zip(("y", "du", "dk"), ours, ref, base, (1e-2, 1e-2, 1e-1)):
        if name == "du":
            b = b.to(dtype)  # PyTorch's du in the input dtype, like ours
        assert_error_rule(f"{name} (N={N})", o, r, b, dtype, atol)
    return ours


@pytest.mark.parametrize("N", [8, 16, 256, 512, 4096])
def test_reference_half_length_trick_equals_torch_fft_in_fp64(N):
    """lconv.butterfly.real_butterfly_conv, the kernel's algorithm in PyTorch: each row's even/odd samples as one
    N/2-point complex sequence, split into the row's spectrum at f and f + N/2, merged back. Causal, circular and odd
    lengths, fp64 to rounding; rows never mix (a NaN stays in its row); differentiable."""
    for L in (N // 2, N, N // 2 - 1):
        u, k = torch.randn(3, 2, L, dtype=torch.float64), torch.randn(2, L, dtype=torch.float64)
        torch.testing.assert_close(real_butterfly_conv(u, k, N), torch_conv(u, k, N), atol=1e-12, rtol=1e-12)
    u[1, 0, 0] = float("nan")
    y = real_butterfly_conv(u, k, N)
    assert torch.isnan(y[1, 0]).all() and torch.isfinite(y[[0, 2]]).all() and torch.isfinite(y[1, 1]).all()
    if N == 16:
        uu, kk = torch.randn(2, 2, 8, dtype=torch.float64), torch.randn(2, 8, dtype=torch.float64)
        assert torch.autograd.gradcheck(lambda a, b: real_butterfly_conv(a, b, N),
                                        (uu.requires_grad_(), kk.requires_grad_()))


# Every N with causal (odd L = N/2 - 1) and circular (L = N) lengths, fp32 and fp16, plus a few odd lengths,
# wrap-around ones (N/2 < L < N) among them.
CASES = [(N, L, dtype) for N in kl.FUSED_N for L in (N // 2 - 1, N) for dtype in (torch.float32, torch.float16)]
CASES += [(256, 201, torch.float16), (512, 333, torch.float32), (1024, 101, torch.float16), (4096, 3001, torch.float16)]


@needs_triton
@pytest.mark.parametrize("N,L,dtype", CASES, ids=[f"N{n}-L{ell}-{str(d)[6:]}" for n, ell, d in CASES])
def test_forward_backward_match_fp64(N, L, dtype):
    check_against_torch(N, L, dtype)


@needs_triton
def test_odd_batch_and_short_kernel():
    """B odd and Lk < L (k zero-padded; odd Lk: dk's last entry is an even sample): dk comes back as (H, Lk)."""
    _, _, dk = check_against_torch(512, 255, torch.float16, B=3, H=2, Lk=101)
    assert dk.shape == (2, 101)


@needs_triton
@pytest.mark.parametrize("N", [256] + ([1024, 4096] if torch.cuda.is_available() else []))
def test_bf16_meets_the_error_criterion(N):
    """bf16 through the kernel: compiled, its dots run on bf16 tensor cores; under the interpreter they run in fp32
    (bf16 tl.dot is broken there), so the CPU run checks the loads, stores and packing only, at one size."""
    check_against_torch(N, N // 2 - 1, torch.bfloat16)


@needs_triton
@pytest.mark.parametrize("dtype", [torch.float32, torch.float16])
def test_kernel_is_exactly_the_reference_algorithm(dtype):
    u = (torch.randn(3, 2, 300) * 0.02).to(dtype)
    k = torch.randn(2, 300)
    y = kernels.flash_butterfly_conv(u, k, 1024, backend="triton")
    ref = real_butterfly_conv(u, k, 1024)  # same factors, even/odd packing, scaling and k_f, in fp32
    tol = 1e-6 if dtype == torch.float32 else 3e-3
    torch.testing.assert_close(y.float(), ref.float(), atol=tol, rtol=tol)


@needs_triton
@pytest.mark.parametrize("N", [256, 1024])
def test_row_loop_knobs_change_no_bit(monkeypatch, N):
    """kernels.launch.loop_opts: several rows per iteration (a partial last iteration included: 5 rows) and the output
    gates loaded early give bitwise the same y and gradients, forward and du launches alike."""
    def run():
        torch.manual_seed(0)
        u = torch.randn(5, 2, N // 2, dtype=torch.float16, requires_grad=True)
        k = torch.randn(2, N // 2, requires_grad=True)
        gates = [torch.rand(5, 2, N // 2, dtype=torch.float16, requires_grad=True) for _ in range(2)]
        y = kernels.flash_butterfly_conv(u, k, N, *gates)
        y.backward(torch.ones_like(y))
        return [y.detach()] + [t.grad for t in (u, k, *gates)]

    base = run()
    for rows, early in ((2, False), (3, True)):
        monkeypatch.setattr(kl, "LOOP_TUNING", {(N, p): {"ROWS": rows, "EARLY_LOADS": early} for p in ("fwd", "du")})
        assert all(torch.equal(a, b) for a, b in zip(base, run())), (rows, early)


@needs_triton
def test_dk_reduction_over_many_chunks():
    """One row per program: dk is summed over 5 chunks, du rows land in the right place; one chunk gives the same dk
    (its only partial sum, returned as a view)."""
    B, H, L, N = 5, 2, 100, 256
    u = torch.randn(B, H, L) * 0.02
    k = torch.randn(H, L)
    dy = torch.randn(B, H, L) * 0.02
    k_f = kl.k_f_planes(k, N)
    y, w = fb._fwd(u, k_f, N, rows_per_prog=1, save_w=True)
    assert w is None  # w is saved for dpostgate only: no gates, no w
    du, dk = fb._bwd(u, dy, k_f, N, L, rows_per_prog=1)[:2]
    y_ref, du_ref, dk_ref = conv_and_grads(lambda u, k: torch_conv(u, k, N), u.double(), k.double(), dy.double())
    torch.testing.assert_close(y.double(), y_ref, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(du.double(), du_ref, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(dk.double(), dk_ref, atol=1e-6, rtol=1e-5)
    du_only, dk_none = fb._bwd(u, dy, k_f, N, L, need=(True, False, False, False, False, False))[:2]
    assert dk_none is None
    torch.testing.assert_close(du_only, du)
    du_none, dk_one = fb._bwd(u, dy, k_f, N, L, need=(False, True, False, False, False, False), rows_per_prog=B)[:2]
    assert du_none is None and dk_one._base is not None  # one chunk: dk is its partial sum [0], a view, no kernel
    torch.testing.assert_close(dk_one.double(), dk_ref, atol=1e-6, rtol=1e-5)


@needs_triton
def test_grad_of_u_only_and_k_only():
    u = torch.randn(2, 3, 128) * 0.02
    k = torch.randn(3, 128)
    dy = torch.randn(2, 3, 128)
    y_ref, du_ref, dk_ref = conv_and_grads(lambda u, k: torch_conv(u, k, 256), u.double(), k.double(), dy.double())
    uu = u.clone().requires_grad_()
    kernels.flash_butterfly_conv(uu, k, 256).backward(dy)
    torch.testing.assert_close(uu.grad.double(), du_ref, atol=1e-5, rtol=1e-5)
    kk = k.clone().requires_grad_()
    kernels.flash_butterfly_conv(u, kk, 256).backward(dy)
    torch.testing.assert_close(kk.grad.double(), dk_ref, atol=1e-5, rtol=1e-5)


def test_module_api_mirrors_flashfftconv():
    conv = kernels.FlashButterflyConv(512, dtype=torch.float16)
    assert conv.seqlen == 512 and "seqlen=512" in repr(conv)
    u = (torch.randn(2, 3, 256) * 0.02).half()
    k = torch.randn(3, 256)
    pre, post = torch.rand_like(u), torch.rand_like(u)
    y = conv(u, k, pregate=pre, postgate=post)
    ref = torch_conv((u * pre).double(), k.double(), 512) * post.double()
    assert y.shape == u.shape and y.dtype == torch.float16
    torch.testing.assert_close(y.double(), ref, atol=1e-2, rtol=1e-2)
    with pytest.raises(ValueError, match="built for torch.float16"):
        conv(u.float(), k)


def test_reference_backend_agrees_with_auto():
    u = torch.randn(2, 3, 100) * 0.02
    k = torch.randn(3, 100)
    torch.testing.assert_close(kernels.flash_butterfly_conv(u, k, 256, backend="torch"),
                               kernels.flash_butterfly_conv(u, k, 256), atol=1e-5, rtol=1e-5)


U, K = torch.randn(2, 3, 128), torch.randn(3, 128)
BAD = [
    (dict(N=1000), "supported N.*256, 512, 1024, 2048, 4096"),
    (dict(N=128), "supported N"),
    (dict(k=K[None]), "squeeze the leading 1: pass k as \\(H, L\\)"),
    (dict(k=torch.randn(4, 128)), "channels"),
    (dict(u=torch.randn(2, 3, 600), k=torch.randn(3, 600)), "must be ≤ the FFT size N=512"),
    (dict(u=U.double()), "cast it to torch.float32, torch.float16 or torch.bfloat16"),
    (dict(u=U.long()), "cast it to"),
    (dict(k=K.half()), "pass k as torch.float32"),
    (dict(u=torch.randn(2, 128, 3).transpose(1, 2)), "call .contiguous\\(\\)"),
    (dict(k=torch.randn(128, 3).t()), "call .contiguous\\(\\)"),
    (dict(u=U[0]), "u must be \\(B, H, L\\)"),
    (dict(k=torch.device("meta")), "same device"),
]


@pytest.mark.parametrize("bad,match", BAD, ids=[m[:24] for _, m in BAD])
def test_bad_inputs_raise_value_error_naming_the_fix(bad, match):
    args = {"u": U, "k": K, "N": 512, **bad}
    if isinstance(args["k"], torch.device):
        args["k"] = K.to(args["k"])
    with pytest.raises(ValueError, match=match):
        kernels.flash_butterfly_conv(args["u"], args["k"], args["N"])


def test_bad_module_arguments():
    with pytest.raises(ValueError, match="supported N"):
        kernels.FlashButterflyConv(seqlen=300)
    with pytest.raises(ValueError, match="dtype"):
        kernels.FlashButterflyConv(seqlen=512, dtype=torch.int8)
    with pytest.raises(ValueError, match="backend"):
        kernels.flash_butterfly_conv(U, K, 512, backend="cuda")


def test_import_without_triton_falls_back_to_reference():
    code = ("import sys; sys.modules['triton'] = None\n"
            "import torch\nfrom lconv import kernels\n"
            "assert not kernels.HAS_TRITON\n"
            "u, k = torch.randn(2, 3, 100), torch.randn(3, 100)\n"
            "y = kernels.FlashButterflyConv(256, dtype=torch.float32)(u, k)\n"
            "ref = torch.fft.irfft(torch.fft.rfft(u, n=256) * torch.fft.rfft(k, n=256), n=256)[..., :100]\n"
            "assert (y - ref).abs().max() < 1e-4\n")
    run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert run.returncode == 0, run.stderr


@needs_triton
def test_large_n_dispatches_to_three_pass_when_present():
    """N > 4096 goes to the three-pass kernels; SUPPORTED_N (a constant) lists the fused and the three-pass sizes."""
    assert kernels.SUPPORTED_N == kl.FUSED_N + kl.THREE_PASS_N
    assert kernels.SUPPORTED_N[-1] == 2 ** 20 and 8192 in kernels.SUPPORTED_N
    N, L = 8192, 4095
    u, k = torch.randn(2, 1, L) * 0.02, torch.randn(1, L)
    pre, post, dy = torch.randn_like(u), torch.randn_like(u), torch.randn_like(u) * 0.02
    for gates in ((None, None), (pre, post)):
        def ours(u, k):
            return kernels.FlashButterflyConv(N, dtype=torch.float32)(u, k, *gates)

        def ref(u, k):
            v = u if gates[0] is None else u * gates[0].double()
            return torch_conv(v, k, N) * (1.0 if gates[1] is None else gates[1].double())

        for name, o, r in zip(("y", "du", "dk"), conv_and_grads(ours, u, k, dy),
                              conv_and_grads(ref, u.double(), k.double(), dy.double())):
            assert (o.double() - r).abs().max().item() <= 1e-4 * r.abs().max().item(), name


# ------------------------------------------------------------------------------------------------------------------
# Issue 14, kind 1: reduced-precision intermediates never overflow when the exact result fits
# ------------------------------------------------------------------------------------------------------------------

def torch_in_dtype(u, k, N, dtype):
    """PyTorch's own result in the dtype: fp32 FFT conv of the rounded inputs, output cast to the dtype."""
    return torch_conv(u.float(), k.float(), N).to(dtype)


@needs_triton
@pytest.mark.parametrize("N", [512, 1024, 2048, 4096])
@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_issue14_raw_pixels_do_not_overflow(N, dtype):
    """Issue 14's input: u = 255 everywhere (raw pixel values), k = 0.02, FlashButterflyConv(2048) (fp16, the
    default dtype) gave NaN everywhere although the output (max 5224 at N = 2048) fits fp16: the spectrum product
    overflowed before the inverse pass. Forward and du (dy = 255 as well) at every fused N."""
    L = N // 2
    u = torch.full((1, 1, L), 255.0, dtype=dtype)
    k = torch.full((1, L), 0.02)
    dy = torch.full((1, 1, L), 255.0, dtype=dtype)
    uu = u.clone().requires_grad_()
    y = kernels.FlashButterflyConv(N, dtype)(uu, k)
    y.backward(dy)
    ref = fft_conv(u.double(), k.double())  # lconv's reference: 255·0.02·(t + 1)
    if N == 2048:
        assert ref.max().item() == pytest.approx(255 * 0.02 * 1024)  # 5222.4: the issue's "max 5224" in fp16
    assert_error_rule("y", y, ref, torch_in_dtype(u, k, N, dtype), dtype, 1e-2)
    du_ref = torch.fft.irfft(torch.fft.rfft(dy.double(), n=N) * torch.fft.rfft(k.double(), n=N).conj(), n=N)[..., :L]
    du_torch = torch.fft.irfft(torch.fft.rfft(dy.float(), n=N) * torch.fft.rfft(k, n=N).conj(), n=N)[..., :L]
    assert_error_rule("du", uu.grad, du_ref, du_torch.to(dtype), dtype, 1e-2)


@needs_triton
@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
@pytest.mark.parametrize("N,L", [(256, 128), (1024, 1024), (4096, 2047)])
def test_large_mean_inputs_meet_the_error_rule(N, L, dtype):
    """Other members of the kind: pixel-like u (255 − 10·rand), a positive kernel, dy with a mean; causal, circular
    and odd lengths; y, du and dk against fp64."""
    B, H = 2, 2
    u = (255 - 10 * torch.rand(B, H, L)).to(dtype)
    k = 0.02 + 0.005 * torch.randn(H, L)
    dy = (1 + 0.1 * torch.randn(B, H, L)).to(dtype)
    ours = conv_and_grads(lambda u, k: kernels.flash_butterfly_conv(u, k, N, backend="triton"), u, k, dy)
    ref = conv_and_grads(lambda u, k: torch_conv(u, k, N), u.double(), k.double(), dy.double())
    base = conv_and_grads(lambda u, k: torch_conv(u, k, N).to(dtype), u.float(), k, dy.float())
    for name, o, r, b, atol in zip(("y", "du", "dk"), ours, ref, base, (1e-2, 1e-2, 1e-1)):
        assert_error_rule(name, o, r, b.to(dtype) if name == "du" else b, dtype, atol)


@needs_triton
@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_tiny_and_huge_kernels_and_inputs(dtype):
    """The scaling follows each row and each kernel: u ~ 1e-5 (fp16 subnormals among them) with k ~ 1e4, and
    u ~ 1e3 with k ~ 1e-4, give the same relative accuracy as ordinary inputs."""
    N, L = 1024, 512
    for u_scale, k_scale in ((1e-5, 1e4), (1e3, 1e-4), (1.0, 1.0)):
        u = (torch.randn(2, 2, L) * u_scale).to(dtype)
        k = torch.randn(2, L) * k_scale
        y = kernels.flash_butterfly_conv(u, k, N, backend="triton")
        assert_error_rule(f"y at u~{u_scale}, k~{k_scale}", y, torch_conv(u.double(), k.double(), N),
                          torch_in_dtype(u, k, N, dtype), dtype, 1e-2)


@needs_triton
def test_fp16_output_overflows_only_where_the_exact_output_does():
    """y = 255·0.1·(t + 1) crosses fp16's largest value (65504) at t ≈ 2568: below it finite and right, above it
    inf, as PyTorch's fp32 result cast to fp16; intermediates never overflow first."""
    N, L = 8192 // 2, 2048  # N = 4096, causal
    u = torch.full((1, 1, L), 255.0, dtype=torch.float16)
    k = torch.full((1, L), 0.2)
    y = kernels.flash_butterfly_conv(u, k, N, backend="triton").double()[0, 0]
    exact = torch_conv(u.double(), k.double(), N)[0, 0]
    fits, over = exact < 65000, exact > 66000
    assert fits.any() and over.any()
    assert torch.isinf(y[over]).all() and torch.isfinite(y[fits]).all()
    assert (y[fits] - exact[fits]).abs().max().item() <= 4 * EPS[torch.float16] * 65504


@needs_triton
@pytest.mark.parametrize("family", ["randn", "large mean", "mixed"])
@pytest.mark.parametrize("dtype", ["float16", "bfloat16"])
def test_every_path_meets_the_error_rule_on_issue14_families(family, dtype):
    """kernels.accuracy's table, row by row: every path (fused causal / circular / gated / learned, three-pass
    causal / gated), every output and gradient, finite and within 4× PyTorch's relative error + 4 ulps; dk and the
    block gradients (fp32 outputs, PyTorch's error there is fp32's) within 8 ulps of the input dtype. "mixed" scores
    the small sample next to one 1000× larger."""
    from lconv.kernels import accuracy

    eps = EPS[accuracy.DTYPES[dtype]]
    for path in accuracy.PATHS:
        for row in accuracy.measure(path, family, accuracy.DTYPES[dtype], H=1):
            what = f"{path} {row['output']}: {row['rel_err']:.3g} (PyTorch {row['rel_err_torch']:.3g})"
            if row["output"] in ("dk", "ddft1", "ddft2"):
                assert row["rel_err"] <= 8 * eps, what
            else:
                assert row["rel_err"] <= 4 * row["rel_err_torch"] + 4 * eps, what


# ------------------------------------------------------------------------------------------------------------------
# Issue 14, kind 2: each sample's output depends only on that sample
# ------------------------------------------------------------------------------------------------------------------

def assert_isolated(fn, u, others=(), dy=None, bad=0):
    """Every sample but `bad` gets exactly (bitwise) the output, and du, it gets when run alone."""
    leaves = [u.detach().clone().requires_grad_()] + [t.detach().clone() for t in others]
    y = fn(*leaves)
    if dy is not None:
        y.backward(dy)
    for b in range(u.shape[0]):
        if b == bad:
            continue
        alone = [t[b:b + 1].detach().clone() for t in (u, *others)]
        alone[0].requires_grad_()
        y_b = fn(*alone)
        assert torch.equal(y[b:b + 1].detach(), y_b.detach()), f"sample {b}: y differs from its output alone"
        if dy is not None:
            y_b.backward(dy[b:b + 1])
            assert torch.equal(leaves[0].grad[b:b + 1], alone[0].grad), f"sample {b}: du differs from du alone"
    return y


@needs_triton
def test_issue14_nan_in_one_sample_leaves_the_other_exactly_as_alone():
    """Issue 14's input: u[0, 0, 5] = NaN made y[1, 0] all NaN (rows 2p, 2p+1 shared one complex sequence)."""
    torch.manual_seed(0)
    u = torch.randn(2, 2, 128)
    k = torch.randn(2, 128)
    u[0, 0, 5] = float("nan")
    conv = kernels.FlashButterflyConv(256, torch.float32)
    y = assert_isolated(lambda u: conv(u, k), u)
    assert torch.isfinite(y[1]).all() and torch.isfinite(y[0, 1]).all() and torch.isnan(y[0, 0]).any()


@needs_triton
@pytest.mark.parametrize("N", [256, 4096])  # 256: the broadcast-sum path (blocks below 16); 4096: tl.dot
@pytest.mark.parametrize("dtype", [torch.float32, torch.float16, torch.bfloat16])
def test_nan_inf_and_huge_samples_stay_in_their_sample(N, dtype):
    """Other members: NaN or Inf in u or in dy of one sample, and a sample 1000× its neighbour, every dtype; the
    neighbours' y and du are bitwise what they are alone (so their relative error is their error alone)."""
    B, H, L = 3, 2, N // 2
    k = torch.randn(H, L)
    dy = (torch.randn(B, H, L) * 0.02).to(dtype)
    fn = lambda u: kernels.flash_butterfly_conv(u, k, N, backend="triton")  # noqa: E731
    for poison in ("nan", "inf", "huge"):
        u = torch.randn(B, H, L) * 0.02
        if poison == "huge":
            u[1] *= 1000.0
        else:
            u[1, 0, L // 3] = float(poison)
        assert_isolated(fn, u.to(dtype), dy=dy, bad=1)
    d = dy.clone()
    d[2, 1, 7] = float("nan")  # a NaN upstream gradient in one sample
    assert_isolated(fn, (torch.randn(B, H, L) * 0.02).to(dtype), dy=d, bad=2)


# ------------------------------------------------------------------------------------------------------------------
# Issue 14, kind 3: 64-bit index arithmetic
# ------------------------------------------------------------------------------------------------------------------

if kernels.HAS_TRITON:
    import triton
    import triton.language as tl

    from lconv.kernels.flash_butterfly import _row_start

    @triton.jit
    def _offset_probe(out_ptr, b, h, H, L):
        tl.store(out_ptr, _row_start(b, h, H, L))
        tl.store(out_ptr + 1, ((b * H + h) * L).to(tl.int64))  # the 32-bit version, for contrast


@needs_triton
def test_row_offsets_are_64_bit_beyond_2_to_the_31():
    """Every kernel computes row offsets with flash_butterfly._row_start; here it is run with i32 arguments whose
    product exceeds 2^31 (B·H·L ≈ 3.4e9: e.g. H = 4096 channels at L = 2^18), beside the same arithmetic in 32 bits,
    which wraps (what three_pass's `base0 + H * L` did)."""
    b, h, H, L = 3, 4095, 4096, 1 << 18
    out = torch.zeros(2, dtype=torch.int64)
    _offset_probe[(1,)](out, b, h, H, L)
    assert out[0].item() == (b * H + h) * L > 2 ** 31
    assert out[1].item() != out[0].item()  # 32-bit arithmetic would address the wrong row


COMPILE_CHECK = textwrap.dedent(r"""
    import re, sys
    import triton
    from triton.backends.compiler import GPUTarget
    from triton.compiler import ASTSource
    from lconv.kernels import flash_butterfly as fb, launch as kl, three_pass as tp
    from lconv import butterfly

    def compile_ttir(fn, consts, opts):
        fp32_ptr = re.compile(r"^([kdtqbh]\w*|[zgv]s\d?)_ptr$")  # tables, k_f, dk, blocks; three-pass factors
        sig = {n: "constexpr" if n in consts else ("*fp32" if fp32_ptr.match(n)
               else "*fp16" if n.endswith("_ptr") else "fp32" if n.startswith("sqrt") else "i32")
               for n in fn.arg_names}
        k = triton.compile(ASTSource(fn, sig, consts), target=GPUTarget("cuda", 90, 32), options=opts)
        return k.asm["ttir"], k.metadata.shared

    f16 = {"DOT_FP32": False, "PREC": "tf32", "NORM": True}
    N1, N2 = butterfly.half_sizes(1024)
    L1, L2 = butterfly.default_sizes(1024)
    N0, M1, M2 = butterfly.three_pass_sizes(8192)
    ob = kl.outer_blocks(N0)
    oo = {"num_warps": ob.pop("num_warps"), "num_stages": ob.pop("num_stages")}
    F0 = butterfly.three_pass_sizes(1 << 20)[0]  # 256: the factored outer DFT (16 × 16)
    fb_ = kl.outer_blocks(F0)
    fo = {"num_warps": fb_.pop("num_warps"), "num_stages": fb_.pop("num_stages")}
    g = dict(GATED=True, COMPUTE_DU=True, COMPUTE_DK=True, COMPUTE_DPRE=True, COMPUTE_DPOST=True)
    cases = {
        "fused fwd": (fb.flash_butterfly_fwd_kernel, dict(f16, N1=N1, N2=N2, USE_DOT=True, **kl.LOOP_DEFAULT,
                                                          **fb.conv_flags(True, False, True, True, True)), {}),
        "fused du": (fb.flash_butterfly_fwd_kernel, dict(f16, N1=N1, N2=N2, USE_DOT=True, **kl.LOOP_DEFAULT,
                                                         **fb.conv_flags(True, True, True, True, True, True, True)), {}),
        "fused du, 2 rows per iteration, early loads": (
            fb.flash_butterfly_fwd_kernel, dict(f16, N1=N1, N2=N2, USE_DOT=True, ROWS=2, EARLY_LOADS=True,
                                                **fb.conv_flags(True, True, True, True, True, True, True)), {}),
        "fused dk": (fb.flash_butterfly_dk_kernel, dict(f16, N1=N1, N2=N2, USE_DOT=True, GATED=True), {}),
        "k_f": (fb.k_f_half_kernel, dict(N1=N1, N2=N2, USE_DOT=True), {}),
        "learned fwd": (fb.learned_fwd_kernel, dict(f16, N1=L1, N2=L2, GATED=True), {}),
        "learned bwd": (fb.learned_bwd_kernel, dict(f16, N1=L1, N2=L2, COMPUTE_DBLK=True, **g), {}),
        "pass 1": (tp.outer_fwd_kernel, dict(f16, N0=N0, M=M1 * M2, HAS_GATE=True, HAS_DGATE=True, **ob), oo),
        "pass 3": (tp.outer_adj_kernel, dict(f16, N0=N0, M=M1 * M2, HAS_GATE1=True, HAS_OUT2=True,
                                             HAS_GATE2=True, **ob), oo),
        "pass 1 factored": (tp.outer_fwd_kernel, dict(f16, N0=F0, M=4096, HAS_GATE=True, HAS_DGATE=True, **fb_),
                            fo),
        "pass 3 factored": (tp.outer_adj_kernel, dict(f16, N0=F0, M=4096, HAS_GATE1=True, HAS_OUT2=True,
                                                      HAS_GATE2=True, **fb_), fo),
        "pass 2": (tp.inner_conv_kernel, dict(f16, N0=N0, M1=M1, M2=M2, BM=ob["BM"]), {}),
        "pass 2 bwd": (tp.inner_conv_bwd_kernel, dict(f16, N0=N0, M1=M1, M2=M2, BM=ob["BM"], COMPUTE_DV=True,
                                                      COMPUTE_DK=True), {}),
    }
    for name, (fn, consts, opts) in cases.items():
        ttir, shared = compile_ttir(fn, consts, {"num_warps": 4, "num_stages": 1, **opts})
        assert shared <= 99 * 1024, f"{name}: {shared} B of shared memory, over the 99 KB of sm_86/sm_89"
        i32 = [ln.strip() for ln in ttir.splitlines() if re.search(r"arith\.muli [^:]*: i32\b", ln.strip())]
        print(f"{name}: shared {shared} B, scalar i32 multiplies: {i32}")
        assert not i32, name
""")


@pytest.mark.slow
@pytest.mark.skipif(not kernels.HAS_TRITON, reason="needs Triton")
def test_compiled_kernels_have_no_32_bit_scalar_products():
    """Compile every kernel for sm_90 (no GPU needed: Triton's bundled ptxas) and read its IR: no scalar i32
    multiply is left (offsets, strides and sizes multiply in i64; three_pass's `H * L` was one)."""
    env = {k: v for k, v in os.environ.items() if k != "TRITON_INTERPRET"}
    run = subprocess.run([sys.executable, "-c", COMPILE_CHECK], capture_output=True, text=True, timeout=600,
                         env=env, cwd=os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    if run.returncode != 0 and "AssertionError" not in run.stderr:
        pytest.skip(f"cannot compile for sm_90 here: {run.stderr.strip().splitlines()[-1][:200]}")
    assert run.returncode == 0, run.stdout + run.stderr[-2000:]


# ------------------------------------------------------------------------------------------------------------------
# Issue 14, kind 4: device limits checked before launch, device guard (mocks: no GPU needed)
# ------------------------------------------------------------------------------------------------------------------

def test_too_little_shared_memory_is_a_value_error_naming_gpu_n_and_limit(monkeypatch):
    monkeypatch.setattr(kl, "shared_memory_limit", lambda device: ("NVIDIA GeForce RTX 4090", 101376))
    with pytest.raises(ValueError, match=r"N=4096 needs 147456 bytes.*NVIDIA GeForce RTX 4090 \(cuda:0\) offers "
                                         r"101376"):
        kl.check_shared_memory(147456, torch.device("cuda", 0), 4096, "backward (learned blocks)")
    kl.check_shared_memory(101376, torch.device("cuda", 0), 4096, "backward")  # fits: no error


class _FakeKernel:
    """Stands in for a @triton.jit kernel: warmup() reports a shared-memory size, launches are recorded."""

    def __init__(self, shared, calls):
        self.shared, self.calls, self.__name__ = shared, calls, "fake_kernel"

    def warmup(self, *args, grid, **meta):
        return type("Compiled", (), {"metadata": type("Meta", (), {"shared": self.shared(meta)})()})()

    def __getitem__(self, grid):
        return lambda *args, **meta: self.calls.append((grid, meta, current[0]))


current = [None]


class _FakeDevice:
    """torch.cuda.device stand-in: records which device is current while the launch runs."""

    def __init__(self, device):
        self.device = device

    def __enter__(self):
        self.prev, current[0] = current[0], self.device

    def __exit__(self, *exc):
        current[0] = self.prev


def test_launch_checks_shared_memory_once_then_runs_on_the_tensors_device(monkeypatch):
    """A kernel that fits is compiled once (warmup, no launch), checked, and launched with its tensors' GPU current
    (here cuda:1 while cuda:0 is the default); one that does not fit raises before anything is launched."""
    monkeypatch.setattr(kl, "shared_memory_limit", lambda device: ("NVIDIA A10", 101376))
    monkeypatch.setattr(torch.cuda, "device", _FakeDevice)
    monkeypatch.setattr(kl, "_SHARED", {})
    tensor = type("CudaTensor", (), {"device": torch.device("cuda", 1), "dtype": torch.float16})()
    calls, compiled = [], []
    kernel = _FakeKernel(lambda meta: compiled.append(meta) or meta["need"], calls)
    kl.launch(kernel, (4,), (tensor, 7), {"need": 50000}, 1024, "forward")
    kl.launch(kernel, (4,), (tensor, 7), {"need": 50000}, 1024, "forward")
    assert len(compiled) == 1 and calls == [((4,), {"need": 50000}, torch.device("cuda", 1))] * 2
    with pytest.raises(ValueError, match=r"N=4096 needs 200000 bytes.*NVIDIA A10 \(cuda:1\) offers 101376"):
        kl.launch(kernel, (4,), (tensor, 7), {"need": 200000}, 4096, "backward")
    assert len(calls) == 2
    assert current[0] is None


@needs_triton
def test_backward_is_a_du_launch_and_a_dk_launch(monkeypatch):
    """The backward runs the forward kernel on dy with conj(K) (du), then the dk kernel; each only when its gradient
    is needed, and each with its own launch settings (TUNING's "du", "dk")."""
    launched = []
    real_launch = kl.launch

    def recording_launch(kernel, grid, args, meta, N, what):
        launched.append((kernel.fn.__name__ if hasattr(kernel, "fn") else kernel.__name__, meta.get("CONJ_K"),
                         meta["num_warps"], what))
        real_launch(kernel, grid, args, meta, N, what)

    B, H, L, N = 3, 2, 100, 256
    u, k, dy = torch.randn(B, H, L) * 0.02, torch.randn(H, L), torch.randn(B, H, L) * 0.02
    k_f = kl.k_f_planes(k, N)
    monkeypatch.setattr(fb, "launch", recording_launch)
    monkeypatch.setitem(kl.TUNING, N, {"fwd": {"num_warps": 2, "num_stages": 1}, "du": {"num_warps": 4,
                                       "num_stages": 1}, "dk": {"num_warps": 8, "num_stages": 1}})
    fb._bwd(u, dy, k_f, N, L)
    assert launched == [("flash_butterfly_fwd_kernel", True, 4, "backward (du)"),
                        ("flash_butterfly_dk_kernel", None, 8, "backward (dk)")]
    launched.clear()
    fb._bwd(u, dy, k_f, N, L, need=(False, True, False, False, False, False))
    assert [name for name, *_ in launched] == ["flash_butterfly_dk_kernel"]


@needs_triton
def test_fp32_rows_launch_with_at_least_fp32_min_warps(monkeypatch):
    """fp32 rows (ieee dots on fp32 operands) take at least kernels.launch.FP32_MIN_WARPS warps in every pass, fused
    and three-pass pass 2 (TUNING's 4 warps spill 37 KB per thread in the N = 4096 forward, compiled for sm_90);
    16-bit rows keep TUNING's settings."""
    for N in kl.FUSED_N:
        for pass_ in ("fwd", "du", "dk"):
            tuned = kl.TUNING[N][pass_]["num_warps"]
            assert kl.launch_opts(N, pass_, dtype=torch.float16)["num_warps"] == tuned
            assert kl.launch_opts(N, pass_, dtype=torch.bfloat16)["num_warps"] == tuned
            assert kl.launch_opts(N, pass_, dtype=torch.float32)["num_warps"] == max(tuned,
                                                                                   kl.FP32_MIN_WARPS.get(N, 0))
    warps = []
    monkeypatch.setattr(fb, "launch", lambda kernel, grid, args, meta, N, what: warps.append(meta["num_warps"]))
    for dtype in (torch.float32, torch.float16):
        fb._conv(torch.zeros(2, 2, 4096, dtype=dtype), torch.zeros(2, 2, 4096), 4096, y=torch.zeros(2, 2, 4096,
                                                                                                     dtype=dtype))
    assert warps == [16, kl.TUNING[4096]["fwd"]["num_warps"]]


def test_device_guard_makes_the_tensors_gpu_current(monkeypatch):
    monkeypatch.setattr(torch.cuda, "device", _FakeDevice)
    with kl.device_guard(type("T", (), {"device": torch.device("cuda", 3)})()):
        assert current[0] == torch.device("cuda", 3)
    with kl.device_guard(torch.zeros(1)):  # CPU: nothing to switch
        assert current[0] is None


def test_layout_and_dtype_messages_name_the_fix():
    """A batch-first u (B, L, H) and a dtype the kernels do not take get messages that say what to do."""
    fb = kernels.FlashButterflyConv(256, dtype=torch.float32, backend="torch")
    with pytest.raises(ValueError, match=r"^u \(2, 128, 4\) looks batch-first.*u\.transpose\(1, 2\)\.contiguous\(\)"):
        fb(torch.randn(2, 128, 4), torch.randn(4, 128))
    u = torch.randn(2, 128, 4).transpose(1, 2).contiguous()  # the message's fix works
    assert fb(u, torch.randn(4, 128)).shape == (2, 4, 128)
    with pytest.raises(ValueError, match=r"the kernels take float16, bfloat16 or float32") as err:
        fb(torch.randn(2, 4, 128, dtype=torch.float64), torch.randn(4, 128))
    assert "dtype=torch.float64" not in str(err.value)  # no advice to build an unsupported module
