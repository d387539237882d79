"""Mixers: shapes, causality, H3 against a loop reference, the shift SSM against its recurrence, bad input."""
import pytest
import torch
import torch.nn.functional as F

from lconv.conv import direct_conv, fft_conv
from lconv.mixers import MIXERS, H3, CausalSelfAttention, ShiftKernel, make_mixer

D_MODEL, L_MAX = 8, 32
CASES = [("longconv", {}), ("longconv", {"channels": 2}), ("s4d", {"d_state": 8}), ("h3", {"d_state": 8}),
         ("h3", {"d_state": 8, "head_dim": 2}), ("h3conv", {}), ("h3conv", {"head_dim": 4}),
         ("attention", {"n_heads": 2})]


@pytest.mark.parametrize("name,kw", CASES)
def test_shape_and_causality(name, kw):
    """Perturbing inputs after position t leaves outputs up to t unchanged (fp64, so the FFT adds no noise)."""
    mixer = make_mixer(name, D_MODEL, L_MAX, **kw).double().eval()
    x = torch.randn(2, 24, D_MODEL, dtype=torch.float64)
    y = mixer(x)
    assert y.shape == x.shape and torch.isfinite(y).all()
    for t in (0, 11, 22):
        x2 = x.clone()
        x2[:, t + 1:] += torch.randn_like(x2[:, t + 1:])
        y2 = mixer(x2)
        torch.testing.assert_close(y2[:, :t + 1], y[:, :t + 1], rtol=0, atol=1e-10)
        assert (y2[:, t + 1:] - y[:, t + 1:]).abs().max() > 1e-6  # the perturbation does reach later outputs


@pytest.mark.parametrize("name,kw", CASES)
def test_every_parameter_gets_a_gradient(name, kw):
    """No unused parameters (DistributedDataParallel would refuse them)."""
    mixer = make_mixer(name, D_MODEL, L_MAX, **kw)
    mixer(torch.randn(2, 16, D_MODEL)).square().mean().backward()
    missing = [n for n, p in mixer.named_parameters() if p.grad is None]
    assert not missing


def test_shorter_sequences_and_l_max():
    """Any L ≤ l_max works; L > l_max raises a ValueError naming l_max."""
    for name in MIXERS:
        mixer = make_mixer(name, D_MODEL, L_MAX)
        assert mixer(torch.randn(1, 1, D_MODEL)).shape == (1, 1, D_MODEL)
        assert mixer(torch.randn(1, L_MAX, D_MODEL)).shape == (1, L_MAX, D_MODEL)
        with pytest.raises(ValueError, match="l_max"):
            mixer(torch.randn(1, L_MAX + 1, D_MODEL))


def test_shift_kernel_is_C_shift_powers_B_and_matches_recurrence():
    """k[i] = C·S^i·B with S the shift matrix; fft_conv with it equals running the shift SSM step by step."""
    torch.manual_seed(0)
    H, N, L = 3, 5, 12
    sk = ShiftKernel(H, N).double()
    with torch.no_grad():
        sk.B.normal_()  # a general B, not only the e_0 init
    S = torch.diag(torch.ones(N - 1, dtype=torch.float64), -1)  # (N, N) shift: S e_j = e_{j+1}
    k_ref = torch.stack([torch.stack([sk.C[h] @ torch.linalg.matrix_power(S, i) @ sk.B[h] for i in range(L)])
                         for h in range(H)])  # (H, L)
    k = sk(L)
    assert k.shape == (H, N)  # taps ≥ N are zero and left out
    torch.testing.assert_close(k, k_ref[:, :N])
    assert k_ref[:, N:].abs().max() == 0
    u = torch.randn(2, H, L, dtype=torch.float64)
    torch.testing.assert_close(fft_conv(u, k), sk.recurrence(u))


def _h3_loop_reference(m, u):
    """H3 written out with direct_conv, one (head, d1, d2) entry of the outer product at a time."""
    B, L, Dm = u.shape
    nh, d = m.n_heads, m.head_dim
    q, k, v = (proj(u).transpose(1, 2) for proj in (m.q_proj, m.k_proj, m.v_proj))  # (B, D, L)
    k = direct_conv(k, m._shift_k(L)) + k * m.D_shift[:, None]
    K = m.kernel(L)[0]  # (nh, L)
    y = torch.zeros(B, Dm, L, dtype=u.dtype)
    for h in range(nh):
        for d2 in range(d):
            acc = 0
            for d1 in range(d):
                kv = k[:, h * d + d1] * v[:, h * d + d2]  # (B, L)
                s = direct_conv(kv[:, None], K[h:h + 1])[:, 0] + kv * m.D[h]  # (B, L)
                acc = acc + q[:, h * d + d1] * s
            y[:, h * d + d2] = acc
    return m.output_linear(y.transpose(1, 2))


@pytest.mark.parametrize("conv,head_dim", [("ssm", 1), ("ssm", 2), ("long", 1), ("long", 4)])
def test_h3_matches_loop_reference(conv, head_dim):
    m = H3(D_MODEL, L_MAX, d_state=8, head_dim=head_dim, conv=conv).double()
    u = torch.randn(2, 10, D_MODEL, dtype=torch.float64)
    torch.testing.assert_close(m(u), _h3_loop_reference(m, u))


def test_h3conv_uses_squashed_long_kernels():
    m = make_mixer("h3conv", D_MODEL, L_MAX, lam=0.003)
    assert m.conv == "long" and m.kernel.lam == 0.003 and m.shift_kernel.lam == 0.003
    assert (m.kernel(L_MAX).abs() > 0).float().mean() < 0.5  # Squash zeroes the entries below λ


def test_attention_matches_masked_softmax():
    m = CausalSelfAttention(D_MODEL, 2, L_MAX).double()
    x = torch.randn(2, 7, D_MODEL, dtype=torch.float64)
    q, k, v = m.qkv(x).view(2, 7, 3, 2, 4).permute(2, 0, 3, 1, 4)
    scores = q @ k.transpose(-1, -2) / 2.0  # (B, nh, L, L), sqrt(head size 4) = 2
    scores = scores.masked_fill(torch.ones(7, 7, dtype=torch.bool).triu(1), float("-inf"))
    y = (F.softmax(scores, -1) @ v).transpose(1, 2).reshape(2, 7, D_MODEL)
    torch.testing.assert_close(m(x), m.output_linear(y))


def test_bad_input_raises_value_error():
    with pytest.raises(ValueError, match="longconv.*s4d.*h3.*h3conv.*attention"):
        make_mixer("mamba", D_MODEL, L_MAX)
    with pytest.raises(ValueError, match="head_dim"):
        make_mixer("h3", D_MODEL, L_MAX, head_dim=3)
    with pytest.raises(ValueError, match="n_heads"):
        make_mixer("attention", D_MODEL, L_MAX, n_heads=3)
    for name in ("h3", "h3conv", "attention"):
        m = make_mixer(name, D_MODEL, L_MAX)
        with pytest.raises(ValueError, match=r"\(B, L, D=8\)"):
            m(torch.randn(2, 10, D_MODEL + 1))
        with pytest.raises(ValueError, match="embed tokens"):
            m(torch.zeros(2, 10, D_MODEL, dtype=torch.long))
