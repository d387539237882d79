"""The results-file convention: every notebook records its headline numbers, `make reproduce` gathers them.

A notebook does

    res = Results("02_squash_smooth", results_dir, profile=profile)
    res.add(claim="LRA avg, long conv + Squash", metric="accuracy %", ours=81.3, paper=86.1, task="ListOps-mini")

and `build/results/02_squash_smooth.json` then holds

    {"notebook": ..., "profile": ..., "provenance": {device, torch, triton, commit, date, ...},
     "rows": [{"claim", "metric", "paper", "ours", "task", "profile", "device", "note"}, ...]}

The file is rewritten atomically after every `add`, so an interrupted run leaves the rows it had.
"""
from __future__ import annotations

import datetime as _dt
import json
import os
import platform
import re
import subprocess
import tempfile
from pathlib import Path

import torch

RESULTS_DIR = Path(__file__).resolve().parents[1] / "results"  # the committed recordings (tracked)
SUMMARY_COLUMNS = ("notebook", "claim", "task", "metric", "paper", "ours", "profile", "device")


def pick_device(device: str = "auto") -> torch.device:
    """'auto' means CUDA when available, else CPU; anything else (a string, a torch.device) goes to torch.device."""
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(device)


def device_name(device: str | torch.device = "auto") -> str:
    """A human-readable name of the device: the GPU model, or 'CPU (<n> cores)'."""
    device = pick_device(device) if isinstance(device, str) else device
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    return f"CPU ({os.cpu_count()} cores, {platform.machine()})"


def _git_commit() -> str:
    here = Path(__file__).resolve().parent
    try:
        commit = subprocess.run(["git", "rev-parse", "HEAD"], cwd=here, capture_output=True, text=True,
                                timeout=10).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=here,
                               capture_output=True, text=True, timeout=10).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return "unknown"
    return (commit or "unknown") + ("+dirty" if dirty else "")


def _cudnn_version():
    """torch.backends.cudnn.version() (e.g. 91002 for 9.10.2), or None without cuDNN."""
    try:
        return torch.backends.cudnn.version() if torch.backends.cudnn.is_available() else None
    except (RuntimeError, AttributeError):
        return None


def provenance(device: str | torch.device = "auto") -> dict:
    """Where a number came from: device, library versions (torch, triton, CUDA, cuDNN), commit and date."""
    try:
        import triton
        triton_version = triton.__version__
    except ImportError:
        triton_version = None
    return {
        "device": device_name(device),
        "torch": torch.__version__,
        "triton": triton_version,
        "cuda": torch.version.cuda,
        "cudnn": _cudnn_version(),
        "python": platform.python_version(),
        "commit": os.environ.get("LCONV_COMMIT") or _git_commit(),  # LCONV_COMMIT: where the copy has no git
        "date": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
    }


def slug(text: str, default: str = "run") -> str:
    """A file-name part from free text: lower case, runs of anything but letters and digits as one "-"."""
    return re.sub(r"[^a-z0-9]+", "-", str(text).lower()).strip("-") or default


def _umask() -> int:
    """The process's umask (read by setting it and setting it back: there is no getter before Python 3.13's os)."""
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def atomic_write(path: str | os.PathLike, write, mode: str = "wb") -> Path:
    """Call write(f) on a temporary file beside `path` (opened with `mode`), then rename it into place: readers never
    see half a file. The one atomic writer of the package (results, recordings, benchmarks, data caches). The file
    gets the permissions a plain open() would give it (0666 less the umask), not mkstemp's private 0600."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, mode, **({} if "b" in mode else {"newline": ""})) as f:
            write(f)
        os.chmod(tmp, 0o666 & ~_umask())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def write_json_atomic(path: str | os.PathLike, obj) -> Path:
    """Write JSON to `path` atomically (atomic_write), indented, with a final newline."""
    def write(f):
        json.dump(obj, f, indent=2, default=str)
        f.write("\n")

    return atomic_write(path, write, mode="w")


class Results:
    """The results file of one notebook (see the module docstring for the format)."""

    def __init__(self, notebook: str, results_dir: str | os.PathLike, profile: str, device: str = "auto"):
        self.path = Path(results_dir) / f"{notebook}.json"
        self.notebook, self.profile = notebook, profile
        self.provenance = provenance(device)
        self.rows: list[dict] = []

    def add(self, claim: str, metric: str, ours, paper=None, task: str = "", note: str = "", profile=None,
            device=None) -> dict:
        """Record one headline number (and the paper's, when the paper has one) and rewrite the file.

        profile / device: where a number shown here was produced elsewhere (a recording in results/), say so;
        by default they are this run's."""
        if isinstance(ours, torch.Tensor):
            ours = ours.item()
        row = {"claim": claim, "task": task, "metric": metric, "paper": paper, "ours": ours,
               "profile": profile or self.profile, "device": device or self.provenance["device"], "note": note}
        self.rows.append(row)
        self.save()
        return row

    def save(self) -> Path:
        return write_json_atomic(self.path, {"notebook": self.notebook, "profile": self.profile,
                                             "provenance": self.provenance, "rows": self.rows})

    def to_markdown(self) -> str:
        return markdown_table([{"notebook": self.notebook, **r} for r in self.rows])


def load_results(results_dir: str | os.PathLike) -> list[dict]:
    """Every row of every results file in `results_dir`, each with its notebook's name, in notebook order."""
    rows = []
    for path in sorted(Path(results_dir).glob("*.json")):
        data = json.loads(path.read_text())
        rows += [{"notebook": data["notebook"], **row} for row in data.get("rows", [])]
    return rows


def _fmt(value) -> str:
    if value is None:
        return "–"
    if isinstance(value, float):
        return f"{value:.4g}"
    return str(value)


def markdown_table(rows: list[dict], columns=SUMMARY_COLUMNS) -> str:
    """Rows as a GitHub-flavoured markdown table (the README and the reproduce summary use it)."""
    lines = ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    lines += ["| " + " | ".join(_fmt(r.get(c)) for c in columns) + " |" for r in rows]
    return "\n".join(lines)


def load_latest_bench(results_dir=RESULTS_DIR, benchmark: str | None = None) -> dict | None:
    """The most recent benchmark (bench-*.json of lconv.kernels.bench or lconv.kernels.device_check) in results_dir
    (by its provenance date, then file name), with "path"; or None. benchmark: only files whose "benchmark" field is
    this (e.g. "lconv.kernels.device_check"). Smoke runs (CPU plumbing checks, no timings) are never returned."""
    candidates = []
    for path in Path(results_dir).glob("bench-*.json"):
        try:
            data = json.loads(path.read_text())
        except (OSError, json.JSONDecodeError):
            continue
        if (isinstance(data, dict) and "rows" in data and "provenance" in data and not data.get("smoke")
                and (benchmark is None or data.get("benchmark") == benchmark)):
            candidates.append((str(data["provenance"].get("date", "")), path.name, path, data))
    if not candidates:
        return None
    *_, path, data = max(candidates, key=lambda c: (c[0], c[1]))
    return {**data, "path": str(path)}
