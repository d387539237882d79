"""The torch Datasets every task hands out: image sequences, token sequences, LM chunks of a token stream."""
from __future__ import annotations

import numpy as np
import torch
from torch.utils.data import Dataset


def _tensor(a) -> torch.Tensor:
    return a if isinstance(a, torch.Tensor) else torch.from_numpy(np.ascontiguousarray(a))


class ImageSequences(Dataset):
    """Pixels as a sequence: uint8 images (N, L, C) → float32 x (L, C) normalised per channel, y int64.

    `perm` (L,) reorders the pixels (permuted-sequential tasks).
    """

    def __init__(self, images, labels, mean, std, perm=None):
        self.images = _tensor(images)  # (N, L, C) uint8
        if self.images.ndim != 3:
            raise ValueError(f"images must be (N, L, C), got shape {tuple(self.images.shape)}")
        self.labels = _tensor(labels).long()  # (N,)
        if len(self.labels) != len(self.images):
            raise ValueError(f"{len(self.images)} images but {len(self.labels)} labels")
        self.scale = 1.0 / (255.0 * torch.as_tensor(std, dtype=torch.float32).reshape(-1))  # (C,)
        self.shift = torch.as_tensor(mean, dtype=torch.float32).reshape(-1) * 255.0 * self.scale  # (C,)
        self.perm = None if perm is None else _tensor(perm).long()

    def __len__(self):
        return len(self.images)

    def __getitem__(self, i):
        x = self.images[i]  # (L, C)
        if self.perm is not None:
            x = x[self.perm]
        return x.float() * self.scale - self.shift, self.labels[i]


class TokenSequences(Dataset):
    """Token classification: tokens (N, L) of any integer dtype → x int64 (L,), y int64."""

    def __init__(self, tokens, labels):
        self.tokens = _tensor(tokens)  # (N, L)
        self.labels = _tensor(labels).long()  # (N,)
        if self.tokens.ndim != 2 or len(self.labels) != len(self.tokens):
            raise ValueError(f"need tokens (N, L) and labels (N,), got {tuple(self.tokens.shape)}, "
                             f"{tuple(self.labels.shape)}")

    def __len__(self):
        return len(self.tokens)

    def __getitem__(self, i):
        return self.tokens[i].long(), self.labels[i]


class LMSequences(Dataset):
    """Next-token prediction on whole sequences (N, L+1): x = seq[:-1], y = seq[1:] with unscored targets masked.

    `mask` (N, L) bool marks the target positions that count; the others become IGNORE_INDEX (-100).
    """

    def __init__(self, seqs, mask=None, ignore_index: int = -100):
        self.seqs = _tensor(seqs)  # (N, L+1)
        self.mask = None if mask is None else _tensor(mask).bool()  # (N, L)
        self.ignore_index = ignore_index

    def __len__(self):
        return len(self.seqs)

    def __getitem__(self, i):
        s = self.seqs[i].long()
        x, y = s[:-1], s[1:].clone()  # (L,), (L,)
        if self.mask is not None:
            y[~self.mask[i]] = self.ignore_index
        return x, y


class TokenChunks(Dataset):
    """Language modelling on one token stream cut into non-overlapping chunks: y = x shifted by one."""

    def __init__(self, tokens, seq_len: int, max_chunks: int | None = None):
        if seq_len < 1:
            raise ValueError(f"seq_len must be >= 1, got {seq_len}")
        self.tokens = tokens  # 1-D numpy array / memmap / tensor of ints
        self.seq_len = seq_len
        n = (len(tokens) - 1) // seq_len
        if n < 1:
            raise ValueError(f"a stream of {len(tokens)} tokens is too short for seq_len={seq_len}: "
                             "lower seq_len or use more text")
        self.n = n if max_chunks is None else min(n, int(max_chunks))

    def __len__(self):
        return self.n

    def __getitem__(self, i):
        if not 0 <= i < self.n:
            raise IndexError(i)
        start = i * self.seq_len
        s = torch.as_tensor(np.asarray(self.tokens[start:start + self.seq_len + 1]).astype(np.int64))  # (L+1,)
        return s[:-1], s[1:]


def split_indices(n: int, n_val: int, seed: int = 0):
    """A deterministic (train_idx, val_idx) split of range(n) with n_val held out."""
    if not 0 <= n_val < n:
        raise ValueError(f"n_val={n_val} must be in [0, {n})")
    perm = np.random.default_rng(seed).permutation(n)
    return np.sort(perm[n_val:]), np.sort(perm[:n_val])


def take(n_total: int, n: int | None, seed: int) -> np.ndarray:
    """A deterministic sorted subsample of n indices from range(n_total) (all of them when n is None)."""
    if n is None or n >= n_total:
        return np.arange(n_total)
    if n < 1:
        raise ValueError(f"asked for {n} examples: need at least 1")
    return np.sort(np.random.default_rng(seed).choice(n_total, size=n, replace=False))
