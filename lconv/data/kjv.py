"""King James Bible language modelling: the `bible` program's text, verse references stripped, split by book.

`bible -f Gen1:1-Rev22:21` (Debian package `bible-kjv`) prints one verse per line as "Ge1:1 In the beginning ...".
The references are stripped and the verses cached, one per line, in <root>/kjv/kjv.txt (about 4.14 MB; 4.40 MB with
the references), with <root>/kjv/books.tsv listing each book's abbreviation and verse count. Tokens are bytes
(vocab 256; the text is ASCII) or characters (vocab = the corpus's sorted character set, 63). Validation and test
are whole books: Job, Romans, Ruth (≈ 3.8%) and Proverbs, Mark, Hebrews (≈ 4.7%); all others are training text.
"""
from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path

import numpy as np

from lconv.data import Task, resolve_params
from lconv.data.cache import atomic_write
from lconv.data.datasets import TokenChunks

VERSE_RE = re.compile(r"^(\d?[A-Za-z]+)(\d+):(\d+) (.*)$")
VAL_BOOKS = ("Job", "Rom", "Ruth")
TEST_BOOKS = ("Prv", "Mark", "Heb")

DEFAULTS = {
    "smoke": dict(seq_len=64, tokens="byte", n_train=512, n_val=64, n_test=64),
    "quick": dict(seq_len=256, tokens="byte", n_train=None, n_val=256, n_test=256),
    "full": dict(seq_len=1024, tokens="byte", n_train=None, n_val=None, n_test=None),
}


def parse_bible_output(lines) -> tuple[list[str], list[str]]:
    """(books, verses) from `bible -f` lines "Ge1:1 text": the book of each verse and its text without reference."""
    books, verses = [], []
    for n, line in enumerate(lines):
        line = line.rstrip("\n")
        if not line.strip():
            continue
        m = VERSE_RE.match(line)
        if m is None:
            raise ValueError(f"line {n + 1} of the bible output has no verse reference: {line[:60]!r}")
        books.append(m.group(1))
        verses.append(m.group(4))
    return books, verses


def kjv_corpus(root: Path) -> tuple[list[str], list[str]]:
    """(books, verses) of the whole KJV, from the cache or, once, from the `bible` program."""
    folder = Path(root) / "kjv"
    text_path, books_path = folder / "kjv.txt", folder / "books.tsv"
    if not (text_path.exists() and books_path.exists()):
        exe = shutil.which("bible")
        if exe is None:
            raise FileNotFoundError(
                f"the KJV text is not cached in {folder} and the `bible` program is missing: install the Debian "
                "package bible-kjv (`make data`, or `sudo apt-get install bible-kjv`), or put the text, one verse "
                f"per line without references, in {text_path} plus {books_path} (lines 'book<TAB>n_verses'); "
                "root argument or $LCONV_DATA choose the folder.")
        out = subprocess.run([exe, "-f", "Gen1:1-Rev22:21"], capture_output=True, text=True, check=True,
                             stdin=subprocess.DEVNULL, timeout=300, env={**os.environ, "COLUMNS": "100000"})
        books, verses = parse_bible_output(out.stdout.splitlines())
        counts: dict[str, int] = {}
        for b in books:
            counts[b] = counts.get(b, 0) + 1
        atomic_write(text_path, lambda f: f.write(("\n".join(verses) + "\n").encode("utf-8")))
        atomic_write(books_path, lambda f: f.write("".join(f"{b}\t{c}\n" for b, c in counts.items()).encode()))
    verses = text_path.read_text(encoding="utf-8").splitlines()
    books = []
    for row in books_path.read_text().splitlines():
        b, c = row.split("\t")
        books += [b] * int(c)
    if len(books) != len(verses):
        raise ValueError(f"{books_path} lists {len(books)} verses but {text_path} has {len(verses)}: delete both "
                         "to rebuild them")
    return books, verses


def kjv_task(name, *, profile, seed, root, **overrides) -> Task:
    """Causal LM on KJV text: chunks of seq_len tokens, y = x shifted by one."""
    p = resolve_params(name, profile, DEFAULTS, overrides)
    books, verses = kjv_corpus(root)
    by_split = {"train": [], "val": [], "test": []}
    for b, v in zip(books, verses):
        by_split["val" if b in VAL_BOOKS else "test" if b in TEST_BOOKS else "train"].append(v)
    texts = {k: "\n".join(v) + "\n" for k, v in by_split.items()}
    if p["tokens"] == "byte":
        vocab_size, chars = 256, None
        encode = lambda s: np.frombuffer(s.encode("utf-8"), dtype=np.uint8)  # noqa: E731
    elif p["tokens"] == "char":
        chars = sorted(set("".join(texts.values())))
        vocab_size = len(chars)
        lut = np.zeros(max(map(ord, chars)) + 1, dtype=np.uint8)
        lut[[ord(c) for c in chars]] = np.arange(len(chars))
        encode = lambda s: lut[np.frombuffer(s.encode("utf-32-le"), dtype=np.uint32)]  # noqa: E731
    else:
        raise ValueError(f"tokens must be 'byte' or 'char', got {p['tokens']!r}")
    sets = {k: TokenChunks(encode(t), p["seq_len"], p[f"n_{k}"]) for k, t in texts.items()}
    return Task(name, "lm", sets["train"], sets["val"], sets["test"], seq_len=p["seq_len"], vocab_size=vocab_size,
                seed=seed, info=dict(profile=profile, params=p, source="bible-kjv", chars=chars,
                                     n_chars={k: len(t) for k, t in texts.items()}))
