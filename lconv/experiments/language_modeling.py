r"""Notebook 05 (language modelling; notebook 06 reuses it): settings, matched models, runs, sampling, statements.

    from lconv.experiments import settings
    from lconv.experiments.language_modeling import SETTINGS, matched_models, train_lm, param_table
    cfg = settings(SETTINGS, "quick")
    task = get_task(cfg["task"], profile="quick", **cfg["overrides"])
    models = matched_models(["Transformer", "H3", "H3-Conv"], task.vocab_size, task.seq_len, **cfg["model"])
    run = train_lm("H3-Conv", models["H3-Conv"], task, **cfg["train"], ckpt_dir="build/checkpoints/05")
    run.val_ppl, run.tokens_per_s, param_table(models)

What is here, in notebook order:
- SETTINGS: per-profile sizes ("smoke" seconds, "quick" minutes on a 2-core CPU, "full" GPT-2-small-sized models on
  WikiText-103 with GPT-2 BPE for a GPU); the paper's numbers are lconv.paper's (PILE_PPL, MONARCH_WIKITEXT).
- build_lm / matched_models: CausalLM variants (Transformer, H3, H3-Conv, Transformer + Monarch MLPs); the
  non-Transformer widths are chosen so that their parameter counts match the Transformer's (match_width).
- param_breakdown / param_table: parameter counts of the very models that are trained, split by part.
- train_lm: lconv.train.train with a checkpoint per run (a re-run loads finished runs and resumes the others),
  then test perplexity; tokens/s is training tokens over training time (evaluation excluded).
- encode_bytes / decode_bytes / encode / decode: the tokens (bytes, GPT-2 BPE); sampling is lconv.models.generate.
- answer_accuracy: next-token accuracy where the target is not ignored (-100): the answer of a recall task.
- ppl_ordering / pile_statement / monarch_statement / recall_verdict: words built from the measured numbers,
  never pasted expectations.
"""
from __future__ import annotations

import dataclasses
import hashlib
import json
import math
from pathlib import Path

import torch
from torch import nn

from lconv.layers import LongConvKernel, S4DKernel
from lconv.mixers import ShiftKernel
from lconv.models import CausalLM, count_params
from lconv.results import pick_device, slug
from lconv.paper import MONARCH_FEWER_PARAMS, MONARCH_WIKITEXT, PILE_PPL, PILE_TOKENS
from lconv.train import evaluate, train


# ---------------------------------------------------------------- per-profile settings

# name → CausalLM keyword arguments; "hybrid" mixers get the profile's attention layers (the paper's H3/H3-Conv at
# 125M are hybrids with attention in blocks 1 and 8 of 12: HazyResearch/safari configs/experiment/pile/h3.yaml,
# h3-conv.yaml).
VARIANTS = {
    "Transformer": dict(mixer="attention", mlp="gpt"),
    "H3": dict(mixer="h3", mlp="gpt"),
    "H3-Conv": dict(mixer="h3conv", mlp="gpt"),
    "Transformer + Monarch MLP": dict(mixer="attention", mlp="monarch"),
}

SETTINGS = {
    "smoke": dict(
        task="kjv", overrides=dict(seq_len=64, n_train=256, n_val=32, n_test=32),
        model=dict(d_model=32, n_layers=2, n_heads=2, width_step=8, attn_layers=(), kernel_lr=3e-3,
                   monarch_nblocks=4),
        train=dict(steps=20, batch_size=8, lr=3e-3, weight_decay=0.0, warmup=2, eval_every=10, eval_batches=4),
        sample=dict(prompt="And God said", n=40, temperature=0.8, top_k=20),
        recall=dict(tasks={"assoc_recall": dict(n_train=256, n_val=64, n_test=64, n_pairs=4),
                           "induction": dict(n_train=256, n_val=64, n_test=64, seq_len=16)},
                    model=dict(d_model=32, n_layers=2, n_heads=2, kernel_lr=3e-3),
                    train=dict(steps=20, batch_size=32, lr=3e-3, weight_decay=0.0, warmup=2))),
    "quick": dict(
        task="kjv", overrides=dict(seq_len=128, n_val=256, n_test=256),
        model=dict(d_model=64, n_layers=2, n_heads=4, width_step=8, attn_layers=(), kernel_lr=3e-3,
                   monarch_nblocks=4),
        train=dict(steps=300, batch_size=16, lr=3e-3, weight_decay=0.0, warmup=20, eval_every=50,
                   eval_batches=None),
        sample=dict(prompt="And God said", n=200, temperature=0.8, top_k=20),
        recall=dict(tasks={"assoc_recall": dict(n_train=8000, n_val=256, n_test=512, n_pairs=8, n_keys=8,
                                                n_values=8),
                           "induction": dict(n_train=8000, n_val=256, n_test=512, seq_len=32, n_tokens=8)},
                    model=dict(d_model=64, n_layers=2, n_heads=4, kernel_lr=1e-2),
                    train=dict(steps=200, batch_size=64, lr=1e-2, weight_decay=0.0, warmup=20))),
    # GPT-2 small (124M) on WikiText-103 with GPT-2 BPE (needs tiktoken). lr 6e-4, weight decay 0.1, kernel lr = lr,
    # 12 heads and attention in blocks 1 and 8 follow safari's configs/experiment/pile/{base,h3,h3-conv}.yaml; the
    # sequence length (1024, GPT-2's), steps and batch are our choice for WikiText-103.
    "full": dict(
        task="wikitext103", overrides=dict(tokens="gpt2", seq_len=1024),
        model=dict(d_model=768, n_layers=12, n_heads=12, width_step=24, attn_layers=(1, 8), kernel_lr=6e-4,
                   monarch_nblocks=4),
        train=dict(steps=100_000, batch_size=32, lr=6e-4, weight_decay=0.1, warmup=2000, eval_every=5000,
                   eval_batches=200),
        sample=dict(prompt="The history of", n=200, temperature=0.8, top_k=50),
        recall=dict(tasks={"assoc_recall": dict(), "induction": dict()},  # the recall tasks' own full sizes
                    model=dict(d_model=256, n_layers=2, n_heads=4, kernel_lr=1e-3),
                    train=dict(steps=20_000, batch_size=64, lr=1e-3, weight_decay=0.0, warmup=500))),
}


# ---------------------------------------------------------------- models at matched size

def build_lm(variant, vocab_size, l_max, *, d_model, n_layers, n_heads=None, attn_layers=(), kernel_lr=None,
             monarch_nblocks=4, seed=0, **_ignored):
    """The CausalLM of VARIANTS[variant], its parameters drawn from `seed`.

    Non-attention mixers get `attn_layers` (hybrid blocks) and `kernel_lr` (the learning rate of their SSM /
    long-conv kernels); `n_heads` is the attention head count wherever attention is used.
    """
    if variant not in VARIANTS:
        raise ValueError(f"unknown variant {variant!r}; choose one of {list(VARIANTS)}")
    kw = dict(VARIANTS[variant])
    if kw["mixer"] != "attention":
        kw["attn_layers"] = tuple(attn_layers)
        if kernel_lr is not None:
            kw["lr"] = kernel_lr
    torch.manual_seed(seed)
    return CausalLM(vocab_size, d_model, n_layers, l_max, n_heads=n_heads, monarch_nblocks=monarch_nblocks, **kw)


def match_width(build, target, widths):
    """(d_model, n_params) among `widths` whose model `build(d_model)` has the count closest to `target`.

    Parameter counts grow with the width, so a bisection builds only about log2(len(widths)) + 2 models.
    """
    widths = sorted(set(widths))
    if not widths:
        raise ValueError("match_width: pass at least one candidate width")
    counts = {}

    def count(d):
        if d not in counts:
            counts[d] = count_params(build(d))
        return counts[d]

    lo, hi = 0, len(widths) - 1  # find the first width whose count reaches the target
    while lo < hi:
        mid = (lo + hi) // 2
        if count(widths[mid]) >= target:
            hi = mid
        else:
            lo = mid + 1
    near = [widths[i] for i in (lo - 1, lo) if 0 <= i < len(widths)]
    best = min(near, key=lambda d: (abs(count(d) - target), d))
    return best, count(best)


def matched_models(variants, vocab_size, l_max, *, d_model, width_step=8, reference="Transformer", seed=0,
                   **model_kw):
    """{variant: model}: `reference` at d_model, every other variant at the width (a multiple of width_step) whose
    parameter count is closest to the reference's. Monarch-MLP variants keep d_model: they exist to have fewer."""
    if reference not in variants:
        raise ValueError(f"matched_models: the reference {reference!r} must be one of the variants {variants}")
    ref = build_lm(reference, vocab_size, l_max, d_model=d_model, seed=seed, **model_kw)
    target = count_params(ref)
    lo, hi = max(width_step, d_model // 2), 2 * d_model
    widths = range(lo - lo % width_step, hi + 1, width_step)
    models = {}
    for v in variants:
        if v == reference:
            models[v] = ref
        elif VARIANTS[v]["mlp"] == "monarch":
            models[v] = build_lm(v, vocab_size, l_max, d_model=d_model, seed=seed, **model_kw)
        else:
            d, _ = match_width(lambda w: build_lm(v, vocab_size, l_max, d_model=w, seed=seed, **model_kw),
                               target, [w for w in widths if w > 0])
            models[v] = build_lm(v, vocab_size, l_max, d_model=d, seed=seed, **model_kw)
    return models


_KERNELS = (LongConvKernel, S4DKernel, ShiftKernel)
PARTS = ("embedding", "positions", "mixer", "kernels", "mlp", "norms", "other")


def param_breakdown(model):
    """Parameters of a CausalLM by part (tied tensors once): embedding (= tied head), positions, mixer (projections,
    attention, skips), kernels (SSM / long-conv kernels inside the mixers), mlp, norms, other; plus total."""
    parts = dict.fromkeys(PARTS, 0)
    seen = set()
    for name, module in model.named_modules():
        for p in module.parameters(recurse=False):
            if id(p) in seen:
                continue
            seen.add(id(p))
            if isinstance(module, nn.Embedding):
                part = "embedding"
            elif isinstance(module, _KERNELS):
                part = "kernels"
            elif isinstance(module, nn.LayerNorm):
                part = "norms"
            elif ".mixer" in f".{name}":
                part = "mixer"
            elif ".mlp" in f".{name}":
                part = "mlp"
            else:
                part = "other"
            parts[part] += p.numel()
    if getattr(model, "pos_emb", None) is not None:  # a parameter of the model itself, counted as "other" above
        parts["other"] -= model.pos_emb.numel()
        parts["positions"] += model.pos_emb.numel()
    parts["total"] = sum(parts[k] for k in PARTS)
    return parts


def param_table(models, reference=None):
    """One row per model: variant, d_model, n_layers, the param_breakdown parts, total, and % vs `reference`."""
    if reference is not None and reference not in models:
        raise ValueError(f"param_table: reference {reference!r} is not among the models {list(models)}")
    ref_total = count_params(models[reference]) if reference is not None else None
    rows = []
    for name, m in models.items():
        parts = param_breakdown(m)
        row = {"model": name, "d_model": m.d_model, "n_layers": len(m.blocks), **parts,
               "params": count_params(m)}
        if ref_total:
            row[f"vs {reference} %"] = 100.0 * (row["params"] - ref_total) / ref_total
        rows.append(row)
    return rows


# ---------------------------------------------------------------- training

@dataclasses.dataclass
class LMRun:
    """One trained language model and what was measured on it."""

    name: str
    model: nn.Module
    history: dict
    params: int
    val_ppl: float
    test_ppl: float
    tokens_per_s: float
    tokens_seen: int
    train_time_s: float
    resumed: bool
    ckpt_path: Path | None

    def tokens_at_eval(self):
        """Training tokens seen at each evaluation (the x-axis of the perplexity curves)."""
        per_step = self.tokens_seen / max(1, len(self.history["train_loss"]))
        return [s * per_step for s in self.history["eval_step"]]


def checkpoint_dir(results_dir, profile):
    """Where notebook 05 checkpoints its runs: <results_dir>/../checkpoints/05/<profile>."""
    return Path(results_dir).resolve().parent / "checkpoints" / "05" / profile


def run_key(name, model, task, train_cfg, seed):
    """A short hash of what determines a run (variant, model shape, task sizes, training settings, seed)."""
    shape = {k: tuple(v.shape) for k, v in model.state_dict().items()}
    blob = json.dumps({"name": name, "shape": shape, "task": task.name, "params": task.info.get("params"),
                       "n": [len(task.train), len(task.val), len(task.test)], "train": train_cfg, "seed": seed},
                      sort_keys=True, default=str)
    return hashlib.sha1(blob.encode()).hexdigest()[:8]


def train_lm(name, model, task, *, steps, batch_size, lr, weight_decay=0.0, warmup=0, eval_every=None,
             eval_batches=None, device="auto", seed=0, ckpt_dir=None, log=False):
    """Train `model` on the LM `task` with lconv.train.train (checkpointed at ckpt_dir/<name>-<hash>.pt); an LMRun.

    The checkpoint name carries a hash of the settings, so a changed setting trains afresh instead of loading a
    mismatched run. Test perplexity is measured after training on the whole test split.
    """
    if task.kind != "lm":
        raise ValueError(f"train_lm: task {task.name!r} is a {task.kind!r} task; pass a language-modelling task")
    dev = pick_device(device)
    train_cfg = dict(steps=steps, batch_size=batch_size, lr=lr, weight_decay=weight_decay, warmup=warmup,
                     eval_every=eval_every, eval_batches=eval_batches)
    ckpt = None
    if ckpt_dir is not None:
        ckpt = Path(ckpt_dir) / f"{slug(name)}-{run_key(name, model, task, train_cfg, seed)}.pt"
    resumed = ckpt is not None and ckpt.exists()
    history = train(model, task, kind="lm", device=dev, ckpt_path=ckpt, seed=seed, log=log, **train_cfg)
    _, _, test_loader = task.loaders(batch_size)
    test = evaluate(model, test_loader, "lm", dev)
    tps = history["tokens_seen"] / history["train_time_s"] if history["train_time_s"] > 0 else float("nan")
    return LMRun(name, model, history, count_params(model), history["val_ppl"][-1], test["ppl"], tps,
                 history["tokens_seen"], history["train_time_s"], resumed, ckpt)


@torch.no_grad()
def answer_accuracy(model, loader, device="auto"):
    """Share of scored targets (y != -100) predicted right by argmax: a recall task's answer accuracy."""
    dev = pick_device(device)
    return evaluate(model, loader, "lm", dev)["accuracy"]


# ---------------------------------------------------------------- sampling

def encode_bytes(text):
    """UTF-8 bytes of `text` as a (L,) int64 tensor of token ids in 0..255."""
    return torch.tensor(list(text.encode("utf-8")), dtype=torch.long)  # (L,)


def decode_bytes(tokens):
    """Text from byte token ids (undecodable bytes become U+FFFD)."""
    ids = tokens.tolist() if isinstance(tokens, torch.Tensor) else list(tokens)
    if any(not 0 <= int(t) < 256 for t in ids):
        raise ValueError("decode_bytes: token ids must lie in 0..255 (byte-level tokens); decode other "
                         "vocabularies with their tokenizer")
    return bytes(int(t) for t in ids).decode("utf-8", errors="replace")


def _gpt2_encoding(who):
    """tiktoken's GPT-2 BPE, or a ValueError that says how to get it."""
    try:
        import tiktoken
    except ImportError as e:
        raise ValueError(f"{who}: GPT-2 tokens need tiktoken (pip install tiktoken)") from e
    return tiktoken.get_encoding("gpt2")


def decode(tokens, tokens_kind="byte"):
    """Text from token ids: bytes (tokens_kind="byte") or GPT-2 BPE ("gpt2", needs tiktoken)."""
    if tokens_kind == "byte":
        return decode_bytes(tokens)
    if tokens_kind == "gpt2":
        return _gpt2_encoding("decode").decode([int(t) for t in tokens])
    raise ValueError(f"decode: tokens_kind must be 'byte' or 'gpt2', got {tokens_kind!r}")


def encode(text, tokens_kind="byte"):
    """Token ids (L,) of `text`: bytes or GPT-2 BPE (needs tiktoken)."""
    if tokens_kind == "byte":
        return encode_bytes(text)
    if tokens_kind == "gpt2":
        return torch.tensor(_gpt2_encoding("encode").encode_ordinary(text), dtype=torch.long)
    raise ValueError(f"encode: tokens_kind must be 'byte' or 'gpt2', got {tokens_kind!r}")


# ---------------------------------------------------------------- comparisons with the paper, in words

def recall_verdict(acc, chance, n):
    """'solved' (≥ 90%), 'above chance' (more than 3 binomial standard errors over chance on n answers) or 'at
    chance'."""
    if not (0 < chance < 1 and n >= 1 and 0 <= acc <= 1):
        raise ValueError(f"recall_verdict: need 0 ≤ acc ≤ 1, 0 < chance < 1, n ≥ 1; got {acc}, {chance}, {n}")
    if acc >= 0.9:
        return "solved"
    return "above chance" if acc > chance + 3 * math.sqrt(chance * (1 - chance) / n) else "at chance"


def pile_table(ours, *, corpus, tokens, profile):
    """Rows model | paper PPL at 5B/10B/15B PILE tokens | ours (corpus, tokens, profile) for each model in `ours`."""
    label = f"ours: {corpus}, {tokens} tokens, {profile}"
    rows = []
    for name in PILE_PPL:
        row = {"model": name}
        row.update({f"paper PILE {t}": v for t, v in zip(PILE_TOKENS, PILE_PPL[name])})
        row[label] = ours.get(name, float("nan"))
        rows.append(row)
    return rows


def ppl_ordering(ppl, tol=0.02):
    """A sentence ranking models by perplexity (lower is better), with ties within a relative `tol` called ties."""
    if not ppl:
        raise ValueError("ppl_ordering: pass at least one {model: perplexity}")
    ranked = sorted(ppl.items(), key=lambda kv: kv[1])
    parts = [f"{ranked[0][0]} ({ranked[0][1]:.3f})"]
    for (_, prev), (name, value) in zip(ranked, ranked[1:]):
        sep = " ≈ " if (value - prev) <= tol * prev else " < "
        parts.append(f"{sep}{name} ({value:.3f})")
    return "".join(parts)


def pile_statement(ours, tol=0.02):
    """Does our run show the paper's two findings (H3-Conv ≈ H3; both beat the Transformer)? Built from `ours`."""
    missing = [k for k in PILE_PPL if k not in ours]
    if missing:
        raise ValueError(f"pile_statement: ours lacks {missing}")
    t, h3, conv = ours["Transformer"], ours["H3"], ours["H3-Conv"]
    rel = (conv - h3) / h3
    match = (f"H3-Conv is within {100 * tol:.0f}% of H3 ({100 * rel:+.1f}%)" if abs(rel) <= tol else
             f"H3-Conv is {'worse' if rel > 0 else 'better'} than H3 by {100 * abs(rel):.1f}% (more than "
             f"{100 * tol:.0f}%)")
    beats = [n for n, v in (("H3", h3), ("H3-Conv", conv)) if v < t]
    beat = (f"{' and '.join(beats)} beat{'s' if len(beats) == 1 else ''} the Transformer ({t:.3f})" if beats
            else f"neither beats the Transformer ({t:.3f})")
    paper = "; the paper at 15B tokens: " + ppl_ordering({k: v[-1] for k, v in PILE_PPL.items()})
    return f"Ours: {ppl_ordering(ours, tol)}. {match}; {beat}{paper}."


def monarch_statement(ppl_dense, ppl_monarch, params_dense, params_monarch):
    """The Monarch comparison in words, with the paper's −0.2 PPL at 30% fewer parameters beside ours."""
    delta = ppl_monarch - ppl_dense
    fewer = 1.0 - params_monarch / params_dense
    paper_delta = MONARCH_WIKITEXT["Monarch MLPs"] - MONARCH_WIKITEXT["GPT-2 small"]
    verdict = "lower (better)" if delta < 0 else "higher (worse)" if delta > 0 else "equal"
    return (f"Monarch MLPs: {100 * fewer:.1f}% fewer parameters, perplexity {ppl_monarch:.3f} vs {ppl_dense:.3f} "
            f"({delta:+.3f}, {verdict}); the paper: {100 * MONARCH_FEWER_PARAMS:.0f}% fewer, "
            f"{MONARCH_WIKITEXT['Monarch MLPs']} vs {MONARCH_WIKITEXT['GPT-2 small']} ({paper_delta:+.1f}).")

