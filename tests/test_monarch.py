"""MonarchLinear equals its dense matrix, has the documented block/rank structure, counts and learns as stated."""
import pytest
import torch
from torch import nn

from lconv.monarch import MonarchLinear, MonarchMLP, monarch_params, parameter_savings, stride_permutation

SHAPES = [(16, 16, 4), (16, 64, 4), (64, 16, 4), (12, 18, 3), (24, 8, 2), (8, 8, 1), (32, 32, 4)]


def _dense_reference(layer, x):
    return x @ layer.dense().T + (0 if layer.bias is None else layer.bias)  # (..., out)


@pytest.mark.parametrize("in_f,out_f,b", SHAPES)
@pytest.mark.parametrize("bias", [True, False])
def test_forward_equals_dense(in_f, out_f, b, bias):
    layer = MonarchLinear(in_f, out_f, b, bias=bias).double()
    for shape in [(in_f,), (5, in_f), (2, 3, 7, in_f)]:
        x = torch.randn(shape, dtype=torch.float64)
        y = layer(x)
        assert y.shape == (*shape[:-1], out_f)
        torch.testing.assert_close(y, _dense_reference(layer, x), atol=1e-12, rtol=0)


@pytest.mark.parametrize("in_f,out_f,b", [(16, 64, 4), (64, 16, 4), (12, 18, 3)])
def test_grads_match_dense_autograd(in_f, out_f, b):
    layer = MonarchLinear(in_f, out_f, b).double()
    x = torch.randn(4, 5, in_f, dtype=torch.float64, requires_grad=True)
    w = torch.randn(4, 5, out_f, dtype=torch.float64)
    g_fast = torch.autograd.grad((layer(x) * w).sum(), [x, layer.R, layer.L, layer.bias])
    g_dense = torch.autograd.grad((_dense_reference(layer, x) * w).sum(), [x, layer.R, layer.L, layer.bias])
    for a, r in zip(g_fast, g_dense):
        torch.testing.assert_close(a, r, atol=1e-12, rtol=1e-12)


def test_gradcheck_tiny():
    layer = MonarchLinear(6, 9, 3).double()
    x = torch.randn(2, 6, dtype=torch.float64, requires_grad=True)
    R, L, bias = (t.detach().clone().requires_grad_() for t in (layer.R, layer.L, layer.bias))

    def f(x, R, L, bias):
        return torch.func.functional_call(layer, {"R": R, "L": L, "bias": bias}, (x,))

    assert torch.autograd.gradcheck(f, (x, R, L, bias))


def test_documented_parameter_shapes():
    d, b = 768, 4
    up, down = MonarchLinear(d, 4 * d, b), MonarchLinear(4 * d, d, b)
    assert up.R.shape == (b, d // b, d // b) and up.L.shape == (b, 4 * d // b, d // b)
    assert down.R.shape == (b, d // b, 4 * d // b) and down.L.shape == (b, d // b, d // b)


@pytest.mark.parametrize("in_f,out_f", [(8, 8), (5, 7), (9, 4)])
def test_one_block_represents_any_dense_matrix(in_f, out_f):
    """nblocks=1: both permutations are the identity and M = L·R with inner width min(in, out)."""
    layer = MonarchLinear(in_f, out_f, 1, bias=False).double()
    A = torch.randn(out_f, in_f, dtype=torch.float64)
    m = min(in_f, out_f)
    with torch.no_grad():  # A = L·R: put A in whichever factor is (out, in)-sized, the identity in the other
        if in_f <= out_f:
            layer.R.copy_(torch.eye(m, dtype=torch.float64)[None])
            layer.L.copy_(A[None])
        else:
            layer.L.copy_(torch.eye(m, dtype=torch.float64)[None])
            layer.R.copy_(A[None])
    torch.testing.assert_close(layer.dense(), A, atol=1e-14, rtol=0)
    x = torch.randn(3, in_f, dtype=torch.float64)
    torch.testing.assert_close(layer(x), x @ A.T, atol=1e-12, rtol=0)


@pytest.mark.parametrize("in_f,out_f,b", [(16, 16, 4), (16, 24, 4), (32, 32, 4), (48, 32, 4), (18, 12, 3), (8, 8, 4)])
def test_block_structure_and_ranks(in_f, out_f, b):
    """Factors are block-diagonal; the (out block l, in block k) sub-matrix of M has the documented rank."""
    layer = MonarchLinear(in_f, out_f, b, bias=False).double()
    f = layer.dense_factors()
    p, q, s = layer.p, layer.q, layer.s
    for name, (rows, cols) in (("R", (q, p)), ("L", (s, q))):
        mask = torch.block_diag(*[torch.ones(rows, cols)] * b).bool()
        assert (f[name][~mask] == 0).all() and (f[name][mask] != 0).all(), name
    for name in ("P", "P_out"):
        P = f[name]
        assert (P.sum(0) == 1).all() and (P.sum(1) == 1).all() and ((P == 0) | (P == 1)).all(), name
    M = layer.dense()
    assert (M != 0).all() == (q >= b)  # fully connected iff the middle block is at least nblocks wide
    for l in range(b):
        for k in range(b):
            sub = M[l::b, k * p:(k + 1) * p]  # outputs o ≡ l (mod b), inputs of R's block k
            shared = sum(1 for j in range(k * q, (k + 1) * q) if j % b == l)  # middle features linking them
            assert torch.linalg.matrix_rank(sub).item() == min(s, p, shared)


def test_classic_square_monarch_has_rank_one_blocks():
    """n = b²: each (√n × √n) sub-matrix linking one input block to one output block is rank 1."""
    M = MonarchLinear(16, 16, 4, bias=False).double().dense()
    ranks = [torch.linalg.matrix_rank(M[l::4, 4 * k:4 * k + 4]).item() for l in range(4) for k in range(4)]
    assert ranks == [1] * 16
    assert torch.linalg.matrix_rank(M).item() == 16


def test_stride_permutation():
    assert stride_permutation(6, 2).tolist() == [0, 2, 4, 1, 3, 5]
    assert stride_permutation(8, 1).tolist() == list(range(8))


@pytest.mark.parametrize("in_f,out_f,b", SHAPES)
@pytest.mark.parametrize("bias", [True, False])
def test_param_count_formula(in_f, out_f, b, bias):
    layer = MonarchLinear(in_f, out_f, b, bias=bias)
    n = sum(p.numel() for p in layer.parameters())
    assert layer.n_params == monarch_params(in_f, out_f, b, bias) == n


def test_parameter_savings_matches_modules():
    d, e, b = 64, 4, 4
    out = parameter_savings(d_model=d, n_layers=3, expansion=e, nblocks=b, vocab_size=100, n_positions=32)
    dense = nn.Sequential(nn.Linear(d, e * d), nn.GELU(), nn.Linear(e * d, d))
    assert out["mlp_gpt"] == sum(p.numel() for p in dense.parameters())
    assert out["mlp_monarch"] == sum(p.numel() for p in MonarchMLP(d, e, b).parameters())
    assert out["model_gpt"] - out["model_monarch"] == 3 * (out["mlp_gpt"] - out["mlp_monarch"])


def test_parameter_savings_gpt2_small():
    out = parameter_savings()  # GPT-2 small: d 768, 12 layers, 50257 tokens, 1024 positions
    assert out["model_gpt"] == 124_439_808  # the published GPT-2 small count (tied head)
    assert 0.25 < out["model_saved_fraction"] < 0.35  # the paper's "~30% fewer parameters"


def test_init_variance_matches_nn_linear():
    x = torch.randn(4096, 256)
    for in_f, out_f in [(256, 1024), (256, 256)]:
        mon = MonarchLinear(in_f, out_f, 4, bias=False)
        lin = nn.Linear(in_f, out_f, bias=False)
        v_mon, v_lin = mon(x[:, :in_f]).var().item(), lin(x[:, :in_f]).var().item()
        assert abs(v_mon / v_lin - 1) < 0.1, (v_mon, v_lin)


def test_learns_its_own_class():
    target, student = MonarchLinear(32, 64, 4), MonarchLinear(32, 64, 4)
    x = torch.randn(256, 32)
    with torch.no_grad():
        y = target(x)
    opt = torch.optim.Adam(student.parameters(), lr=1e-2)
    rel0 = ((student(x) - y) ** 2).mean() / (y ** 2).mean()
    for _ in range(400):
        loss = ((student(x) - y) ** 2).mean() / (y ** 2).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
    x_val = torch.randn(512, 32)
    with torch.no_grad():
        y_val = target(x_val)
        rel = (((student(x_val) - y_val) ** 2).mean() / (y_val ** 2).mean()).item()
    assert rel0.item() > 0.5 and rel < 1e-3, (rel0.item(), rel)


def test_mlp_shapes_and_dropout():
    mlp = MonarchMLP(32, expansion=4, nblocks=4, dropout=0.5)
    x = torch.randn(2, 7, 32)
    assert mlp(x).shape == (2, 7, 32)
    mlp.eval()
    torch.testing.assert_close(mlp(x), mlp(x))
    assert mlp.fc1.out_features == 128 and mlp.fc2.in_features == 128


@pytest.mark.parametrize("args,match", [
    ((10, 16, 4), r"valid nblocks for these sizes: \[1, 2\]"),
    ((16, 10, 4), "divisible by nblocks=4"),
    ((16, 16, 0), "nblocks must be a positive int"),
    ((16, 16, 2.0), "nblocks must be a positive int"),
    ((0, 16, 1), "in_features must be a positive int"),
])
def test_bad_shapes_raise(args, match):
    with pytest.raises(ValueError, match=match):
        MonarchLinear(*args)
    with pytest.raises(ValueError):
        monarch_params(*args)


def test_bad_inputs_raise():
    layer = MonarchLinear(16, 32, 4)
    with pytest.raises(ValueError, match=r"\(\.\.\., 16\)"):
        layer(torch.randn(3, 12))
    with pytest.raises(ValueError, match="to\\(dtype\\)"):
        layer(torch.randn(3, 16, dtype=torch.float64))
    with pytest.raises(ValueError, match="floating-point"):
        layer(torch.ones(3, 16, dtype=torch.long))
    with pytest.raises(ValueError, match=r"valid nblocks: \[1, 2, 3, 4, 6, 12\]"):
        MonarchMLP(12, nblocks=8)
    with pytest.raises(ValueError, match="expansion"):
        MonarchMLP(16, expansion=0)
    with pytest.raises(ValueError, match="dropout"):
        MonarchMLP(16, dropout=1.0)


def test_autocast_mixed_dtype_is_allowed():
    layer = MonarchLinear(16, 32, 4)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        y = layer(torch.randn(3, 16).bfloat16())
    assert y.shape == (3, 32)
