"""Models: shapes, causal LM logits, tied head, parameter count, and clear errors for bad input."""
import pytest
import torch

from lconv.models import CausalLM, SequenceClassifier, count_params

V, L_MAX = 11, 32


@pytest.mark.parametrize("mixer,kw", [("h3conv", {}), ("h3", {"d_state": 8}), ("attention", {}),
                                      ("longconv", {}), ("s4d", {"d_state": 8}), ("h3conv", {"attn_layers": (1,)})])
def test_causal_lm_logits_are_causal(mixer, kw):
    """Changing tokens after t leaves the logits up to t unchanged."""
    model = CausalLM(V, 16, 2, L_MAX, mixer=mixer, **kw).double().eval()
    x = torch.randint(0, V, (2, 20))
    logits = model(x)
    assert logits.shape == (2, 20, V)
    for t in (0, 9, 18):
        x2 = x.clone()
        x2[:, t + 1:] = (x2[:, t + 1:] + 1 + torch.randint(0, V - 1, x2[:, t + 1:].shape)) % V  # every token changes
        logits2 = model(x2)
        torch.testing.assert_close(logits2[:, :t + 1], logits[:, :t + 1], rtol=0, atol=1e-10)
        assert (logits2[:, t + 1:] - logits[:, t + 1:]).abs().max() > 1e-6


def test_tied_head_and_count_params():
    model = CausalLM(V, 16, 2, L_MAX, mixer="h3conv")
    assert model.head.weight is model.embedding.weight
    unique = {id(p): p.numel() for p in model.parameters()}
    assert count_params(model) == sum(unique.values())
    n_with_both = sum(p.numel() for m in model.modules() for p in m.parameters(recurse=False))
    assert n_with_both - count_params(model) == V * 16  # the shared matrix is counted once
    model.blocks[0].mixer.q_proj.weight.requires_grad_(False)
    assert count_params(model, trainable_only=True) == count_params(model) - 16 * 16


def test_monarch_mlp_replaces_every_dense_mlp_and_stays_causal():
    from lconv.monarch import MonarchMLP, parameter_savings

    dense = CausalLM(V, 32, 2, L_MAX, mixer="attention", mlp="gpt")
    monarch = CausalLM(V, 32, 2, L_MAX, mixer="attention", mlp="monarch", monarch_nblocks=4)
    assert all(isinstance(b.mlp, MonarchMLP) for b in monarch.blocks)
    saved = sum(p.numel() for b in dense.blocks for p in b.mlp.parameters()) - \
        sum(p.numel() for b in monarch.blocks for p in b.mlp.parameters())
    counts = parameter_savings(d_model=32, n_layers=2, nblocks=4, vocab_size=V, n_positions=L_MAX)
    assert saved == 2 * (counts["mlp_gpt"] - counts["mlp_monarch"]) > 0  # counts are per layer
    assert count_params(dense) - count_params(monarch) == saved
    x = torch.randint(0, V, (2, 12))
    monarch = monarch.double().eval()
    x2 = x.clone()
    x2[:, 6:] = (x2[:, 6:] + 1) % V
    torch.testing.assert_close(monarch(x2)[:, :6], monarch(x)[:, :6], rtol=0, atol=1e-10)
    with pytest.raises(ValueError, match="'gpt' or 'monarch'"):
        CausalLM(V, 16, 2, L_MAX, mlp="dense")


@pytest.mark.parametrize("prenorm,mlp,pool", [(True, False, "mean"), (False, True, "last")])
def test_classifier_shapes(prenorm, mlp, pool):
    cont = SequenceClassifier(d_input=3, n_classes=5, d_model=16, n_layers=2, l_max=L_MAX, prenorm=prenorm,
                              mlp=mlp, pool=pool, bidirectional=True)
    assert cont(torch.randn(4, 20, 3)).shape == (4, 5)
    tok = SequenceClassifier(vocab_size=V, n_classes=5, d_model=16, n_layers=2, l_max=L_MAX, mixer="h3conv",
                             prenorm=prenorm, mlp=mlp, pool=pool)
    assert tok(torch.randint(0, V, (4, 20))).shape == (4, 5)


def test_bidirectional_classifier_sees_the_future():
    """bidirectional=True is not causal: the first position's features depend on later inputs."""
    model = SequenceClassifier(d_input=1, n_classes=2, d_model=8, n_layers=1, l_max=L_MAX, pool="last",
                               bidirectional=True).double()
    x = torch.randn(1, 16, 1, dtype=torch.float64)
    x2 = x.clone()
    x2[:, 8:] += 1.0
    h = model.blocks[0](model.encoder(x))
    h2 = model.blocks[0](model.encoder(x2))
    assert (h[:, 0] - h2[:, 0]).abs().max() > 1e-8


def test_bad_input_raises_value_error():
    cont = SequenceClassifier(d_input=3, n_classes=2, d_model=8, n_layers=1, l_max=L_MAX)
    tok = SequenceClassifier(vocab_size=V, n_classes=2, d_model=8, n_layers=1, l_max=L_MAX)
    lm = CausalLM(V, 8, 1, L_MAX)
    with pytest.raises(ValueError, match="l_max"):
        cont(torch.randn(2, L_MAX + 1, 3))
    with pytest.raises(ValueError, match="d_input=3"):
        cont(torch.randn(2, 10, 4))
    with pytest.raises(ValueError, match="x.float()"):
        cont(torch.zeros(2, 10, 3, dtype=torch.long))
    with pytest.raises(ValueError, match="x.long()"):
        tok(torch.randn(2, 10))
    with pytest.raises(ValueError, match="vocab_size"):
        tok(torch.full((2, 10), V))
    with pytest.raises(ValueError, match="l_max"):
        lm(torch.zeros(1, L_MAX + 1, dtype=torch.long))
    with pytest.raises(ValueError, match=r"\(B, L\)"):
        lm(torch.zeros(1, 10, 1, dtype=torch.long))
    with pytest.raises(ValueError, match="exactly one of d_input"):
        SequenceClassifier(d_input=3, vocab_size=V, n_classes=2, l_max=L_MAX)
    with pytest.raises(ValueError, match="valid names"):
        SequenceClassifier(d_input=3, n_classes=2, l_max=L_MAX, mixer="lstm")
    with pytest.raises(ValueError, match="causal"):
        CausalLM(V, 8, 1, L_MAX, mixer="longconv", bidirectional=True)
    with pytest.raises(ValueError, match="attn_layers"):
        CausalLM(V, 8, 2, L_MAX, attn_layers=(2,))
