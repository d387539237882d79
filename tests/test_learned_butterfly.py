"""Learned Butterfly: the reference against fft_conv and a dense N×N matrix, the module, the layer, the Triton path."""
import pytest
import torch

from lconv.butterfly import default_sizes, dft_matrix
from lconv.conv import fft_conv
from lconv.layers import LongConv, optim_tag
from lconv.train import optimizer_groups
from lconv.kernels.io_model import block_flops, conv_flops
from lconv.backend import triton_available
from lconv.butterfly import learned_butterfly_conv, learned_transform, learned_transform_matrix
from lconv.learned_butterfly import (LearnedButterfly, LearnedButterflyLongConv, butterfly_modules, butterfly_params,
                                     use_learned_butterfly)
from lconv.models import SequenceClassifier


def _blocks(N, H=None, noise=0.3, dtype=torch.complex128):
    """Random blocks near the DFT: (N1, N1), (N2, N2), or one pair per channel when H is given."""
    lead = () if H is None else (H,)
    out = []
    for n in default_sizes(N):
        F = dft_matrix(n, dtype=dtype).expand(*lead, n, n)
        out.append(F + noise * torch.randn(*lead, n, n, dtype=dtype))
    return out


def _dense_conv(u, k, N, dft1, dft2):
    """Naive dense reference: y = Re(F^{-1} · diag(F k) · M · u_pad)[:L], M the learned transform as an N×N matrix."""
    L = u.shape[-1]
    u_pad = torch.nn.functional.pad(u, (0, N - L)).to(torch.complex128)  # (B, H, N)
    M = learned_transform_matrix(N, dft1, dft2)  # (N, N) or (H, N, N)
    Z = torch.einsum("...fn,bhn->bhf", M, u_pad) if M.dim() == 2 else torch.einsum("hfn,bhn->bhf", M, u_pad)
    k_f = torch.nn.functional.pad(k, (0, N - k.shape[-1])).to(torch.complex128) @ dft_matrix(N)  # (H, N)
    y = (Z * k_f) @ dft_matrix(N, inverse=True)  # (B, H, N)
    return y.real[..., :L]


@pytest.mark.parametrize("N, L, Lk", [(16, 7, 7), (32, 13, 9), (64, 32, 32), (256, 101, 101), (512, 255, 200)])
def test_equals_fft_conv_at_dft_init(N, L, Lk):
    u = torch.randn(3, 4, L, dtype=torch.float64)
    k = torch.randn(4, Lk, dtype=torch.float64)
    N1, N2 = default_sizes(N)
    y = learned_butterfly_conv(u, k, N, dft_matrix(N1), dft_matrix(N2))
    torch.testing.assert_close(y, fft_conv(u, k), rtol=0, atol=1e-12)
    k3 = torch.randn(2, 4, Lk, dtype=torch.float64)  # (C, H, Lk) → (B, C, H, L)
    y3 = learned_butterfly_conv(u, k3, N, dft_matrix(N1), dft_matrix(N2))
    torch.testing.assert_close(y3, fft_conv(u, k3), rtol=0, atol=1e-12)


def test_transform_matrix_is_dft_at_init_and_matches_transform():
    N = 64
    N1, N2 = default_sizes(N)
    torch.testing.assert_close(learned_transform_matrix(N, dft_matrix(N1), dft_matrix(N2)), dft_matrix(N),
                               rtol=0, atol=1e-12)
    dft1, dft2 = _blocks(N, H=3)
    x = torch.randn(2, 3, N, dtype=torch.complex128)
    M = learned_transform_matrix(N, dft1, dft2)  # (H, N, N)
    torch.testing.assert_close(learned_transform(x, N, dft1, dft2), torch.einsum("hfn,bhn->bhf", M, x))


@pytest.mark.parametrize("per_channel", [False, True])
def test_values_and_gradients_match_dense_reference(per_channel):
    N, L, H = 32, 11, 3
    u = torch.randn(2, H, L, dtype=torch.float64, requires_grad=True)
    k = torch.randn(H, 9, dtype=torch.float64, requires_grad=True)
    dft1, dft2 = (b.requires_grad_() for b in _blocks(N, H if per_channel else None))
    dy = torch.randn(2, H, L, dtype=torch.float64)
    grads = []
    for fn in (learned_butterfly_conv, _dense_conv):
        y = fn(u, k, N, dft1, dft2)
        grads.append((y, *torch.autograd.grad(y, (u, k, dft1, dft2), dy)))
    for ours, dense in zip(*grads):
        torch.testing.assert_close(ours, dense, rtol=1e-10, atol=1e-10)


@pytest.mark.parametrize("per_channel", [False, True])
def test_gradcheck_fp64(per_channel):
    N, L, H = 16, 5, 2
    u = torch.randn(2, H, L, dtype=torch.float64, requires_grad=True)
    k = torch.randn(H, L, dtype=torch.float64, requires_grad=True)
    dft1, dft2 = (b.requires_grad_() for b in _blocks(N, H if per_channel else None))
    assert torch.autograd.gradcheck(lambda *a: learned_butterfly_conv(*a[:2], N, *a[2:]), (u, k, dft1, dft2),
                                    fast_mode=per_channel)  # per channel: a random projection, to stay fast


def test_per_channel_blocks_act_on_their_channel_only():
    N, L, H = 32, 10, 3
    dft1, dft2 = _blocks(N, H)
    u = torch.randn(2, H, L, dtype=torch.float64)
    k = torch.randn(H, L, dtype=torch.float64)
    y = learned_butterfly_conv(u, k, N, dft1, dft2)
    for h in range(H):
        y_h = learned_butterfly_conv(u[:, h:h + 1], k[h:h + 1], N, dft1[h], dft2[h])
        torch.testing.assert_close(y[:, h:h + 1], y_h)


def test_batch_rows_do_not_interact_with_learned_blocks():
    """A learned T breaks the real-input pair trick; the reference must keep rows independent (and y real)."""
    N = 32
    dft1, dft2 = _blocks(N)
    u = torch.randn(2, 2, 12, dtype=torch.float64)
    k = torch.randn(2, 12, dtype=torch.float64)
    y = learned_butterfly_conv(u, k, N, dft1, dft2)
    u2 = u.clone()
    u2[1] = torch.randn_like(u2[1])
    torch.testing.assert_close(learned_butterfly_conv(u2, k, N, dft1, dft2)[0], y[0], rtol=0, atol=0)
    assert not y.is_complex()


def test_bad_inputs_raise_value_error():
    N1, N2 = default_sizes(32)
    u, k = torch.randn(2, 3, 10), torch.randn(3, 10)
    d1, d2 = dft_matrix(N1, dtype=torch.complex64), dft_matrix(N2, dtype=torch.complex64)
    with pytest.raises(ValueError, match="power of two"):
        learned_butterfly_conv(u, k, 24, d1, d2)
    with pytest.raises(ValueError, match="view_as_complex"):
        learned_butterfly_conv(u, k, 32, d1.real, d2)
    with pytest.raises(ValueError, match=r"\(4, 4\)"):
        learned_butterfly_conv(u, k, 32, dft_matrix(8), d2)
    with pytest.raises(ValueError, match="H=3"):
        learned_butterfly_conv(u, k, 32, d1.expand(2, N1, N1), d2)
    with pytest.raises(ValueError, match="≤ N"):
        learned_butterfly_conv(torch.randn(2, 3, 40), k, 32, d1, d2)
    with pytest.raises(ValueError, match="channels"):
        learned_butterfly_conv(u, torch.randn(4, 10), 32, d1, d2)
    with pytest.raises(ValueError, match="init"):
        LearnedButterfly(32, init="eye")
    with pytest.raises(ValueError, match="causal"):
        LearnedButterflyLongConv(8, 16, bidirectional=True)


def test_module_stores_real_pairs_with_own_lr_and_no_weight_decay():
    bf = LearnedButterfly(64, lr=5e-4)
    N1, N2 = default_sizes(64)
    assert bf.dft1.shape == (N1, N1, 2) and bf.dft2.shape == (N2, N2, 2)
    assert optim_tag(bf, "dft1") == {"lr": 5e-4, "weight_decay": 0.0}
    assert butterfly_params(64) == sum(p.numel() for p in bf.parameters())
    bf = bf.double()
    assert bf.dft1.dtype == torch.float64 and bf.blocks()[0].dtype == torch.complex128
    bf.reset_parameters()  # exact DFT in fp64
    torch.testing.assert_close(bf.blocks()[0], dft_matrix(N1), rtol=0, atol=1e-15)
    assert bf.distance_from_dft()["transform"] < 1e-13
    torch.testing.assert_close(bf.tone_response(), torch.eye(64, dtype=torch.complex128), rtol=0, atol=1e-12)
    noisy = LearnedButterfly(64, channels=5, init="dft+noise", noise=0.01)
    assert noisy.dft1.shape == (5, N1, N1, 2)
    assert 0.003 < noisy.distance_from_dft()["dft1"] < 0.03


def test_layer_equals_long_conv_at_init_fp64():
    torch.manual_seed(0)
    conv = LongConv(6, 40, channels=2, lam=0.0).double()
    learned = LearnedButterflyLongConv.from_long_conv(conv, per_channel=True).double()
    learned.butterfly.reset_parameters()  # exact DFT blocks in fp64
    assert learned.butterfly.N == 128
    u = torch.randn(3, 37, 6, dtype=torch.float64)  # odd L < l_max
    torch.testing.assert_close(learned(u), conv(u), rtol=0, atol=1e-12)
    assert optim_tag(learned.kernel, "raw") == optim_tag(conv.kernel, "raw") is not None  # tags survive the copy


def test_layer_trains_one_step_with_its_own_param_group():
    torch.manual_seed(0)
    model = SequenceClassifier(d_input=1, n_classes=3, d_model=8, n_layers=2, l_max=30, mixer="longconv",
                               prenorm=False, lam=0.0)
    use_learned_butterfly(model, butterfly_lr=3e-3, butterfly_init="dft+noise")
    bfs = butterfly_modules(model)
    assert len(bfs) == 2 and not torch.equal(bfs[0].dft1, bfs[1].dft1)  # each layer draws its own noise
    groups = optimizer_groups(model, lr=1e-2, weight_decay=0.1)
    (group,) = [g for g in groups if any(p is bfs[0].dft1 for p in g["params"])]
    assert group["lr"] == 3e-3 and group["weight_decay"] == 0.0
    assert {id(p) for p in group["params"]} == {id(p) for m in bfs for p in m.parameters()}
    before = [p.detach().clone() for m in bfs for p in m.parameters()]
    opt = torch.optim.AdamW(groups, lr=1e-2, weight_decay=0.1)
    x, y = torch.randn(4, 30, 1), torch.randint(0, 3, (4,))
    loss = torch.nn.functional.cross_entropy(model(x), y)
    loss.backward()
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for m in bfs for p in m.parameters())
    opt.step()
    after = [p.detach() for m in bfs for p in m.parameters()]
    assert all(not torch.equal(a, b) for a, b in zip(before, after))
    assert torch.isfinite(loss)


def test_flop_count_does_not_depend_on_block_values():
    from torch.utils.flop_counter import FlopCounterMode

    from lconv.butterfly import monarch_fft

    N = 256
    x = torch.randn(3, 2, N, dtype=torch.complex64)
    counts = []
    for fn in (lambda: monarch_fft(x, default_sizes(N), permuted=True),  # fixed DFT blocks
               lambda: learned_transform(x, N, *(b.to(torch.complex64) for b in _blocks(N)))):  # learned blocks
        with FlopCounterMode(display=False) as counter:
            fn()
        counts.append(counter.get_total_flops())
    assert counts[0] == counts[1] == 6 * block_flops(N) // 4  # the counter's complex matmul = 1/4
    # per row, the learned kernel (full-length real-input transforms) costs more than the fixed half-length one
    assert conv_flops(N, 4, 1, "monarch") < conv_flops(N, 4, 1, "learned")


@pytest.mark.skipif(not triton_available(), reason="kernels cannot be imported here (no Triton)")
@pytest.mark.parametrize("per_channel", [False, True])
def test_triton_path_matches_reference_forward_and_backward(per_channel):
    from lconv.kernels import INTERPRET, flash_butterfly_conv

    if not (INTERPRET or torch.cuda.is_available()):
        pytest.skip("needs the Triton interpreter (TRITON_INTERPRET=1 before `import lconv.kernels`) or a GPU")
    N, H, L = 256, 2, 100
    dev = "cuda" if torch.cuda.is_available() else "cpu"
    dft1, dft2 = (b.to(torch.complex64).to(dev).requires_grad_()
                  for b in _blocks(N, H if per_channel else None, noise=0.05))
    u = torch.randn(3, H, L, device=dev, requires_grad=True)  # odd B: a row without a partner
    k = (0.1 * torch.randn(H, L, device=dev)).requires_grad_()
    dy = torch.randn(3, H, L, device=dev)
    outs = []
    for fn in (lambda: flash_butterfly_conv(u, k, N, dft1=dft1, dft2=dft2),
               lambda: learned_butterfly_conv(u, k, N, dft1, dft2)):
        y = fn()
        outs.append((y, *torch.autograd.grad(y, (u, k, dft1, dft2), dy)))
    for name, ours, ref in zip(("y", "du", "dk", "ddft1", "ddft2"), *outs):
        scale = ref.abs().max().item()
        assert (ours - ref).abs().max().item() <= 1e-4 * max(1.0, scale), name


@pytest.mark.skipif(not triton_available(), reason="kernels cannot be imported here (no Triton)")
def test_layer_triton_backend_matches_torch_backend():
    from lconv import kernels
    if not (kernels.INTERPRET or torch.cuda.is_available()):
        pytest.skip("needs the Triton interpreter (TRITON_INTERPRET=1 before `import lconv.kernels`) or a GPU")
    layer = LearnedButterflyLongConv(4, 64, channels=2, backend="triton", butterfly_init="dft+noise",
                                     butterfly_noise=0.05, per_channel=True, lam=0.0)
    assert layer.butterfly.N == 256
    u = torch.randn(3, 50, 4)
    outs = []
    for backend in ("triton", "torch"):
        layer.backend = backend
        layer.zero_grad()
        y = layer(u)
        y.square().sum().backward()
        outs.append((y.detach(), layer.butterfly.dft1.grad.clone(), layer.kernel.raw.grad.clone()))
    for ours, ref in zip(*outs):
        torch.testing.assert_close(ours, ref, rtol=1e-4, atol=1e-4 * max(1.0, ref.abs().max().item()))
