"""Run the workbook: execute every notebook with papermill, then print one summary.

    python -m lconv.workbook run --profile quick          # what `make reproduce` calls

Each notebook runs in its own folder with the parameters `profile`, `device`, `seed`, `results_dir` and
`figures_dir` injected into its cell tagged `parameters`. A notebook without such a cell, or whose cell does not define
all five, is not run but reported FAILED with what to add (papermill would otherwise run it at its own settings and
only log a warning). A failing notebook is reported (name, cell, error; the cell is its 0-based index in the source
notebook, `nb.cells[i]`, not counting the cell papermill injects) and the others still run; the exit status is
non-zero if any failed. At the end the claims ledger (lconv.claims) is written to `<out>/claims.md` and
`<out>/claims.json` and opens the summary. Kernels talk to the runner over local IPC sockets, not TCP. The summary (each notebook's status and time, then every headline row from the notebooks'
results files, see lconv.results) is printed and written to `<out>/summary.md`.
"""
from __future__ import annotations

import argparse
import ast
import dataclasses
import json
import sys
import time
from pathlib import Path

from lconv.data import PROFILES
from lconv.results import load_results, markdown_table, write_json_atomic

PARAMETERS = ("profile", "device", "seed", "results_dir", "figures_dir")  # what run_notebook injects
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


def check_parameters_cell(nb) -> tuple[int | None, str]:
    """(index of the cell tagged `parameters`, "") or (None / its index, what is wrong and how to fix it)."""
    tagged = [i for i, c in enumerate(nb.cells) if "parameters" in c.get("metadata", {}).get("tags", [])]
    names = ", ".join(PARAMETERS)
    if not tagged:
        return None, (f"no cell is tagged `parameters`, so the runner's {names} would be ignored: tag the cell that "
                      f"sets them with `parameters` (JupyterLab: Property Inspector → Cell Tags; or add "
                      f'"tags": ["parameters"] to that cell\'s metadata)')
    i = tagged[0]
    try:
        tree = ast.parse(nb.cells[i].source)
    except SyntaxError as err:
        return i, f"the `parameters` cell (cell {i}) is not valid Python: {err.msg}; fix its line {err.lineno}"
    defined = {t.id for node in ast.walk(tree) if isinstance(node, (ast.Assign, ast.AnnAssign))
               for t in (node.targets if isinstance(node, ast.Assign) else [node.target]) if isinstance(t, ast.Name)}
    missing = [p for p in PARAMETERS if p not in defined]
    if missing:
        return i, (f"the `parameters` cell (cell {i}) does not define {', '.join(missing)}: add a default for each "
                   f"(e.g. {missing[0]} = ...) so the runner's value replaces it")
    return i, ""


def _source_index(executed_index: int | None, parameters_index: int | None) -> int | None:
    """Index in the source notebook of a cell of papermill's output, which has one injected cell after the
    `parameters` cell."""
    if executed_index is None or parameters_index is None or executed_index <= parameters_index:
        return executed_index
    return executed_index - 1


def _failure(err: Exception, parameters_index: int | None = None) -> str:
    """'cell 7: ValueError: ...' from a papermill error (7: the cell's index in the source notebook), or the text."""
    cell = _source_index(getattr(err, "cell_index", None), parameters_index)
    ename, evalue = getattr(err, "ename", type(err).__name__), getattr(err, "evalue", str(err))
    where = f"cell {cell}: " if cell is not None else ""
    return f"{where}{ename}: {evalue}".strip()


def _ipc_kernel_manager():
    """A kernel manager whose kernels listen on local IPC sockets instead of TCP (no plain-text TCP warning)."""
    from jupyter_client.manager import AsyncKernelManager

    class IPCKernelManager(AsyncKernelManager):
        def __init__(self, *args, **kwargs):
            kwargs.setdefault("transport", "ipc")
            super().__init__(*args, **kwargs)

    return IPCKernelManager


def run_notebook(path: Path, out: Path, profile: str, device: str = "auto", seed: int = 0,
                 log_output: bool = False, timeout: int | None = None) -> NotebookRun:
    """Execute one notebook into `out/notebooks/`; never raises for errors inside the notebook."""
    import nbformat
    import papermill as pm

    path = Path(path).resolve()
    out = Path(out).resolve()
    (out / "notebooks").mkdir(parents=True, exist_ok=True)
    params = dict(profile=profile, device=device, seed=seed, results_dir=str(out / "results"),
                  figures_dir=str(out / "figures"))
    start = time.perf_counter()
    try:
        parameters_index, problem = check_parameters_cell(nbformat.read(str(path), as_version=4))
    except Exception as err:  # not a readable notebook
        return NotebookRun(path.stem, "FAILED", time.perf_counter() - start, f"{type(err).__name__}: {err}")
    if problem:
        return NotebookRun(path.stem, "FAILED", time.perf_counter() - start, problem)
    try:
        pm.execute_notebook(str(path), str(out / "notebooks" / path.name), parameters=params,
                            kernel_name=kernel_name(), language="python", cwd=str(path.parent), log_output=log_output,
                            progress_bar=False, execution_timeout=timeout, kernel_manager_class=_ipc_kernel_manager())
        return NotebookRun(path.stem, "ok", time.perf_counter() - start)
    except Exception as err:  # papermill raises PapermillExecutionError for a failing cell
        return NotebookRun(path.stem, "FAILED", time.perf_counter() - start, _failure(err, parameters_index))


def summary(runs: list[NotebookRun], out: Path, profile: str, ledger: str = "") -> str:
    """The claims ledger (lconv.claims, markdown), the status table, then the headline results table, whose "paper"
    column says what the paper measured where it is not our measurement (lconv.claims.label_summary_rows)."""
    from lconv.claims import label_summary_rows

    lines = [f"# Workbook summary (profile: {profile})", ""]
    if ledger:
        lines += ["## Claims ledger (build/claims.md has the evidence behind each row)", "", ledger.strip(), ""]
    lines += ["## Notebooks", "", "| notebook | status | time |", "|---|---|---|"]
    lines += [f"| {r.notebook} | {r.status} | {r.seconds:.0f} s |" for r in runs]
    for r in runs:
        if r.error:
            lines += ["", f"**{r.notebook} failed** at {r.error}"]
    rows = label_summary_rows(load_results(out / "results")) if (out / "results").exists() else []
    lines += ["", "## Headline results", "",
              "A paper number in parentheses names what the paper measured: it is not the same measurement as ours.",
              "", markdown_table(rows) if rows else "(no results recorded)"]
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
    out.mkdir(parents=True, exist_ok=True)
    from lconv.claims import ledger_markdown, write_ledger

    try:  # the claims ledger: build/claims.md and .json, from this run's results and the recordings in results/
        rows, _ = write_ledger(out)
        data = json.loads((out / "claims.json").read_text())
        ledger = ledger_markdown(rows, data["run"], compact=True)
    except Exception as err:  # reported as a failed step: the notebooks' results are still summarised
        runs.append(NotebookRun("claims ledger", "FAILED", 0.0, f"{type(err).__name__}: {err}"))
        ledger = ""
    text = summary(runs, out, profile, ledger)
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
