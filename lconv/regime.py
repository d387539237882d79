r"""The regime study of notebook 02: where does a plain long convolution lose to Squash / Smooth, on real data?

The paper's gap (long conv 69.5 → 86.1 LRA average with Squash, ../shared/PAPER.md claim 1) is a generalisation
gap: an unregularised kernel as long as the sequence has H·L free taps per layer to fit noise with. So the study
trains the five models of the comparison (long conv, + Squash, + Smooth, + both, S4D: lconv.experiments
.squash_smooth_variants) with everything else equal on sequential Fashion-MNIST, raster order ("smnist", L = 784)
and a fixed pixel permutation ("psmnist": long-range dependencies), on small training subsets trained for many
epochs, at the paper's kernel learning rate (1e-3) and the quick profile's (2e-2), at two widths. One cell = one
point of that grid; `CELLS` names them, `STAGES` says which cells and seeds are recorded.

    python -m lconv.regime record --stage grid --budget-s 3000      # one seed over the grid, resumable
    python -m lconv.regime record --stage seeds                      # seeds 1, 2 in the cells that matter
    python -m lconv.regime status                                     # what is recorded, what is pending

Each (cell, seed) writes `results/regime/regime-<device>-quick-<hash>.json` through lconv.record.record (atomic rows,
provenance, checkpoints under build/checkpoints/regime that resume an interrupted run). `load_regime` reads every
such file into one table; `cell_summary` gives, per cell and variant, test accuracy mean ± standard error over
seeds, the train–test gap and kernel roughness; `differences` the Squash − plain (and Smooth − plain) accuracy
difference per cell with its 95% interval over seeds.
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

from lconv.record import RECORDED_DIR, Plan, record

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


def cell(task: str, n_train: int, d_model: int, kernel_lr: str, steps: int) -> dict:
    """One grid point: task ("smnist" | "psmnist"), training images, width, kernel lr name (KERNEL_LRS), steps."""
    if task not in ("smnist", "psmnist"):
        raise ValueError(f"cell: task must be 'smnist' or 'psmnist', got {task!r}")
    if kernel_lr not in KERNEL_LRS:
        raise ValueError(f"cell: kernel_lr must be one of {sorted(KERNEL_LRS)}, got {kernel_lr!r}")
    return dict(task=task, n_train=n_train, d_model=d_model, kernel_lr=kernel_lr, steps=steps)


def cell_name(c: dict) -> str:
    """The cell's label in record files and tables, e.g. 'psmnist n1000 w32 klr-paper'."""
    return f"{c['task']} n{c['n_train']} w{c['d_model']} klr-{c['kernel_lr']}"


# Steps: ≈ 48 epochs at 1000 images, 24 at 4000 (batch 32): the training accuracy saturates at 1000 images.
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
]}

# What is recorded: (cells, seeds). "grid": one seed everywhere; "seeds": two more seeds in the two cells at the
# smallest data size and the width of the quick profile, at the paper's and the quick kernel lr.
STAGES = {
    "grid": (list(CELLS), (0,)),
    "seeds": (["psmnist n1000 w32 klr-paper", "psmnist n1000 w32 klr-quick"], (1, 2)),
}


def plan(name: str) -> Plan:
    """The lconv.record Plan of cell `name`: its train, data and kernel settings on top of BASE."""
    if name not in CELLS:
        raise ValueError(f"unknown regime cell {name!r}; cells: {list(CELLS)}")
    c = CELLS[name]
    train = dict(BASE["train"], d_model=c["d_model"], steps=c["steps"], warmup=c["steps"] // 10)
    kernel = dict(BASE["kernel"], kernel_lr=KERNEL_LRS[c["kernel_lr"]])
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
    else:
        for path in sorted(REGIME_DIR.glob(f"{STUDY}-*.json")):
            rec = json.loads(path.read_text())
            print(f"{path.name}: {rec['plans'][0]['task']}, seed {rec['seed']}, {len(rec['rows'])} runs, "
                  f"pending {len(rec.get('pending', []))}")


if __name__ == "__main__":
    main(sys.argv[1:])
