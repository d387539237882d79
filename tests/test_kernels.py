"""kernels: the fused FlashButterfly Triton kernels (interpreter on CPU) against fp64 torch.fft and lconv.butterfly.

Error criterion (forward, du, dk): max error against an fp64 reference on the same (dtype-rounded) inputs is at most
2× PyTorch's own error in that dtype (fp32 torch.fft conv of the rounded inputs, output cast to the dtype) plus
atol 1e-2 (dk: 1e-1), for u = randn·0.02 and kernels k = randn with no decay, as in flash-fft-conv's tests.
"""
import importlib.util
import subprocess
import sys

import pytest
import torch

import kernels
from kernels import conv as kconv
from lconv.butterfly import butterfly_conv

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
        err, err_torch = (o.double() - r).abs().max().item(), (b.double() - r).abs().max().item()
        assert err <= 2 * err_torch + atol, f"{name}: error {err:.3g} vs PyTorch's {err_torch:.3g} ({dtype}, N={N})"
        # and a tighter check of our own, so bugs smaller than the shared atol still fail: a few ulps of the dtype
        assert err <= 4 * err_torch + 4 * EPS[dtype] * r.abs().max().item(), f"{name}: error {err:.3g} ({dtype})"
    return ours


# Every N with causal (odd L = N/2 - 1) and circular (L = N) lengths, fp32 and fp16, plus a few odd lengths,
# wrap-around ones (N/2 < L < N) among them.
CASES = [(N, L, dtype) for N in kconv.FUSED_N for L in (N // 2 - 1, N) for dtype in (torch.float32, torch.float16)]
CASES += [(256, 201, torch.float16), (512, 333, torch.float32), (1024, 101, torch.float16), (4096, 3001, torch.float16)]


@needs_triton
@pytest.mark.parametrize("N,L,dtype", CASES, ids=[f"N{n}-L{ell}-{str(d)[6:]}" for n, ell, d in CASES])
def test_forward_backward_match_fp64(N, L, dtype):
    check_against_torch(N, L, dtype)


@needs_triton
def test_odd_batch_and_short_kernel():
    """B odd (last pair has no partner) and Lk < L (k zero-padded): dk comes back as (H, Lk)."""
    _, _, dk = check_against_torch(512, 255, torch.float16, B=3, H=2, Lk=100)
    assert dk.shape == (2, 100)


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
    ref = butterfly_conv(u, k, 1024)  # same factors, packing, scaling and k_f, in fp32
    tol = 1e-6 if dtype == torch.float32 else 3e-3
    torch.testing.assert_close(y.float(), ref.float(), atol=tol, rtol=tol)


@needs_triton
def test_dk_reduction_over_many_chunks():
    """One pair per program: dk is summed over 3 chunks (the last one half empty), du rows land in the right place."""
    B, H, L, N = 5, 2, 100, 256
    u = torch.randn(B, H, L) * 0.02
    k = torch.randn(H, L)
    dy = torch.randn(B, H, L) * 0.02
    k_f = kconv.k_f_planes(k, N)
    y = kconv._fwd(u, k_f, N, pairs_per_prog=1)
    du, dk = kconv._bwd(u, dy, k_f, N, L, pairs_per_prog=1)[:2]
    y_ref, du_ref, dk_ref = conv_and_grads(lambda u, k: torch_conv(u, k, N), u.double(), k.double(), dy.double())
    torch.testing.assert_close(y.double(), y_ref, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(du.double(), du_ref, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(dk.double(), dk_ref, atol=1e-6, rtol=1e-5)
    du_only, dk_none = kconv._bwd(u, dy, k_f, N, L, need=(True, False, False, False, False, False))[:2]
    assert dk_none is None
    torch.testing.assert_close(du_only, du)


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
    torch.testing.assert_close(kernels.flash_butterfly_conv(u, k, 256, backend="reference"),
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
            "import torch, kernels\n"
            "assert not kernels.HAS_TRITON\n"
            "u, k = torch.randn(2, 3, 100), torch.randn(3, 100)\n"
            "y = kernels.FlashButterflyConv(256, dtype=torch.float32)(u, k)\n"
            "ref = torch.fft.irfft(torch.fft.rfft(u, n=256) * torch.fft.rfft(k, n=256), n=256)[..., :100]\n"
            "assert (y - ref).abs().max() < 1e-4\n")
    run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert run.returncode == 0, run.stderr


@needs_triton
def test_large_n_dispatches_to_three_pass_when_present():
    """N > 4096 goes to kernels.three_pass (ENGINEER B's module); SUPPORTED_N lists its sizes only when it exists."""
    if importlib.util.find_spec("kernels.three_pass") is None:
        assert kernels.SUPPORTED_N == kconv.FUSED_N
        with pytest.raises(ValueError, match="supported N.*4096\\]"):
            kernels.FlashButterflyConv(8192)
        pytest.skip("kernels.three_pass is not there")
    assert kernels.SUPPORTED_N[-1] == 2 ** 20 and 8192 in kconv.supported_n()
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
