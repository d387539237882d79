"""lconv.lm: sampling, parameter tables of the trained models, width matching, answer accuracy, checkpointed runs."""
import pytest
import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from lconv.data import get_task
from lconv.experiments import settings as experiment_settings
from lconv.experiments.language_modeling import (SETTINGS, VARIANTS, answer_accuracy, build_lm, decode_bytes,
                                                 encode_bytes, match_width, matched_models,
                                                 monarch_statement, param_breakdown, param_table, pile_statement,
                                                 pile_table, ppl_ordering, recall_verdict, train_lm)
from lconv.paper import PILE_PPL

from lconv.models import count_params, generate
from lconv.monarch import MonarchMLP

V, L_MAX = 13, 24
SMALL = dict(d_model=16, n_layers=2, n_heads=2)


@pytest.fixture(scope="module")
def lm():
    return build_lm("H3-Conv", V, L_MAX, **SMALL, seed=1)


# ---------------------------------------------------------------- generate

def test_generate_length_validity_and_prompt(lm):
    prompt = torch.randint(0, V, (5,))
    out = generate(lm, prompt, 12, temperature=1.0, seed=0)
    assert out.shape == (17,) and out.dtype == torch.long
    assert torch.equal(out[:5], prompt)
    assert int(out.min()) >= 0 and int(out.max()) < V
    batch = generate(lm, torch.randint(0, V, (3, 4)), 7, temperature=0.7, top_k=4, seed=0)
    assert batch.shape == (3, 11)
    assert generate(lm, prompt, 0).shape == (5,)
    long_prompt = torch.randint(0, V, (L_MAX + 6,))  # longer than l_max: only the last l_max tokens are fed
    assert generate(lm, long_prompt, 3, seed=0).shape == (L_MAX + 9,)


def test_generate_is_deterministic_for_a_seed(lm):
    prompt = torch.randint(0, V, (2, 3))
    a = generate(lm, prompt, 20, temperature=1.5, seed=7)
    b = generate(lm, prompt, 20, temperature=1.5, seed=7)
    c = generate(lm, prompt, 20, temperature=1.5, seed=8)
    assert torch.equal(a, b)
    assert not torch.equal(a, c)  # 40 draws from near-uniform logits over 13 tokens: a tie is ~impossible


def test_generate_top_k_and_greedy(lm):
    prompt = torch.randint(0, V, (4,))
    greedy = generate(lm, prompt, 10, temperature=0)
    assert torch.equal(generate(lm, prompt, 10, temperature=2.0, top_k=1, seed=3), greedy)
    with torch.no_grad():  # greedy: each new token is the argmax given what precedes it
        for t in range(4, 14):
            assert greedy[t] == lm(greedy[None, :t])[0, -1].argmax()
    out = generate(lm, prompt, 10, temperature=3.0, top_k=3, seed=0)
    with torch.no_grad():
        for t in range(4, 14):
            top = torch.topk(lm(out[None, :t])[0, -1], 3).indices
            assert out[t] in top


def test_generate_restores_training_mode_and_rejects_bad_input(lm):
    lm.train()
    generate(lm, torch.tensor([1, 2]), 2)
    assert lm.training
    for kwargs, match in [(dict(prompt_tokens=torch.tensor([0.5]), n=1), "integer"),
                          (dict(prompt_tokens=torch.tensor([], dtype=torch.long), n=1), "non-empty"),
                          (dict(prompt_tokens=torch.tensor([1]), n=-1), "n must"),
                          (dict(prompt_tokens=torch.tensor([1]), n=1, temperature=-1.0), "temperature"),
                          (dict(prompt_tokens=torch.tensor([1]), n=1, top_k=V + 1), "top_k")]:
        with pytest.raises(ValueError, match=match):
            generate(lm, **kwargs)


def test_bytes_round_trip():
    text = "In the beginning — Ἐν ἀρχῇ\n"
    ids = encode_bytes(text)
    assert ids.dtype == torch.long and int(ids.max()) < 256
    assert decode_bytes(ids) == text
    assert decode_bytes([72, 105, 0xFF]) == "Hi\ufffd"
    with pytest.raises(ValueError, match="0..255"):
        decode_bytes([300])


# ---------------------------------------------------------------- parameter tables

@pytest.mark.parametrize("variant", list(VARIANTS))
def test_param_breakdown_adds_up_to_count_params(variant):
    model = build_lm(variant, V, L_MAX, **SMALL, attn_layers=(1,) if variant in ("H3", "H3-Conv") else ())
    parts = param_breakdown(model)
    assert parts["total"] == count_params(model) == sum(p.numel() for p in model.parameters())
    assert parts["other"] == 0
    assert parts["embedding"] == V * 16  # the head is tied: counted once
    d, L = 16, L_MAX
    if variant == "H3-Conv":  # block 0 is H3-Conv (two long kernels, D·L taps each), block 1 attention
        assert parts["kernels"] == 2 * d * L
    assert parts["positions"] == L * d  # every model here has an attention block, hence learned positions
    if variant == "Transformer + Monarch MLP":
        assert parts["mlp"] == sum(p.numel() for m in model.modules() if isinstance(m, MonarchMLP)
                                   for p in m.parameters())


def test_param_table_reports_the_models_it_is_given():
    models = {v: build_lm(v, V, L_MAX, **SMALL) for v in VARIANTS}
    rows = param_table(models, reference="Transformer")
    assert [r["model"] for r in rows] == list(models)
    for row, model in zip(rows, models.values()):
        assert row["params"] == row["total"] == count_params(model)
        assert row["d_model"] == model.d_model and row["n_layers"] == len(model.blocks)
        ref = count_params(models["Transformer"])
        assert row["vs Transformer %"] == pytest.approx(100 * (count_params(model) - ref) / ref)
    with pytest.raises(ValueError, match="reference"):
        param_table(models, reference="GPT-3")


def test_models_agree_with_the_gpt2_parameter_formula():
    """parameter_savings (used for GPT-2 small in the notebook) counts exactly what build_lm builds."""
    from lconv.monarch import parameter_savings

    counts = parameter_savings(d_model=32, n_layers=3, nblocks=4, vocab_size=V, n_positions=L_MAX)
    kw = dict(d_model=32, n_layers=3, n_heads=2)
    assert count_params(build_lm("Transformer", V, L_MAX, **kw)) == counts["model_gpt"]
    assert count_params(build_lm("Transformer + Monarch MLP", V, L_MAX, **kw)) == counts["model_monarch"]


@pytest.mark.parametrize("target", [1, 300, 1000, 1057, 5000, 10**6])
def test_match_width_finds_the_closest_count(target):
    widths = range(4, 80, 4)
    d, n = match_width(lambda w: nn.Linear(w, w), target, widths)
    brute = min(widths, key=lambda w: (abs(w * w + w - target), w))
    assert (d, n) == (brute, brute * brute + brute)


def test_matched_models_are_within_a_few_percent_at_quick_size():
    cfg = experiment_settings(SETTINGS, "quick")
    models = matched_models(["Transformer", "H3", "H3-Conv", "Transformer + Monarch MLP"], 256,
                            cfg["overrides"]["seq_len"], **cfg["model"])
    ref = count_params(models["Transformer"])
    for name in ("H3", "H3-Conv"):
        assert abs(count_params(models[name]) - ref) / ref < 0.06, name
        assert models[name].d_model % cfg["model"]["width_step"] == 0
    assert models["Transformer + Monarch MLP"].d_model == models["Transformer"].d_model
    assert count_params(models["Transformer + Monarch MLP"]) < 0.75 * ref


@pytest.mark.parametrize("variant", ["H3", "H3-Conv", "Transformer + Monarch MLP"])
def test_variants_as_built_for_the_notebook_are_causal(variant):
    """tests/test_models.py checks each mixer; this checks the hybrids and Monarch models exactly as build_lm makes
    them (H3 with an attention block, as in the full profile; Monarch MLPs at every split point)."""
    model = build_lm(variant, V, L_MAX, **SMALL, attn_layers=(1,), kernel_lr=1e-3).double().eval()
    x = torch.randint(0, V, (2, 16))
    logits = model(x)
    for t in (0, 7, 14):
        x2 = x.clone()
        x2[:, t + 1:] = (x2[:, t + 1:] + 1 + torch.randint(0, V - 1, x2[:, t + 1:].shape)) % V
        torch.testing.assert_close(model(x2)[:, :t + 1], logits[:, :t + 1], rtol=0, atol=1e-10)


# ---------------------------------------------------------------- accuracy on the answer position

class _FixedLogits(nn.Module):
    """Predicts token (x + 1) % V at every position."""

    def forward(self, x):
        return nn.functional.one_hot((x + 1) % V, V).double()  # (B, L, V)


def test_answer_accuracy_counts_only_scored_targets():
    x = torch.tensor([[1, 2, 3], [4, 5, 6]])
    y = torch.tensor([[-100, -100, 4], [-100, 0, 0]])  # right, then wrong twice (predictions 6, 7)
    acc = answer_accuracy(_FixedLogits(), DataLoader(TensorDataset(x, y), batch_size=1), "cpu")
    assert acc == pytest.approx(1 / 3)
    with pytest.raises(ValueError, match="every target is -100"):
        answer_accuracy(_FixedLogits(), DataLoader(TensorDataset(x, torch.full_like(y, -100))), "cpu")


def test_answer_accuracy_on_a_recall_task_is_one_for_an_oracle():
    task = get_task("assoc_recall", profile="smoke", n_train=16, n_val=16, n_test=16)

    class Oracle(nn.Module):
        def forward(self, x):  # look the query's value up in the sequence itself
            out = torch.zeros(*x.shape, task.vocab_size)
            for b in range(x.shape[0]):
                q = x[b, -1]
                pos = (x[b, :-1:2] == q).nonzero()[0, 0] * 2
                out[b, -1, x[b, pos + 1]] = 1.0
            return out

    class Shifted(Oracle):
        def forward(self, x):  # the oracle's answer moved to the next token: always wrong
            return super().forward(x).roll(1, dims=-1)

    _, val, _ = task.loaders(8)
    assert answer_accuracy(Oracle(), val, "cpu") == 1.0
    assert answer_accuracy(Shifted(), val, "cpu") == 0.0


# ---------------------------------------------------------------- checkpointed training

def test_train_lm_checkpoints_and_resumes(tmp_path):
    task = get_task("kjv", profile="smoke", seq_len=16, n_train=32, n_val=8, n_test=8)
    cfg = dict(steps=4, batch_size=8, lr=3e-3, eval_every=2)
    first = train_lm("Transformer", build_lm("Transformer", 256, 16, **SMALL), task, device="cpu",
                     ckpt_dir=tmp_path, **cfg)
    assert not first.resumed and first.ckpt_path.exists() and first.ckpt_path.parent == tmp_path
    assert first.history["eval_step"] == [2, 4] and first.tokens_seen == 4 * 8 * 16
    assert first.tokens_at_eval() == [2 * 128, 4 * 128]
    again = train_lm("Transformer", build_lm("Transformer", 256, 16, **SMALL), task, device="cpu",
                     ckpt_dir=tmp_path, **cfg)
    assert again.resumed and again.ckpt_path == first.ckpt_path
    assert again.val_ppl == first.val_ppl and again.test_ppl == pytest.approx(first.test_ppl)
    other = train_lm("Transformer", build_lm("Transformer", 256, 16, **SMALL), task, device="cpu",
                     ckpt_dir=tmp_path, **{**cfg, "steps": 2})
    assert not other.resumed and other.ckpt_path != first.ckpt_path  # changed settings: a run of its own


def test_train_lm_rejects_a_classification_task():
    task = get_task("assoc_recall", profile="smoke", mode="classify")
    with pytest.raises(ValueError, match="language-modelling"):
        train_lm("Transformer", build_lm("Transformer", 16, task.seq_len, **SMALL), task, steps=1, batch_size=4,
                 lr=1e-3)


# ---------------------------------------------------------------- words from numbers

def test_statements_follow_the_numbers():
    paper_like = {"Transformer": 10.7, "H3": 10.2, "H3-Conv": 10.3}
    s = pile_statement(paper_like)
    assert "within 2% of H3" in s and "H3 and H3-Conv beat the Transformer" in s
    reversed_ = {"Transformer": 5.0, "H3": 6.0, "H3-Conv": 7.0}
    s = pile_statement(reversed_)
    assert "worse than H3" in s and "neither beats the Transformer" in s
    assert ppl_ordering({"a": 2.0, "b": 1.0, "c": 1.01}) == "b (1.000) ≈ c (1.010) < a (2.000)"
    assert "fewer parameters" in monarch_statement(20.6, 20.4, 100, 70) and "lower (better)" in \
        monarch_statement(20.6, 20.4, 100, 70)
    assert "higher (worse)" in monarch_statement(5.0, 5.5, 100, 70)
    rows = pile_table({"H3": 4.2}, corpus="KJV", tokens="1M", profile="quick")
    assert [r["model"] for r in rows] == list(PILE_PPL)
    assert rows[1]["ours: KJV, 1M tokens, quick"] == 4.2 and rows[1]["paper PILE 15B"] == 10.2


def test_recall_verdict():
    assert recall_verdict(0.95, 0.125, 512) == "solved"
    assert recall_verdict(0.20, 0.125, 512) == "above chance"  # 3 SE above 0.125 on 512 answers is 0.169
    assert recall_verdict(0.16, 0.125, 512) == "at chance"
    assert recall_verdict(0.20, 0.125, 16) == "at chance"  # the same accuracy on 16 answers proves nothing
    with pytest.raises(ValueError):
        recall_verdict(0.5, 0.0, 10)


def test_settings_profiles():
    assert set(SETTINGS) == {"smoke", "quick", "full"}
    keys = set(SETTINGS["quick"])
    assert all(set(SETTINGS[p]) == keys for p in SETTINGS)
    assert SETTINGS["quick"]["task"] == "kjv" and SETTINGS["full"]["task"] == "wikitext103"
    full = SETTINGS["full"]["model"]
    assert (full["d_model"], full["n_layers"], full["attn_layers"]) == (768, 12, (1, 8))  # GPT-2 small, hybrids
    s = experiment_settings(SETTINGS, "quick")
    s["train"]["steps"] = -1
    assert SETTINGS["quick"]["train"]["steps"] > 0  # a deep copy
    with pytest.raises(ValueError, match="profile"):
        experiment_settings(SETTINGS, "huge")
