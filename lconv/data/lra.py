"""Long Range Arena (Tay et al. 2021) from the released files, for PROFILE=full (never downloaded here).

Get the release from https://github.com/google-research/long-range-arena (lra_release.gz, a tar.gz: `tar xzf
lra_release.gz -C $LCONV_DATA`) and the IMDB reviews from https://ai.stanford.edu/~amaas/data/sentiment/
(aclImdb_v1.tar.gz, extracted under $LCONV_DATA). Each task looks in a few places under `root` (default $LCONV_DATA,
else ~/.cache/lconv) or in the folder given by the `path=` override:
  lra_listops      lra_release/listops-1000/basic_{train,val,test}.tsv   columns Source, Target
  lra_imdb         aclImdb/{train,test}/{pos,neg}/*.txt                   byte-level, validation carved from train
  lra_aan          lra_release/tsv_data/new_aan_pairs.{train,eval,test}.tsv   label, id1, id2, text1, text2
  lra_pathfinder   lra_release/pathfinder32/<difficulty>/{metadata/*.npy, imgs/...}   (lra_path128, lra_path256)
Byte-level texts are right-padded with 0 (the NUL byte does not occur in the text). AAN pairs are two documents of
`doc_len` bytes each, concatenated (x[:doc_len] and x[doc_len:]); info["doc_len"] tells a model where to split.
Pathfinder metadata files are text despite the .npy suffix: lines "imgs/<k> sample_<i>.png <n> <label> ...".
"""
from __future__ import annotations

import csv
import os
import sys
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import Dataset

from lconv.data import Task, resolve_params
from lconv.data.datasets import TokenSequences, split_indices, take
from lconv.data.listops import PAD, VOCAB, tokenize_listops

LRA_URL = "https://github.com/google-research/long-range-arena (lra_release.gz)"
IMDB_URL = "https://ai.stanford.edu/~amaas/data/sentiment/aclImdb_v1.tar.gz"


def find_dir(root: Path, path, candidates, required, what: str, how: str) -> Path:
    """The first of `path` or root/<candidate> holding every file in `required`, else FileNotFoundError."""
    tried = [Path(path).expanduser()] if path else [Path(root) / c for c in candidates]
    for d in tried:
        if all((d / r).exists() for r in required):
            return d
    raise FileNotFoundError(f"{what} not found: looked for {list(required)} in {[str(d) for d in tried]}. {how} "
                            "Set the root argument or $LCONV_DATA to the folder that holds it, or pass path=.")


def bytes_to_ids(text: str | bytes, length: int) -> np.ndarray:
    """UTF-8 bytes of `text`, truncated or right-padded with 0 to `length` (uint8)."""
    b = text.encode("utf-8") if isinstance(text, str) else text
    out = np.zeros(length, np.uint8)
    b = b[:length]
    out[:len(b)] = np.frombuffer(b, np.uint8)
    return out


def _tsv_rows(path: Path, limit=None):
    csv.field_size_limit(min(sys.maxsize, 2 ** 31 - 1))
    with open(path, newline="", encoding="utf-8") as f:
        for i, row in enumerate(csv.reader(f, delimiter="\t", quoting=csv.QUOTE_NONE)):
            if limit is not None and i > limit:  # one extra for a header line
                break
            yield row


# ---------------------------------------------------------------------------------------------------- ListOps
LISTOPS_DEFAULTS = {
    "smoke": dict(n_train=256, n_val=64, n_test=64, seq_len=2048, path=None),
    "quick": dict(n_train=5000, n_val=1000, n_test=1000, seq_len=2048, path=None),
    "full": dict(n_train=None, n_val=None, n_test=None, seq_len=2048, path=None),
}


def read_listops_tsv(path: Path, seq_len: int):
    """(tokens (N, seq_len) uint8, labels (N,), n_truncated) from an LRA ListOps TSV with a Source/Target header."""
    tokens, labels, truncated = [], [], 0
    for row in _tsv_rows(path):
        if not row or row[0] == "Source":
            continue
        if len(row) < 2:
            raise ValueError(f"{path}: expected 2 tab-separated columns Source, Target; got {row[:1]}")
        ids = tokenize_listops(row[0])
        truncated += len(ids) > seq_len
        x = np.full(seq_len, PAD, np.uint8)
        x[:min(len(ids), seq_len)] = ids[:seq_len]
        tokens.append(x)
        labels.append(int(row[1]))
    if not tokens:
        raise ValueError(f"{path} holds no examples")
    return np.stack(tokens), np.asarray(labels, np.int64), truncated


def lra_listops_task(name, *, profile, seed, root, **overrides) -> Task:
    """LRA ListOps from basic_{train,val,test}.tsv, tokenised like the generated `listops` task (vocab 16)."""
    p = resolve_params(name, profile, LISTOPS_DEFAULTS, overrides)
    files = ("basic_train.tsv", "basic_val.tsv", "basic_test.tsv")
    d = find_dir(root, p["path"], ["lra_release/listops-1000", "lra_release/lra_release/listops-1000",
                                   "listops-1000", "listops"], files, "LRA ListOps",
                 f"Download and extract the LRA release from {LRA_URL}.")
    sets, truncated = {}, 0
    for key, f in zip(("train", "val", "test"), files):
        x, y, t = read_listops_tsv(d / f, p["seq_len"])
        idx = take(len(x), p[f"n_{key}"], seed=0)
        sets[key], truncated = TokenSequences(x[idx], y[idx]), truncated + t
    return Task(name, "classify", sets["train"], sets["val"], sets["test"], seq_len=p["seq_len"], n_classes=10,
                vocab_size=len(VOCAB), seed=seed, info=dict(profile=profile, params=p, source=str(d), pad_id=PAD,
                                                            n_truncated=truncated))


# ------------------------------------------------------------------------------------------------------- IMDB
IMDB_DEFAULTS = {
    "smoke": dict(n_train=256, n_val=64, n_test=64, seq_len=256, path=None),
    "quick": dict(n_train=4000, n_val=500, n_test=1000, seq_len=1024, path=None),
    "full": dict(n_train=None, n_val=2500, n_test=None, seq_len=4096, path=None),
}


def _imdb_files(d: Path, split: str):
    files, labels = [], []
    for label, sub in ((0, "neg"), (1, "pos")):
        names = sorted(n for n in os.listdir(d / split / sub) if n.endswith(".txt"))
        files += [d / split / sub / n for n in names]
        labels += [label] * len(names)
    return files, np.asarray(labels, np.int64)


def lra_imdb_task(name, *, profile, seed, root, **overrides) -> Task:
    """Byte-level IMDB sentiment (LRA Text): x = review bytes (seq_len,), y = 1 for pos."""
    p = resolve_params(name, profile, IMDB_DEFAULTS, overrides)
    d = find_dir(root, p["path"], ["aclImdb", "lra_release/aclImdb", "imdb/aclImdb"],
                 ["train/pos", "train/neg", "test/pos", "test/neg"], "IMDB reviews (aclImdb)",
                 f"Download {IMDB_URL} and extract it (tar xzf aclImdb_v1.tar.gz).")
    read = lambda f: bytes_to_ids(f.read_bytes(), p["seq_len"])  # noqa: E731
    files, labels = _imdb_files(d, "train")
    idx_train, idx_val = split_indices(len(files), min(p["n_val"], len(files) // 2), seed=0)
    idx_train = idx_train[take(len(idx_train), p["n_train"], seed=1)]
    test_files, test_labels = _imdb_files(d, "test")
    idx_test = take(len(test_files), p["n_test"], seed=2)
    make = lambda fs, ys, idx: TokenSequences(np.stack([read(fs[i]) for i in idx]), ys[idx])  # noqa: E731
    return Task(name, "classify", make(files, labels, idx_train), make(files, labels, idx_val),
                make(test_files, test_labels, idx_test), seq_len=p["seq_len"], n_classes=2, vocab_size=256,
                seed=seed, info=dict(profile=profile, params=p, source=str(d), pad_id=0))


# -------------------------------------------------------------------------------------------------------- AAN
AAN_DEFAULTS = {
    "smoke": dict(n_train=256, n_val=64, n_test=64, doc_len=256, path=None),
    "quick": dict(n_train=4000, n_val=500, n_test=1000, doc_len=1024, path=None),
    "full": dict(n_train=None, n_val=None, n_test=None, doc_len=4096, path=None),
}


def read_aan_tsv(path: Path, doc_len: int, limit=None):
    """(tokens (N, 2·doc_len) uint8, labels (N,)) from an LRA AAN TSV: label, id1, id2, text1, text2 (no header)."""
    tokens, labels = [], []
    for row in _tsv_rows(path, limit):
        if not row:
            continue
        if len(row) < 5:
            raise ValueError(f"{path}: expected 5 tab-separated columns label, id1, id2, text1, text2; "
                             f"got {len(row)}")
        try:
            label = int(float(row[0]))
        except ValueError:
            continue  # a header line
        tokens.append(np.concatenate([bytes_to_ids(row[3], doc_len), bytes_to_ids(row[4], doc_len)]))
        labels.append(label)
        if limit is not None and len(labels) >= limit:
            break
    if not tokens:
        raise ValueError(f"{path} holds no examples")
    return np.stack(tokens), np.asarray(labels, np.int64)


def lra_aan_task(name, *, profile, seed, root, **overrides) -> Task:
    """LRA Retrieval (AAN): do two papers cite each other? x = [doc1 bytes | doc2 bytes] (2·doc_len,)."""
    p = resolve_params(name, profile, AAN_DEFAULTS, overrides)
    files = ("new_aan_pairs.train.tsv", "new_aan_pairs.eval.tsv", "new_aan_pairs.test.tsv")
    d = find_dir(root, p["path"], ["lra_release/tsv_data", "lra_release/lra_release/tsv_data", "tsv_data", "aan"],
                 files, "LRA AAN retrieval TSVs", f"Download and extract the LRA release from {LRA_URL}.")
    sets = {}
    for key, f in zip(("train", "val", "test"), files):
        x, y = read_aan_tsv(d / f, p["doc_len"], limit=p[f"n_{key}"])  # the first n pairs of each file
        sets[key] = TokenSequences(x, y)
    return Task(name, "classify", sets["train"], sets["val"], sets["test"], seq_len=2 * p["doc_len"], n_classes=2,
                vocab_size=256, seed=seed, info=dict(profile=profile, params=p, source=str(d), pad_id=0,
                                                     doc_len=p["doc_len"]))


# ------------------------------------------------------------------------------------------------- Pathfinder
PATHFINDER_DEFAULTS = {
    "smoke": dict(n_train=256, n_val=64, n_test=64, difficulty="curv_contour_length_14", path=None),
    "quick": dict(n_train=4000, n_val=500, n_test=500, difficulty="curv_contour_length_14", path=None),
    "full": dict(n_train=None, n_val=None, n_test=None, difficulty="curv_contour_length_14", path=None),
}
LRA_SIZE = {"lra_pathfinder": 32, "lra_path128": 128, "lra_path256": 256}


class PNGSequences(Dataset):
    """Grayscale PNG files read on access as (S·S, 1) float32 sequences, normalised by (mean, std)."""

    def __init__(self, files, labels, size: int, mean: float = 0.5, std: float = 0.5):
        self.files, self.labels = list(files), torch.as_tensor(labels, dtype=torch.long)
        self.size, self.mean, self.std = size, mean, std

    def __len__(self):
        return len(self.files)

    def pixels(self, i) -> np.ndarray:
        """uint8 (S, S) image i."""
        from PIL import Image

        with Image.open(self.files[i]) as im:
            a = np.asarray(im.convert("L"))
        if a.shape != (self.size, self.size):
            raise ValueError(f"{self.files[i]} is {a.shape}, expected ({self.size}, {self.size})")
        return a

    def __getitem__(self, i):
        x = torch.from_numpy(self.pixels(i).astype(np.float32)).reshape(-1, 1)  # (L, 1)
        return (x / 255.0 - self.mean) / self.std, self.labels[i]


def read_pathfinder_metadata(folder: Path):
    """(image paths, labels) listed by folder/metadata/*.npy (text lines: subdir, filename, _, label, ...)."""
    files, labels = [], []
    metas = sorted((folder / "metadata").glob("*.npy"), key=lambda f: (len(f.stem), f.stem))
    for meta in metas:
        for line in meta.read_text().splitlines():
            parts = line.split()
            if len(parts) < 4:
                continue
            files.append(folder / parts[0] / parts[1])
            labels.append(int(parts[3]))
    if not files:
        raise ValueError(f"no samples listed in {folder}/metadata/*.npy")
    return files, np.asarray(labels, np.int64)


def lra_pathfinder_task(name, *, profile, seed, root, **overrides) -> Task:
    """LRA Pathfinder / Path-X images: (S·S, 1) pixel sequences, 2 classes; an 80/10/10 split (split seed 0)."""
    p = resolve_params(name, profile, PATHFINDER_DEFAULTS, overrides)
    S = LRA_SIZE[name]
    sub = f"pathfinder{S}/{p['difficulty']}"
    d = find_dir(root, p["path"], [f"lra_release/{sub}", f"lra_release/lra_release/{sub}", sub],
                 ["metadata"], f"LRA Pathfinder-{S} ({p['difficulty']})",
                 f"Download and extract the LRA release from {LRA_URL}.")
    files, labels = read_pathfinder_metadata(d)
    n = len(files)
    perm = np.random.default_rng(0).permutation(n)
    n_val = n_test = max(1, n // 10)
    parts = {"test": perm[:n_test], "val": perm[n_test:n_test + n_val], "train": perm[n_test + n_val:]}
    sets = {}
    for key, idx in parts.items():
        idx = np.sort(idx)[take(len(idx), p[f"n_{key}"], seed=1)]
        sets[key] = PNGSequences([files[i] for i in idx], labels[idx], S)
    missing = [f for f in sets["train"].files[:3] if not f.exists()]
    if missing:
        raise FileNotFoundError(f"images listed in {d}/metadata are missing, e.g. {missing[0]}: extract the whole "
                                f"release from {LRA_URL}")
    return Task(name, "classify", sets["train"], sets["val"], sets["test"], seq_len=S * S, n_classes=2, d_input=1,
                seed=seed, info=dict(profile=profile, params=p, source=str(d)))
