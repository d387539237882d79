"""Files the data modules write: atomic writes, and arrays cached under a key made from their parameters."""
from __future__ import annotations

import hashlib
import json
import os
import tempfile
from pathlib import Path
from typing import Callable

import numpy as np


def atomic_write(path: str | os.PathLike, write: Callable) -> Path:
    """Call write(file_object) on a temporary file beside `path`, then rename it into place."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            write(f)
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
    return path


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
