"""Synthetic recall tasks for LM mixers (H3 paper §3.1), generated deterministically from a seed.

Associative recall: a dictionary key → value is drawn per sequence; the sequence lists `n_pairs` pairs
"k v k v ..." (keys may repeat, always with their value) and ends with a query key that appeared; the answer is its
value. Tokens: keys 0..n_keys-1, values n_keys..n_keys+n_values-1.
Induction head: random tokens 0..n_tokens-1 with a special token (id n_tokens) placed once inside, followed by the
answer token; the sequence ends with the special token again; the answer is the token that followed it.

mode="lm": items (x, y) with x the sequence (L,) and y = x shifted by one, every target but the answer set to
IGNORE_INDEX (-100, F.cross_entropy's default), so loss/accuracy count the answer only.
mode="classify": x the sequence (L,), y the answer as a class (value index / token id).
Answers are exactly balanced over classes.
"""
from __future__ import annotations

import numpy as np

from lconv.data import IGNORE_INDEX, Task, resolve_params
from lconv.data.datasets import LMSequences, TokenSequences

DEFAULTS_AR = {
    "smoke": dict(n_train=512, n_val=128, n_test=128, n_pairs=8, n_keys=8, n_values=8, mode="lm"),
    "quick": dict(n_train=5000, n_val=500, n_test=500, n_pairs=32, n_keys=16, n_values=16, mode="lm"),
    "full": dict(n_train=100000, n_val=2000, n_test=2000, n_pairs=512, n_keys=32, n_values=32, mode="lm"),
}
DEFAULTS_IND = {
    "smoke": dict(n_train=512, n_val=128, n_test=128, seq_len=32, n_tokens=8, mode="lm"),
    "quick": dict(n_train=5000, n_val=500, n_test=500, seq_len=256, n_tokens=16, mode="lm"),
    "full": dict(n_train=100000, n_val=2000, n_test=2000, seq_len=2048, n_tokens=32, mode="lm"),
}


def _balanced(rng: np.random.Generator, n: int, n_classes: int) -> np.ndarray:
    """n labels, each class n // n_classes or one more times, in random order."""
    return rng.permutation(np.arange(n) % n_classes)


def associative_recall(n: int, seed: int, *, n_pairs: int, n_keys: int, n_values: int, split: int = 0):
    """(seqs (n, 2·n_pairs + 1) int64 ending with the query key, answers (n,) value index)."""
    if n_pairs < 1 or n_keys < 1 or n_values < 2:
        raise ValueError(f"need n_pairs >= 1, n_keys >= 1, n_values >= 2; got {n_pairs}, {n_keys}, {n_values}")
    rng = np.random.default_rng(np.random.SeedSequence([seed, split, 0xA55]))
    answers = _balanced(rng, n, n_values)  # (n,)
    rows = np.arange(n)
    keys = rng.integers(n_keys, size=(n, n_pairs))  # (n, n_pairs)
    query = rng.integers(n_keys, size=n)  # (n,)
    keys[rows, rng.integers(n_pairs, size=n)] = query  # the query key appears at least once
    table = rng.integers(n_values, size=(n, n_keys))  # (n, n_keys) the dictionary
    table[rows, query] = answers
    values = np.take_along_axis(table, keys, 1)  # (n, n_pairs)
    seqs = np.empty((n, 2 * n_pairs + 1), np.int64)
    seqs[:, 0:-1:2], seqs[:, 1:-1:2], seqs[:, -1] = keys, n_keys + values, query
    return seqs, answers


def induction_head(n: int, seed: int, *, seq_len: int, n_tokens: int, split: int = 0):
    """(seqs (n, seq_len) int64 ending with the special token n_tokens, answers (n,) token id)."""
    if seq_len < 4 or n_tokens < 2:
        raise ValueError(f"need seq_len >= 4 and n_tokens >= 2; got {seq_len}, {n_tokens}")
    rng = np.random.default_rng(np.random.SeedSequence([seed, split, 0x1DC]))
    answers = _balanced(rng, n, n_tokens)  # (n,)
    seqs = rng.integers(n_tokens, size=(n, seq_len))  # (n, L)
    pos = rng.integers(seq_len - 2, size=n)  # the special token's first place; its follower precedes the end
    rows = np.arange(n)
    seqs[rows, pos], seqs[rows, pos + 1], seqs[:, -1] = n_tokens, answers, n_tokens
    return seqs, answers


def _task(name, profile, seed, p, make, n_classes, vocab_size, answer_offset) -> Task:
    sets = {}
    for split, key in enumerate(("train", "val", "test")):
        seqs, answers = make(p[f"n_{key}"], split)
        if p["mode"] == "lm":
            full = np.concatenate([seqs, (answers + answer_offset)[:, None]], 1)  # (n, L+1)
            mask = np.zeros(seqs.shape, bool)
            mask[:, -1] = True  # only the answer is scored
            sets[key] = LMSequences(full, mask, IGNORE_INDEX)
        elif p["mode"] == "classify":
            sets[key] = TokenSequences(seqs, answers)
        else:
            raise ValueError(f"mode must be 'lm' or 'classify', got {p['mode']!r}")
    lm = p["mode"] == "lm"
    return Task(name, "lm" if lm else "classify", sets["train"], sets["val"], sets["test"], seq_len=seqs.shape[1],
                n_classes=None if lm else n_classes, vocab_size=vocab_size, seed=seed,
                info=dict(profile=profile, params=p, source="generated", ignore_index=IGNORE_INDEX,
                          answer_offset=answer_offset))


def assoc_recall_task(name, *, profile, seed, root, **overrides) -> Task:
    """Associative recall: k v k v ... q → value of q."""
    p = resolve_params(name, profile, DEFAULTS_AR, overrides)
    make = lambda n, split: associative_recall(n, seed, n_pairs=p["n_pairs"], n_keys=p["n_keys"],  # noqa: E731
                                               n_values=p["n_values"], split=split)
    return _task(name, profile, seed, p, make, p["n_values"], p["n_keys"] + p["n_values"], p["n_keys"])


def induction_task(name, *, profile, seed, root, **overrides) -> Task:
    """Induction head: ... s a ... s → a."""
    p = resolve_params(name, profile, DEFAULTS_IND, overrides)
    make = lambda n, split: induction_head(n, seed, seq_len=p["seq_len"], n_tokens=p["n_tokens"],  # noqa: E731
                                           split=split)
    return _task(name, profile, seed, p, make, p["n_tokens"], p["n_tokens"] + 1, 0)
