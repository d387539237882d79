r"""The regime study of notebook 02: where does a plain long convolution lose to Squash / Smooth, on real data?

The paper's gap (long conv 69.5 → 86.1 LRA average with Squash, claim 1 of the README's ledger) is a generalisation
gap: an unregularised kernel as long as the sequence has H·L free taps per layer to fit noise with. So the study
trains the five models of the comparison (long conv, + Squash, + Smooth, + both, S4D: lconv.experiments
.squash_smooth_variants) with everything else equal on sequential Fashion-MNIST, raster order ("smnist", L = 784)
and a fixed pixel permutation ("psmnist": long-range dependencies), on small training subsets trained for many
epochs, at the paper's kernel learning rate (1e-3) and the quick profile's (2e-2), at two widths. One cell = one
point of that grid; `CELLS` names them, `STAGES` says which cells and seeds are recorded.

    python -m lconv.regime record --stage grid --budget-s 3000      # one seed over the grid, resumable
    python -m lconv.regime record --stage seeds                      # seeds 1, 2 in the cells that matter
    python -m lconv.regime record --stage confirm                    # seeds 1, 2 where seed 0 showed the effect
    python -m lconv.regime record --stage seeds-n4000                # seeds 1, 2 of the largest raster cell
    python -m lconv.regime record --stage seeds-w64                  # seeds 1, 2 of the width-64 quick-lr cell
    python -m lconv.regime record --stage long                       # the paper-lr cell, 4× the steps
    python -m lconv.regime record --stage kdrop                      # the paper-lr cell with kernel dropout 0.2
    python -m lconv.regime status                                     # what is recorded, what is pending
    python -m lconv.regime table --readme                            # the README's table from the recordings

Each (cell, seed) writes `results/regime/regime-<device>-quick-<hash>.json` through lconv.record.record (atomic rows,
provenance, checkpoints under build/checkpoints/regime that resume an interrupted run). `load_regime` reads every
such file into one table; `cell_summary` gives, per cell and variant, test accuracy mean ± standard error over
seeds, the train–test gap and kernel roughness; `differences` the Squash − plain (and Smooth − plain) accuracy
difference per cell with its 95% interval over seeds.
"""
from __future__ import annotations

import argparse
import json
import math
import sys
import time
from pathlib import Path

from lconv.record import RECORDED_DIR, Plan, record
from lconv.results import atomic_write

STUDY = "regime"
REGIME_DIR = RECORDED_DIR / "regime"  # tracked: one file per (cell, seed)

# Everything a cell does not set. Model: 2 post-norm layers, dropout 0.1 and weight decay 0.05 on the non-kernel
# weights as in the official LRA configs (kernel weight decay 0 there and here); λ = 0.002 with randn·0.002 init
# (32% of taps trainable at init); no kernel dropout, so that the variants differ in Squash / Smooth only.
BASE = dict(
    train=dict(n_layers=2, lr=1e-2, batch_size=32, prenorm=False, dropout=0.1, weight_decay=0.05, eval_every=500),
    kernel=dict(lam=0.002, smooth_window=7, channels=1, s4d_lr=1e-2, kernel_dropout=0.0),
    data=dict(n_val=500, n_test=2000, perm_seed=0),  # the permutation is fixed across seeds
)

KERNEL_LRS = {"paper": 1e-3, "quick": 2e-2}


def cell(task: str, n_train: int, d_model: int, kernel_lr: str, steps: int, label: str = "",
         kernel_dropout: float = 0.0) -> dict:
    """One grid point: task ("smnist" | "psmnist"), training images, width, kernel lr name (KERNEL_LRS), steps;
    `label` tells apart cells that differ in steps or kernel dropout only ("long", "kdrop"); kernel_dropout: on the
    regularised variants' kernels (the plain long conv never has it, as in squash_smooth_variants)."""
    if task not in ("smnist", "psmnist"):
        raise ValueError(f"cell: task must be 'smnist' or 'psmnist', got {task!r}")
    if kernel_lr not in KERNEL_LRS:
        raise ValueError(f"cell: kernel_lr must be one of {sorted(KERNEL_LRS)}, got {kernel_lr!r}")
    return dict(task=task, n_train=n_train, d_model=d_model, kernel_lr=kernel_lr, steps=steps, label=label,
                kernel_dropout=kernel_dropout)


def cell_name(c: dict) -> str:
    """The cell's label in record files and tables, e.g. 'psmnist n1000 w32 klr-paper'."""
    name = f"{c['task']} n{c['n_train']} w{c['d_model']} klr-{c['kernel_lr']}"
    return f"{name} {c['label']}" if c.get("label") else name


# Steps: ≈ 48 epochs at 1000 images, 24 at 4000 (batch 32); train_accuracy in every row says how far each run fitted.
CELLS = {cell_name(c): c for c in [
    cell("psmnist", 1000, 32, "paper", 1500),
    cell("psmnist", 1000, 32, "quick", 1500),
    cell("smnist", 1000, 32, "paper", 1500),
    cell("smnist", 1000, 32, "quick", 1500),
    cell("psmnist", 4000, 32, "paper", 3000),
    cell("psmnist", 4000, 32, "quick", 3000),
    cell("psmnist", 1000, 64, "paper", 1500),
    cell("psmnist", 1000, 64, "quick", 1500),
    cell("smnist", 4000, 32, "paper", 3000),
    cell("smnist", 4000, 32, "quick", 3000),
    # 4× the steps (≈ 190 epochs, the official Image run's 200): does the gap open once plain long convs have
    # fitted their training set? (at 1500 steps and the paper's kernel lr they reach ≈ 85 % training accuracy)
    cell("psmnist", 1000, 32, "paper", 6000, label="long"),
    # the official runs apply kernel dropout 0.2 together with Squash: the same cell with it (the plain long conv
    # and S4D runs are those of the cell without it, loaded from their checkpoints)
    cell("psmnist", 1000, 32, "paper", 1500, label="kdrop", kernel_dropout=0.2),
]}

# What is recorded: (cells, seeds). "grid": one seed everywhere; "seeds": two more seeds in the two cells at the
# smallest data size and the width of the quick profile, at the paper's and the quick kernel lr; "long": the
# paper-lr cell trained 4× longer; "kdrop": the paper-lr cell with the official kernel dropout.
STAGES = {
    "grid": ([n for n, c in CELLS.items() if not c["label"]], (0,)),
    "seeds": (["psmnist n1000 w32 klr-paper", "psmnist n1000 w32 klr-quick"], (1, 2)),
    "long": (["psmnist n1000 w32 klr-paper long"], (0,)),
    "kdrop": (["psmnist n1000 w32 klr-paper kdrop"], (0,)),
    # the one grid cell whose first seed showed the paper's direction beyond two (binomial) standard errors
    "confirm": (["smnist n1000 w32 klr-quick"], (1, 2)),
    # the largest raster-order cell: its first seed leaned the paper's way (Squash +2.1 ± 1.2 points, under two
    # binomial standard errors); two more seeds say whether that holds
    "seeds-n4000": (["smnist n4000 w32 klr-quick"], (1, 2)),
    # the permuted cell whose first seed leaned most the paper's way (Squash +1.7 ± 1.4 points at width 64)
    "seeds-w64": (["psmnist n1000 w64 klr-quick"], (1, 2)),
}


# The cell notebook 02 reruns live (§3): the grid cell whose first seed showed the paper's direction; its
# recorded seed 0, the two variants whose difference it showed. `steps` per profile: None = the recorded run.
RERUN = dict(cell="smnist n1000 w32 klr-quick", seed=0, variants=("long conv", "+ Squash"),
             steps={"smoke": 4, "quick": None, "full": None})


def plan(name: str) -> Plan:
    """The lconv.record Plan of cell `name`: its train, data and kernel settings on top of BASE."""
    if name not in CELLS:
        raise ValueError(f"unknown regime cell {name!r}; cells: {list(CELLS)}")
    c = CELLS[name]
    train = dict(BASE["train"], d_model=c["d_model"], steps=c["steps"], warmup=c["steps"] // 10)
    kernel = dict(BASE["kernel"], kernel_lr=KERNEL_LRS[c["kernel_lr"]], kernel_dropout=c["kernel_dropout"])
    return Plan(task=name, data=c["task"], train=train, overrides=dict(BASE["data"], n_train=c["n_train"]),
                kernel=kernel)


def record_stage(stage: str, *, seeds=None, cells=None, out_dir=REGIME_DIR, device="auto",
                 ckpt_dir="build/checkpoints/regime", budget_s: float | None = None, log: bool = True) -> list[dict]:
    """Record `stage` (STAGES; or only its `cells` / `seeds`): one record file per (cell, seed), seeds outermost,
    so that parallel workers given disjoint cells never write the same file; return the records touched.

    Give the paper/quick kernel-lr twins of a cell to the same worker: their S4D runs are one run (S4D's lr is its
    own), trained once and loaded by the twin from its checkpoint.
    """
    if stage not in STAGES:
        raise ValueError(f"stage must be one of {sorted(STAGES)}, got {stage!r}")
    stage_cells, stage_seeds = STAGES[stage]
    unknown = sorted(set(cells or ()) - set(stage_cells))
    if unknown:
        raise ValueError(f"cells {unknown} are not in stage {stage!r}: {stage_cells}")
    deadline = None if budget_s is None else time.perf_counter() + budget_s
    out = []
    for seed in (seeds if seeds is not None else stage_seeds):
        for name in (cells or stage_cells):
            left = None if deadline is None else deadline - time.perf_counter()
            if left is not None and left <= 0:
                return out
            out.append(record([plan(name)], profile="quick", out_dir=out_dir, seed=seed, device=device,
                              ckpt_dir=ckpt_dir, budget_s=left, log=log, study=STUDY))
            if not out[-1]["complete"]:
                return out
    return out


def stage_status(results_dir=REGIME_DIR) -> dict:
    """Per stage of STAGES, the (cell, seed) pairs without a complete recording in `results_dir` (empty: complete)."""
    done = set()
    for path in Path(results_dir).glob(f"{STUDY}-*.json"):
        rec = json.loads(path.read_text())
        if rec.get("complete"):
            done.add((rec["plans"][0]["task"], rec["seed"]))
    return {stage: [(c, s) for s in seeds for c in cells if (c, s) not in done]
            for stage, (cells, seeds) in STAGES.items()}


# ---------------------------------------------------------------- reading the recordings

RUN_COLUMNS = ("cell", "task", "n_train", "d_model", "kernel_lr", "steps", "seed", "variant", "test_accuracy",
               "train_accuracy", "val_accuracy", "n_test", "final_train_loss", "sparsity", "total_variation",
               "spectral_tv", "trainable_fraction", "train_time_s", "device", "commit", "date", "file")


def load_regime(results_dir=REGIME_DIR, complete_only: bool = False):
    """Every recorded run of the study, one row per (cell, seed, variant): RUN_COLUMNS, with the cell's settings
    read from the record file's plan (so a renamed or retired cell still reads right) and the train–test gap
    `gap` = train_accuracy − test_accuracy. `complete_only`: skip (cell, seed) files with runs still pending (a
    recording in progress). Empty (same columns) when nothing is recorded."""
    import pandas as pd

    rows = []
    for path in sorted(Path(results_dir).glob(f"{STUDY}-*.json")):
        rec = json.loads(path.read_text())
        if complete_only and not rec.get("complete"):
            continue
        prov = rec.get("provenance", {})
        plans = {p["task"]: p for p in rec["plans"]}
        for r in rec["rows"]:
            p = plans[r["task"]]
            klr = p["kernel"]["kernel_lr"]
            rows.append({**r, "cell": r["task"], "task": p["data"], "n_train": p["overrides"]["n_train"],
                         "d_model": p["train"]["d_model"],
                         "kernel_lr": next((k for k, v in KERNEL_LRS.items() if v == klr), str(klr)),
                         "steps": p["train"]["steps"], "seed": rec["seed"], "device": prov.get("device"),
                         "commit": prov.get("commit"), "date": prov.get("date"), "file": path.name})
    table = pd.DataFrame(rows, columns=list(RUN_COLUMNS) if not rows else None)
    if rows:
        table = table[[c for c in RUN_COLUMNS]]
    table["gap"] = table["train_accuracy"] - table["test_accuracy"]
    return table


def _se_binomial(p, n):
    """Standard error of an accuracy p measured on n test examples."""
    return math.sqrt(max(p * (1 - p), 1e-12) / n)


def cell_summary(runs):
    """Per (cell, variant): seeds, test accuracy mean and standard error over seeds (with one seed: the test set's
    binomial error, marked by seeds = 1), train accuracy, train–test gap, kernel sparsity, the share of taps Squash
    lets train after training (NaN without Squash) and kernel roughness in time (total variation) and frequency
    (spectral TV)."""
    import pandas as pd

    out = []
    for (c, v), g in runs.groupby(["cell", "variant"], sort=False):
        acc = g["test_accuracy"].to_numpy()
        se = (acc.std(ddof=1) / math.sqrt(len(acc)) if len(acc) > 1
              else _se_binomial(acc[0], int(g["n_test"].iloc[0])))
        out.append({"cell": c, "variant": v, "seeds": len(acc), "test_accuracy": acc.mean(), "se": se,
                    "train_accuracy": g["train_accuracy"].mean(), "gap": g["gap"].mean(),
                    "sparsity": g["sparsity"].mean(), "trainable_fraction": g["trainable_fraction"].mean(),
                    "total_variation": g["total_variation"].mean(), "spectral_tv": g["spectral_tv"].mean()})
    return pd.DataFrame(out)


def paired_differences(runs, base="long conv", others=("+ Squash", "+ Smooth")):
    """Per (cell, seed, other): test accuracy of `other` − `base` on the same seed (same data order and init of
    everything but the kernel regulariser). Columns cell, seed, other, difference (accuracy points, × 100)."""
    import pandas as pd

    wide = runs.pivot_table(index=["cell", "seed"], columns="variant", values="test_accuracy")
    rows = []
    for o in others:
        if o in wide and base in wide:
            d = (wide[o] - wide[base]).dropna()
            rows += [{"cell": c, "seed": s, "other": o, "difference": 100 * x} for (c, s), x in d.items()]
    return pd.DataFrame(rows, columns=["cell", "seed", "other", "difference"])


def differences(runs, base="long conv", others=("+ Squash", "+ Smooth"), z=2.0):
    """Per (cell, other): the mean paired difference `other` − `base` in accuracy points over seeds, its standard
    error (over seeds when ≥ 2; with one seed, the test-set error of a difference of two accuracies,
    √2·√(p(1−p)/n)), a 95 % interval (Student t over seeds; normal with one seed), and `verdict`: "paper" when the
    difference exceeds `z` standard errors in the paper's direction, "opposite" beyond them the other way, else
    "none"."""
    import pandas as pd
    from scipy import stats

    per_seed = paired_differences(runs, base, others)
    n_test = runs.groupby("cell")["n_test"].first()
    base_acc = runs[runs.variant == base].groupby("cell")["test_accuracy"].mean()
    rows = []
    for (c, o), g in per_seed.groupby(["cell", "other"], sort=False):
        d = g["difference"].to_numpy()
        if len(d) > 1:
            se = d.std(ddof=1) / math.sqrt(len(d))
            half = stats.t.ppf(0.975, len(d) - 1) * se
        else:
            se = 100 * math.sqrt(2) * _se_binomial(base_acc[c], int(n_test[c]))
            half = 1.96 * se
        mean = d.mean()
        verdict = "paper" if mean > z * se else "opposite" if mean < -z * se else "none"
        rows.append({"cell": c, "other": o, "seeds": len(d), "difference": mean, "se": se, "ci_low": mean - half,
                     "ci_high": mean + half, "verdict": verdict})
    return pd.DataFrame(rows, columns=["cell", "other", "seeds", "difference", "se", "ci_low", "ci_high", "verdict"])


TABLE_BEGIN = "<!-- regime:begin (generated by `python -m lconv.regime table --readme`; do not edit by hand) -->"
TABLE_END = "<!-- regime:end -->"


def differences_markdown(runs, indent: str = "", base="long conv", others=("+ Squash", "+ Smooth")) -> str:
    """The study's table as Markdown, one row per cell (sorted by name): seeds, the plain model's mean test accuracy
    (%), and per regulariser `differences`' mean ± SE in points with its verdict ("not recorded" where a cell lacks
    the variant). The README's table is this text (`python -m lconv.regime table --readme`)."""
    diffs = differences(runs, base, others)
    base_acc = runs[runs.variant == base].groupby("cell")["test_accuracy"].mean()
    head = ["cell", "seeds", f"{base} %"] + [f"{o.removeprefix('+ ')} − plain (points)" for o in others]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for c in sorted(base_acc.index):
        mine = diffs[diffs.cell == c].set_index("other")
        seeds = int(mine["seeds"].max()) if len(mine) else int(runs[(runs.cell == c) & (runs.variant == base)]
                                                                  ["seed"].nunique())
        cols = [c, str(seeds), f"{100 * base_acc[c]:.1f}"]
        for o in others:
            cols.append(f"{mine.at[o, 'difference']:+.1f} ± {mine.at[o, 'se']:.1f} ({mine.at[o, 'verdict']})"
                        if o in mine.index else "not recorded")
        lines.append("| " + " | ".join(cols) + " |")
    return "\n".join(indent + line for line in lines) + "\n"


def update_readme(readme=Path("README.md"), results_dir=REGIME_DIR) -> str:
    """Rewrite the block between TABLE_BEGIN and TABLE_END in `readme` with `differences_markdown` of the complete
    recordings in `results_dir` (indented like the begin marker). Raises ValueError when the markers are missing."""
    readme = Path(readme)
    text = readme.read_text()
    if TABLE_BEGIN not in text or TABLE_END not in text:
        raise ValueError(f"{readme} has no regime table block: add the two lines\n{TABLE_BEGIN}\n{TABLE_END}")
    before, rest = text.split(TABLE_BEGIN, 1)
    _, after = rest.split(TABLE_END, 1)
    indent = before[before.rfind("\n") + 1:]
    block = differences_markdown(load_regime(results_dir, complete_only=True), indent=indent)
    new = before + TABLE_BEGIN + "\n" + block + indent + TABLE_END + after
    atomic_write(readme, lambda f: f.write(new), mode="w")
    return block


def readme_table(readme=Path("README.md")) -> str:
    """The regime table block of `readme` as it stands (what `update_readme` would replace)."""
    text = Path(readme).read_text()
    before, rest = text.split(TABLE_BEGIN, 1)
    block, _ = rest.split(TABLE_END, 1)
    indent = before[before.rfind("\n") + 1:]
    return block.removeprefix("\n").removesuffix(indent)


def regime_verdict(diffs) -> str:
    """Sentences from `differences`: which cells show the paper's gap (regulariser beats plain by > 2 SE), which the
    opposite, and how many show neither; names the seeds behind each."""
    if diffs.empty:
        return "No regime cell has been recorded yet."
    lines = []
    for o, g in diffs.groupby("other", sort=False):
        paper = g[g.verdict == "paper"]
        opposite = g[g.verdict == "opposite"]
        fmt = lambda r: f"{r.cell} ({r.difference:+.1f} ± {r.se:.1f} points, {r.seeds} seed{'s' * (r.seeds > 1)})"  # noqa: E731
        head = f"{o} − long conv over {len(g)} cells: "
        parts = []
        if len(paper):
            parts.append("the paper's direction beyond two standard errors in " + "; ".join(map(fmt, paper.itertuples())))
        if len(opposite):
            parts.append("the opposite beyond two standard errors in " + "; ".join(map(fmt, opposite.itertuples())))
        rest = len(g) - len(paper) - len(opposite)
        if rest:
            parts.append(f"no difference beyond two standard errors in {rest} cell{'s' * (rest > 1)}")
        lines.append(head + "; ".join(parts) + ".")
    return "\n".join(lines)


def rerun_cell(name: str, *, seed: int = 0, variants=("long conv", "+ Squash"), steps: int | None = None,
               device="auto", ckpt_dir=None, log: bool = False):
    """Train `variants` of cell `name` again with exactly the recorded settings (plan(name), profile "quick" data,
    `seed`), without writing a record: the notebook's live reproduction of a recorded cell. `steps` shortens every
    run (the smoke profile; warm-up scaled) — then it is no longer the recorded run. Returns the Comparison
    (`.table` with test/train accuracy per variant, `.kernels` {variant: {"init", "trained"}: (layers, C, H, L)}).

    On a CPU with one thread the rerun of a recorded seed repeats the recorded numbers (same data, init and order);
    Raises ValueError for an unknown cell or variant."""
    from lconv.data import get_task
    from lconv.experiments import compare
    from lconv.experiments.squash_smooth import squash_smooth_variants

    p = plan(name)
    chosen = [v for v in squash_smooth_variants(**p.kernel) if v.name in variants]
    if len(chosen) != len(variants):
        known = [v.name for v in squash_smooth_variants(**p.kernel)]
        raise ValueError(f"variants {list(variants)}: choose among {known}")
    train = dict(p.train)
    if steps is not None:
        train.update(steps=steps, warmup=steps // 10, eval_every=max(1, steps // 2))
    task = get_task(p.data, profile="quick", seed=seed, **p.overrides)
    return compare(task, chosen, **train, seed=seed, device=device, ckpt_dir=ckpt_dir, log=log)


REPEAT_TOL = 1e-3  # test accuracy: a rerun within this of its record is the recorded run repeated


def rerun_versus_record(rerun_table, runs, name: str, *, seed: int = 0):
    """Test accuracy per variant of a live rerun (`rerun_table`, e.g. rerun_cell(...).table) beside the recorded run
    of the same cell and seed in `runs` (load_regime): DataFrame indexed by variant, columns live and recorded
    (NaN where nothing is recorded)."""
    import pandas as pd

    live = rerun_table.set_index("variant").test_accuracy
    rec = runs[(runs.cell == name) & (runs.seed == seed)].set_index("variant").test_accuracy
    return pd.DataFrame({"live": live, "recorded": rec.reindex(live.index)})


def rerun_statement(rerun_table, runs, name: str, *, seed: int = 0, base="long conv", other="+ Squash") -> str:
    """One sentence: the live rerun's `other` − `base` against the recorded run of the same cell and seed, and
    whether the rerun repeated the recorded accuracies (within REPEAT_TOL)."""
    both = rerun_versus_record(rerun_table, runs, name, seed=seed)
    live, rec = both.live, both.recorded
    d_live = 100 * (live[other] - live[base])
    if rec[[base, other]].isna().any():
        return f"{name}, seed {seed}: rerun {other} − {base} = {d_live:+.1f} points; no recorded run to compare."
    d_rec = 100 * (rec[other] - rec[base])
    same = bool(((live - rec)[[base, other]].abs() < REPEAT_TOL).all())
    return (f"{name}, seed {seed}: rerun now {other} − {base} = {d_live:+.1f} points "
            f"({100 * live[base]:.1f} → {100 * live[other]:.1f} %); recorded {d_rec:+.1f} points — "
            + ("the same run, repeated." if same else "not the same numbers (another machine, thread count or code)."))


def plot_differences(runs, base="long conv", others=("+ Squash", "+ Smooth"), ax=None):
    """Seaborn point plot of the per-seed paired differences `other` − `base` per cell: the mean with ± 2 standard
    errors over seeds (cells with one seed show a point without a bar); zero marked. Returns the figure."""
    import matplotlib.pyplot as plt
    import seaborn as sns

    d = paired_differences(runs, base, others)
    if ax is None:
        _, ax = plt.subplots(figsize=(8, 0.45 * max(4, d["cell"].nunique()) + 1))
    if d.empty:
        ax.text(0.5, 0.5, "no cell with both variants recorded yet", ha="center", transform=ax.transAxes)
    else:
        dodge = 0.4 if d["other"].nunique() > 1 else False  # seaborn divides by (hue levels − 1)
        sns.pointplot(data=d, x="difference", y="cell", hue="other", errorbar=("se", 2), dodge=dodge,
                      linestyle="none", ax=ax, order=sorted(d["cell"].unique()))
    ax.axvline(0, color="k", lw=0.8)
    ax.set_xlabel(f"test accuracy − {base} (points; bars ± 2 SE over seeds)")
    ax.set_ylabel("")
    ax.figure.tight_layout()
    return ax.figure


def main(argv=None):
    p = argparse.ArgumentParser(prog="python -m lconv.regime", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="cmd", required=True)
    r = sub.add_parser("record", help="record a stage (resumable; run again to go on)")
    r.add_argument("--stage", default="grid", choices=sorted(STAGES))
    r.add_argument("--cells", nargs="*", help="only these cells of the stage (names as in CELLS)")
    r.add_argument("--seeds", nargs="*", type=int, help="only these seeds")
    r.add_argument("--budget-s", type=float, default=None, help="stop cleanly after this many wall seconds")
    r.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's)")
    r.add_argument("--device", default="auto")
    r.add_argument("--out", default=str(REGIME_DIR))
    sub.add_parser("status", help="recorded and pending runs per file")
    t = sub.add_parser("table", help="the table of differences (complete recordings) as Markdown")
    t.add_argument("--readme", action="store_true", help="also rewrite README.md's regime table block")
    args = p.parse_args(argv)
    if args.cmd == "record":
        if args.threads:
            import torch
            torch.set_num_threads(args.threads)
        recs = record_stage(args.stage, seeds=args.seeds, cells=args.cells, out_dir=args.out, device=args.device,
                            budget_s=args.budget_s)
        for rec in recs:
            state = "complete" if rec["complete"] else f"{len(rec['pending'])} runs pending"
            print(f"{Path(rec['path']).name}: {rec['plans'][0]['task']}, seed {rec['seed']}, "
                  f"{len(rec['rows'])} runs recorded, {state}")
    elif args.cmd == "table":
        print(update_readme() if args.readme else differences_markdown(load_regime(complete_only=True)), end="")
    else:
        for path in sorted(REGIME_DIR.glob(f"{STUDY}-*.json")):
            rec = json.loads(path.read_text())
            print(f"{path.name}: {rec['plans'][0]['task']}, seed {rec['seed']}, {len(rec['rows'])} runs, "
                  f"pending {len(rec.get('pending', []))}")
        for stage, todo in stage_status(REGIME_DIR).items():
            print(f"stage {stage}: " + ("complete" if not todo else "to record: " + "; ".join(
                f"{c} seed {s}" for c, s in todo)))


if __name__ == "__main__":
    main(sys.argv[1:])
