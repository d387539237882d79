"""Files the data modules write: atomic writes, and arrays cached under a key made from their parameters."""
from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Callable

import numpy as np

from lconv.results import atomic_write  # noqa: F401  (the one atomic writer; the data modules call it from here)


def cache_key(params: dict) -> str:
    """A short stable hash of JSON-serialisable parameters."""
    blob = json.dumps(params, sort_keys=True, default=str).encode()
    return hashlib.sha1(blob).hexdigest()[:16]


def cached_arrays(root: Path, name: str, params: dict, make: Callable[[], dict], enabled: bool = True) -> dict:
    """Load `root/generated/<name>-<key>.npz` if present, else arrays = make(), save them atomically, return them."""
    if not enabled:
        return make()
    path = Path(root) / "generated" / f"{name}-{cache_key(params)}.npz"
    if path.exists():
        try:
            with np.load(path, allow_pickle=False) as f:
                return {k: f[k] for k in f.files}
        except (OSError, ValueError, EOFError):  # a truncated file from elsewhere: rebuild it
            pass
    arrays = make()
    atomic_write(path, lambda f: np.savez(f, **arrays))
    return arrays
