"""WikiText-103 raw (Merity et al. 2016) language modelling, for PROFILE=full (never downloaded here).

Files: <root>/wikitext-103-raw/wiki.{train,valid,test}.raw (root argument or $LCONV_DATA, or path= the folder),
from https://s3.amazonaws.com/research.metamind.io/wikitext/wikitext-103-raw-v1.zip (`unzip` under $LCONV_DATA).
tokens="byte" (default) reads the UTF-8 bytes through a memory map (vocab 256). tokens="gpt2" uses tiktoken's GPT-2
BPE (vocab 50257) as the paper does; it needs `pip install tiktoken` with its BPE files cached (TIKTOKEN_CACHE_DIR),
and the encoded tokens are cached next to the raw files as wiki.<split>.gpt2.npy.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from lconv.data import Task, resolve_params
from lconv.data.cache import atomic_write
from lconv.data.datasets import TokenChunks
from lconv.data.lra import find_dir

URL = "https://s3.amazonaws.com/research.metamind.io/wikitext/wikitext-103-raw-v1.zip"
FILES = {"train": "wiki.train.raw", "val": "wiki.valid.raw", "test": "wiki.test.raw"}

DEFAULTS = {
    "smoke": dict(seq_len=128, tokens="byte", n_train=512, n_val=64, n_test=64, path=None),
    "quick": dict(seq_len=512, tokens="byte", n_train=None, n_val=256, n_test=256, path=None),
    "full": dict(seq_len=1024, tokens="byte", n_train=None, n_val=None, n_test=None, path=None),
}


def _gpt2_tokens(raw: Path) -> np.ndarray:
    cached = raw.with_suffix(".gpt2.npy")
    if not cached.exists():
        try:
            import tiktoken
        except ImportError as e:
            raise ValueError("tokens='gpt2' needs tiktoken (pip install tiktoken, with its GPT-2 BPE files cached "
                             "for offline use); or use tokens='byte'") from e
        enc = tiktoken.get_encoding("gpt2")
        ids = np.asarray(enc.encode_ordinary(raw.read_text(encoding="utf-8")), dtype=np.uint16)
        atomic_write(cached, lambda f: np.save(f, ids))
    return np.load(cached, mmap_mode="r")


def wikitext_task(name, *, profile, seed, root, **overrides) -> Task:
    """Causal LM on WikiText-103: chunks of seq_len tokens, y = x shifted by one."""
    p = resolve_params(name, profile, DEFAULTS, overrides)
    d = find_dir(root, p["path"], ["wikitext-103-raw", "wikitext-103-raw-v1/wikitext-103-raw", "wikitext-103"],
                 list(FILES.values()), "WikiText-103 raw", f"Download {URL} and unzip it.")
    if p["tokens"] not in ("byte", "gpt2"):
        raise ValueError(f"tokens must be 'byte' or 'gpt2', got {p['tokens']!r}")
    sets = {}
    for key, f in FILES.items():
        stream = np.memmap(d / f, dtype=np.uint8, mode="r") if p["tokens"] == "byte" else _gpt2_tokens(d / f)
        sets[key] = TokenChunks(stream, p["seq_len"], p[f"n_{key}"])
    return Task(name, "lm", sets["train"], sets["val"], sets["test"], seq_len=p["seq_len"],
                vocab_size=256 if p["tokens"] == "byte" else 50257, seed=seed,
                info=dict(profile=profile, params=p, source=str(d)))
