"""ListOps (Nangia & Bowman 2018) with the Long Range Arena grammar, generated deterministically from a seed.

An expression is a digit 0-9 or `[OP e1 e2 ... en ]` with 2 ≤ n ≤ max_args and OP one of
    [MAX  maximum,   [MIN  minimum,   [MED  median (int() of the statistical median),   [SM  sum modulo 10.
The label is the expression's value (10 classes). As in LRA, a node is an operator with probability 0.25 until
max_depth (then a digit), and expressions outside [min_len, max_len] tokens are rejected; here generation also
keeps each class to an equal quota, so the labels are exactly balanced. LRA's files add "(" ")" around partial
applications; those carry no information and are dropped by the tokenizer.

Tokens: 0 = pad, 1-10 = digits 0-9, 11-14 = [MIN [MAX [MED [SM, 15 = ]  (vocab 16). Sequences are right-padded to
seq_len. `evaluate_listops` is an evaluator written independently of the generator (a stack machine over tokens);
the tests check that both agree.
"""
from __future__ import annotations

import random
import statistics

import numpy as np

from lconv.data import Task, resolve_params
from lconv.data.cache import cached_arrays
from lconv.data.datasets import TokenSequences

VOCAB = ("<pad>", "0", "1", "2", "3", "4", "5", "6", "7", "8", "9", "[MIN", "[MAX", "[MED", "[SM", "]")
TOKEN_ID = {t: i for i, t in enumerate(VOCAB)}
PAD, CLOSE = 0, TOKEN_ID["]"]
OPS = (TOKEN_ID["[MIN"], TOKEN_ID["[MAX"], TOKEN_ID["[MED"], TOKEN_ID["[SM"])
GENERATOR_VERSION = 1  # bump when the generator's output changes, to invalidate caches

DEFAULTS = {
    "smoke": dict(n_train=400, n_val=100, n_test=100, min_len=16, max_len=128, seq_len=128, max_depth=5,
                  max_args=5, p_op=0.25, cache=True),
    "quick": dict(n_train=3000, n_val=500, n_test=500, min_len=100, max_len=500, seq_len=512, max_depth=8,
                  max_args=8, p_op=0.25, cache=True),
    "full": dict(n_train=96000, n_val=2000, n_test=2000, min_len=500, max_len=2000, seq_len=2048, max_depth=10,
                 max_args=10, p_op=0.25, cache=True),
}


class _TooLong(Exception):
    pass


def _expression(rng: random.Random, depth: int, p: dict, out: list) -> int:
    """Append one random expression's token ids to `out` and return its value."""
    if depth >= p["max_depth"] or rng.random() >= p["p_op"]:
        v = rng.randrange(10)
        out.append(1 + v)
        return v
    op = OPS[rng.randrange(4)]
    out.append(op)
    args = [_expression(rng, depth + 1, p, out) for _ in range(rng.randint(2, p["max_args"]))]
    out.append(CLOSE)
    if len(out) > p["max_len"]:
        raise _TooLong
    if op == OPS[0]:
        return min(args)
    if op == OPS[1]:
        return max(args)
    if op == OPS[2]:
        s = sorted(args)
        m = len(s) // 2
        return s[m] if len(s) % 2 else (s[m - 1] + s[m]) // 2
    return sum(args) % 10


def generate_listops(n: int, seed: int, *, min_len: int, max_len: int, seq_len: int, max_depth: int = 10,
                     max_args: int = 10, p_op: float = 0.25, split: int = 0):
    """n balanced examples: tokens (n, seq_len) uint8 right-padded, labels (n,), lengths (n,)."""
    if not 1 <= min_len <= max_len <= seq_len:
        raise ValueError(f"need 1 <= min_len <= max_len <= seq_len, got {min_len}, {max_len}, {seq_len}")
    if min_len > 3 and max_depth < 1:
        raise ValueError("max_depth must be >= 1 for expressions longer than one digit")
    p = dict(max_depth=max_depth, max_args=max_args, p_op=p_op, max_len=max_len)
    state = np.random.SeedSequence([seed, split, 0x11570]).generate_state(2)
    rng = random.Random(int(state[0]) << 32 | int(state[1]))  # a private generator: no global RNG
    quota = [n // 10 + (c < n % 10) for c in range(10)]
    tokens = np.zeros((n, seq_len), dtype=np.uint8)
    labels = np.zeros(n, dtype=np.int64)
    lengths = np.zeros(n, dtype=np.int64)
    filled, tries = 0, 0
    while filled < n:
        tries += 1
        if tries > 2000 * (n + 10):
            raise ValueError(f"could not generate {n} ListOps expressions with length in [{min_len}, {max_len}]: "
                             "widen the range or raise max_depth / max_args")
        out: list = []
        try:
            value = _expression(rng, 0, p, out)
        except _TooLong:
            continue
        if not (min_len <= len(out) <= max_len) or quota[value] == 0:
            continue
        quota[value] -= 1
        tokens[filled, :len(out)] = out
        labels[filled], lengths[filled] = value, len(out)
        filled += 1
    order = np.random.default_rng(np.random.SeedSequence([seed, split, 1])).permutation(n)
    return tokens[order], labels[order], lengths[order]


def tokenize_listops(source: str) -> list[int]:
    """Token ids of an LRA Source string ("( ( [MAX 2 9 ) 1 ] )"): parentheses dropped."""
    ids = []
    for tok in source.split():
        if tok in ("(", ")"):
            continue
        if tok not in TOKEN_ID or tok == "<pad>":
            raise ValueError(f"unknown ListOps token {tok!r}; expected digits, [MAX [MIN [MED [SM, ], ( or )")
        ids.append(TOKEN_ID[tok])
    return ids


def evaluate_listops(tokens) -> int:
    """The value of one ListOps expression given as token strings or ids (padding and parentheses ignored)."""
    apply = {"[MIN": min, "[MAX": max, "[MED": lambda a: int(statistics.median(a)), "[SM": lambda a: sum(a) % 10}
    stack: list = [("top", [])]
    for tok in tokens:
        tok = VOCAB[int(tok)] if not isinstance(tok, str) else tok
        if tok in ("<pad>", "(", ")"):
            continue
        if tok in apply:
            stack.append((tok, []))
        elif tok == "]":
            if len(stack) < 2:
                raise ValueError("unbalanced ListOps expression: ']' without an operator")
            op, args = stack.pop()
            if not args:
                raise ValueError(f"operator {op} has no arguments")
            stack[-1][1].append(apply[op](args))
        elif tok.isdigit() and len(tok) == 1:
            stack[-1][1].append(int(tok))
        else:
            raise ValueError(f"unknown ListOps token {tok!r}")
    if len(stack) != 1 or len(stack[0][1]) != 1:
        raise ValueError("malformed ListOps expression: unclosed operator or several top-level values")
    return stack[0][1][0]


def decode_listops(ids) -> str:
    """The expression as text, padding removed."""
    return " ".join(VOCAB[int(i)] for i in ids if int(i) != PAD)


def listops_task(name, *, profile, seed, root, **overrides) -> Task:
    """Generated ListOps: tokens (seq_len,) int64 → value 0-9."""
    p = resolve_params(name, profile, DEFAULTS, overrides)
    gen = {k: p[k] for k in ("min_len", "max_len", "seq_len", "max_depth", "max_args", "p_op")}
    sets = {}
    for split, key in enumerate(("train", "val", "test")):
        params = dict(gen, n=p[f"n_{key}"], seed=seed, split=split, version=GENERATOR_VERSION)
        arrays = cached_arrays(root, "listops", params, lambda: dict(zip(
            ("tokens", "labels", "lengths"), generate_listops(p[f"n_{key}"], seed, split=split, **gen))),
            enabled=p["cache"])
        sets[key] = TokenSequences(arrays["tokens"], arrays["labels"])
        sets[key].lengths = arrays["lengths"]
    return Task(name, "classify", sets["train"], sets["val"], sets["test"], seq_len=p["seq_len"], n_classes=10,
                vocab_size=len(VOCAB), seed=seed, info=dict(profile=profile, params=p, pad_id=PAD, vocab=VOCAB,
                                                            source="generated"))
