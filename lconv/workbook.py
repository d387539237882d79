"""Run the workbook: execute every notebook with papermill, then print one summary.

    python -m lconv.workbook run --profile quick          # what `make reproduce` calls

Each notebook runs in its own folder with the parameters `profile`, `device`, `seed`, `results_dir` and
`figures_dir` injected. A failing notebook is reported (name, cell, error) and the others still run; the exit status is
non-zero if any failed. The summary (each notebook's status and time, then every headline row from the notebooks'
results files, see lconv.results) is printed and written to `<out>/summary.md`.
"""
from __future__ import annotations

import argparse
import dataclasses
import sys
import time
from pathlib import Path

from lconv.results import load_results, markdown_table, write_json_atomic

PROFILES = ("smoke", "quick", "full")
REPO = Path(__file__).resolve().parent.parent


@dataclasses.dataclass
class NotebookRun:
    notebook: str
    status: str  # "ok" or "FAILED"
    seconds: float
    error: str = ""


def kernel_name() -> str:
    """The workbook's Jupyter kernel when registered (make setup), else the default python3 kernel."""
    from jupyter_client.kernelspec import KernelSpecManager

    return "lconv" if "lconv" in KernelSpecManager().find_kernel_specs() else "python3"


def _failure(err: Exception) -> str:
    """'cell 7: ValueError: ...' from a papermill error, or the exception text."""
    cell = getattr(err, "exec_count", None)
    ename, evalue = getattr(err, "ename", type(err).__name__), getattr(err, "evalue", str(err))
    where = f"cell {cell}: " if cell is not None else ""
    return f"{where}{ename}: {evalue}".strip()


def run_notebook(path: Path, out: Path, profile: str, device: str = "auto", seed: int = 0,
                 log_output: bool = False, timeout: int | None = None) -> NotebookRun:
    """Execute one notebook into `out/notebooks/`; never raises for errors inside the notebook."""
    import papermill as pm

    path = Path(path).resolve()
    out = Path(out).resolve()
    (out / "notebooks").mkdir(parents=True, exist_ok=True)
    params = dict(profile=profile, device=device, seed=seed, results_dir=str(out / "results"),
                  figures_dir=str(out / "figures"))
    start = time.perf_counter()
    try:
        pm.execute_notebook(str(path), str(out / "notebooks" / path.name), parameters=params,
                            kernel_name=kernel_name(), language="python", cwd=str(path.parent), log_output=log_output,
                            progress_bar=False, execution_timeout=timeout)
        return NotebookRun(path.stem, "ok", time.perf_counter() - start)
    except Exception as err:  # papermill raises PapermillExecutionError for a failing cell
        return NotebookRun(path.stem, "FAILED", time.perf_counter() - start, _failure(err))


def summary(runs: list[NotebookRun], out: Path, profile: str) -> str:
    """The status table followed by the headline results table."""
    lines = [f"# Workbook summary (profile: {profile})", "", "| notebook | status | time |", "|---|---|---|"]
    lines += [f"| {r.notebook} | {r.status} | {r.seconds:.0f} s |" for r in runs]
    for r in runs:
        if r.error:
            lines += ["", f"**{r.notebook} failed** at {r.error}"]
    rows = load_results(out / "results") if (out / "results").exists() else []
    lines += ["", "## Headline results", "", markdown_table(rows) if rows else "(no results recorded)"]
    return "\n".join(lines) + "\n"


def run_all(notebooks_dir: Path, out: Path, profile: str, device: str = "auto", seed: int = 0,
            only: list[str] | None = None) -> list[NotebookRun]:
    """Execute the notebooks of `notebooks_dir` in name order, print and write the summary."""
    paths = sorted(Path(notebooks_dir).glob("[0-9]*.ipynb"))
    if only:
        paths = [p for p in paths if any(p.stem.startswith(o) for o in only)]
    runs = []
    for path in paths:
        print(f"[{time.strftime('%H:%M:%S')}] {path.name} (profile {profile}) ...", flush=True)
        run = run_notebook(path, out, profile, device, seed)
        print(f"    {run.status} in {run.seconds:.0f} s {run.error}", flush=True)
        runs.append(run)
    text = summary(runs, out, profile)
    out.mkdir(parents=True, exist_ok=True)
    (out / "summary.md").write_text(text)
    write_json_atomic(out / "summary.json", [dataclasses.asdict(r) for r in runs])
    print("\n" + text)
    return runs


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="cmd", required=True)
    run = sub.add_parser("run", help="execute the notebooks and print the summary")
    run.add_argument("--profile", choices=PROFILES, default="quick")
    run.add_argument("--device", default="auto", help="auto | cpu | cuda | cuda:1 ...")
    run.add_argument("--seed", type=int, default=0)
    run.add_argument("--notebooks", type=Path, default=REPO / "notebooks")
    run.add_argument("--out", type=Path, default=REPO / "build")
    run.add_argument("--only", nargs="*", help="run only notebooks whose names start with these prefixes")
    args = parser.parse_args(argv)
    runs = run_all(args.notebooks, args.out, args.profile, args.device, args.seed, args.only)
    failed = [r for r in runs if r.status != "ok"]
    if not runs:
        print(f"no notebooks found in {args.notebooks}", file=sys.stderr)
        return 1
    for r in failed:
        print(f"FAILED: {r.notebook} — {r.error}", file=sys.stderr)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
