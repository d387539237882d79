r"""Record notebook 02's comparison at a chosen scale into `results/`, in time-boxed chunks that resume.

    python -m lconv.record --profile full --data generated --tasks lra_listops lra_pathfinder \
        --steps 4000 --set lra_pathfinder.n_train=50000 --budget-s 540

trains the five models of the comparison (long conv, + Squash, + Smooth, + both, S4D: lconv.experiments) on each
task with the profile's settings (SQUASH_SMOOTH; `--steps` shortens every run, scaling its warm-up; `--kernel
kernel_lr=1e-3` changes a kernel option of every variant), and writes one
row per finished run to `results/squash-smooth-<device>-<profile>-<key>.json`, atomically, with provenance. The
key hashes everything that sets the numbers, so the same command finds its file again: finished runs are skipped,
the interrupted one resumes from its checkpoint (`--ckpt-dir`), and the command says when the recording is complete.
`--budget-s` stops cleanly before a wall-clock limit (a 10-minute device command, say); run it again to go on.

`--data generated` trains on the generated LRA-style stand-ins (STAND_INS: ListOps from the LRA grammar and
Pathfinder drawn here, at the profile's sizes — the LRA sizes in "full") where the LRA release files are not on the
machine; every row names the data it trained on. Notebook 02 shows every recording it finds (`load_records`).
"""
from __future__ import annotations

import argparse
import dataclasses
import hashlib
import json
import math
import sys
import time
from pathlib import Path

from lconv.data import PROFILES, get_task
from lconv.experiments import compare, scaled_steps, settings
from lconv.experiments.squash_smooth import SQUASH_SMOOTH, chance_level, squash_smooth_variants, task_settings
from lconv.results import RESULTS_DIR, device_name, pick_device, provenance, slug, write_json_atomic

RECORDED_DIR = RESULTS_DIR  # tracked: recordings are committed (lconv.results.RESULTS_DIR)
DATA_SOURCES = ("release", "generated")
# LRA tasks → generated tasks of the same kind; at profile "full" their sizes are the LRA release's
STAND_INS = {"lra_listops": "listops", "lra_pathfinder": "pathfinder32", "lra_path128": "path128",
             "lra_path256": "path256"}
ROW_KEYS = ("task", "data", "variant", "mixer", "test_accuracy", "val_accuracy", "train_accuracy", "n_test", "chance",
            "final_train_loss", "steps", "params", "train_time_s", "sparsity", "total_variation", "high_freq_energy",
            "spectral_tv", "sparsity_init", "total_variation_init", "high_freq_energy_init", "spectral_tv_init",
            "trainable_fraction", "trainable_fraction_init")


@dataclasses.dataclass
class Plan:
    """One task of a recording: its settings name, the data task it trains on, and the settings used."""

    task: str  # key of SQUASH_SMOOTH[profile]["tasks"]
    data: str  # lconv.data task name
    train: dict  # compare() keyword arguments
    overrides: dict  # get_task() keyword arguments
    kernel: dict  # squash_smooth_variants() keyword arguments


KERNEL_KEYS = ("lam", "kernel_lr", "smooth_window", "channels", "s4d_lr", "kernel_dropout", "bidirectional",
               "d_state", "init")  # squash_smooth_variants' options


def make_plans(profile: str, tasks=None, *, steps: int | None = None, data: str = "release",
               overrides: dict | None = None, kernel: dict | None = None) -> list[Plan]:
    """The plans of a recording: SQUASH_SMOOTH[profile]'s tasks (all, or `tasks`), shortened to `steps`.

    data="generated" trains each LRA task on its STAND_INS task; overrides: {task: {get_task keyword: value}}
    (key "*" for every task), e.g. {"lra_pathfinder": {"n_train": 50000}}; kernel: options of every task's
    variants (KERNEL_KEYS), e.g. {"kernel_lr": 1e-3}.
    """
    unknown = sorted(set(kernel or {}) - set(KERNEL_KEYS))
    if unknown:
        raise ValueError(f"unknown kernel option(s) {unknown}; known: {list(KERNEL_KEYS)}")
    if data not in DATA_SOURCES:
        raise ValueError(f"data must be one of {DATA_SOURCES}, got {data!r}")
    cfg = settings(SQUASH_SMOOTH, profile)
    tasks = list(cfg["tasks"]) if not tasks else list(tasks)
    overrides = overrides or {}
    unknown = sorted(set(overrides) - set(tasks) - {"*"})
    if unknown:
        raise ValueError(f"overrides name task(s) {unknown} that are not recorded; tasks: {tasks}")
    plans = []
    for name in tasks:
        train, task_overrides, task_kernel = task_settings(cfg, name)
        source = name
        if data == "generated" and name.startswith("lra_"):
            if name not in STAND_INS:
                raise ValueError(f"{name} has no generated stand-in (those are {sorted(STAND_INS)}); record it with "
                                 "--data release and the LRA files under $LCONV_DATA (lconv.data.lra says where)")
            source = STAND_INS[name]
        task_overrides.update(overrides.get("*", {}), **overrides.get(name, {}))
        plans.append(Plan(name, source, scaled_steps(train, steps), task_overrides, {**task_kernel, **(kernel or {})}))
    return plans


def record_path(out_dir, plans, *, profile: str, seed: int, device, study: str = "squash-smooth") -> Path:
    """The file a recording writes: named by study, device, profile and a hash of everything that sets its numbers."""
    blob = json.dumps({"plans": [dataclasses.asdict(p) for p in plans], "profile": profile, "seed": seed},
                      sort_keys=True, default=str)
    key = hashlib.sha1(blob.encode()).hexdigest()[:8]
    return Path(out_dir) / f"{study}-{slug(device_name(device), 'device')}-{profile}-{key}.json"


def _clean(value):
    """JSON-friendly scalars: numpy → Python, NaN → None."""
    if hasattr(value, "item"):
        value = value.item()
    if isinstance(value, float) and math.isnan(value):
        return None
    return value


def record(plans: list[Plan], *, profile: str, out_dir=RECORDED_DIR, seed: int = 0, device="auto",
           ckpt_dir="build/checkpoints/recorded", budget_s: float | None = None, log: bool = True,
           study: str = "squash-smooth") -> dict:
    """Train every run of `plans` not yet in its record file, writing each finished run's row; return the record.

    study: the record file's name prefix and "kind" ("squash-smooth": notebook 02 §10; "regime": lconv.regime, notebook 02 §3).

    The record: {"kind", "profile", "seed", "plans", "rows", "complete", "pending", "provenance", "path"}; "pending"
    lists the (task, variant) runs still to do when `budget_s` (wall seconds for this call) ran out first.
    """
    dev = pick_device(device) if isinstance(device, str) else device
    path = record_path(out_dir, plans, profile=profile, seed=seed, device=dev, study=study)
    rec = json.loads(path.read_text()) if path.exists() else {
        "kind": study.replace("-", "_"), "profile": profile, "seed": seed,
        "plans": [dataclasses.asdict(p) for p in plans], "rows": [], "started": provenance(dev)["date"]}
    done = {(r["task"], r["variant"]) for r in rec["rows"]}
    deadline = None if budget_s is None else time.perf_counter() + budget_s
    todo = [(p, v) for p in plans for v in squash_smooth_variants(**p.kernel) if (p.task, v.name) not in done]
    tasks = {}
    while todo:
        plan, variant = todo[0]
        left = None if deadline is None else deadline - time.perf_counter()
        if left is not None and left <= 0:
            break
        if plan.task not in tasks:  # generating a task's data counts towards the budget
            task = get_task(plan.data, profile=profile, seed=seed, **plan.overrides)
            tasks[plan.task] = task, chance_level(task)
            left = None if deadline is None else max(1e-3, deadline - time.perf_counter())
        task, chance = tasks[plan.task]
        run = compare(task, [variant], **plan.train, seed=seed, device=dev, ckpt_dir=ckpt_dir,
                      time_limit_s=left, log=log)
        row = run.table.iloc[0].to_dict()
        if not row["complete"]:
            break
        row.update(task=plan.task, data=plan.data, chance=chance)
        rec["rows"].append({k: _clean(row[k]) for k in ROW_KEYS})
        todo.pop(0)
        _save(path, rec, todo, dev)
    if not path.exists():  # a first call that finished no run still leaves its file, listing what is pending
        _save(path, rec, todo, dev)
    rec.update(complete=not todo, pending=[[p.task, v.name] for p, v in todo])
    return {**rec, "path": str(path)}


def _save(path: Path, rec: dict, todo, dev) -> None:
    """Write the record with its state and the provenance of this write (only when a run was added, or on creation:
    re-running a finished recording leaves its file, and the commit and date in it, untouched)."""
    rec.update(complete=not todo, pending=[[p.task, v.name] for p, v in todo], provenance=provenance(dev))
    write_json_atomic(path, rec)


def load_records(results_dir=RECORDED_DIR):
    """Every row of every recording in `results_dir` (squash-smooth-*.json) as a DataFrame, each row with its
    recording's profile, device, commit, date, file and whether the recording is complete. Empty if none."""
    import pandas as pd

    rows = []
    for path in sorted(Path(results_dir).glob("squash-smooth-*.json")):
        rec = json.loads(path.read_text())
        prov = rec.get("provenance", {})
        plans = {p["task"]: describe_plan(p) for p in rec.get("plans", [])}
        for r in rec.get("rows", []):
            rows.append({**r, "profile": rec.get("profile"), "device": prov.get("device"), "torch": prov.get("torch"),
                         "commit": prov.get("commit"), "date": prov.get("date"), "file": path.name,
                         "recording_complete": rec.get("complete", False), "settings": plans.get(r["task"], "")})
    return pd.DataFrame(rows, columns=None if rows else [*ROW_KEYS, "profile", "device", "torch", "commit", "date",
                                                         "file", "recording_complete", "settings"])


def describe_plan(plan: dict) -> str:
    """One line of a recorded plan's settings: model and training, then the data's overrides."""
    t, k = plan["train"], plan["kernel"]
    line = (f"width {t['d_model']}, {t['n_layers']} layers, {t['steps']} steps (warm-up {t.get('warmup', 0)}), "
            f"batch {t['batch_size']}, lr {t['lr']:g}, kernel lr {k['kernel_lr']:g}, λ {k['lam']:g}")
    data = ", ".join(f"{key} {value}" for key, value in plan.get("overrides", {}).items())
    return line + (f"; data: {data}" if data else "")


def _parse_sets(items) -> dict:
    """["lra_pathfinder.n_train=50000", "n_val=500"] → {"lra_pathfinder": {"n_train": 50000}, "*": {"n_val": 500}}."""
    out = {}
    for item in items or []:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise ValueError(f"--set takes TASK.KEY=VALUE or KEY=VALUE, got {item!r}")
        task, _, name = key.rpartition(".")
        try:
            value = json.loads(value)
        except json.JSONDecodeError:
            pass  # a plain string
        out.setdefault(task or "*", {})[name] = value
    return out


def main(argv=None) -> dict:
    p = argparse.ArgumentParser(prog="python -m lconv.record", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--profile", default="quick", choices=PROFILES, help="settings (SQUASH_SMOOTH)")
    p.add_argument("--tasks", nargs="*", help="tasks of the profile to record (default: all of them)")
    p.add_argument("--steps", type=int, default=None, help="optimiser steps per run (default: the profile's)")
    p.add_argument("--data", default="release", choices=DATA_SOURCES,
                   help="release: the tasks' own data; generated: LRA tasks on their generated stand-ins")
    p.add_argument("--set", dest="sets", action="append", metavar="[TASK.]KEY=VALUE",
                   help="a get_task override, for one task or (without TASK.) for all; repeatable")
    p.add_argument("--kernel", dest="kernel", action="append", metavar="KEY=VALUE",
                   help=f"a kernel option for every task's variants, one of {', '.join(KERNEL_KEYS)}; repeatable")
    p.add_argument("--budget-s", type=float, default=None, help="stop cleanly after this many wall seconds")
    p.add_argument("--out", default=str(RECORDED_DIR), help="where the record file goes (default: results/)")
    p.add_argument("--ckpt-dir", default="build/checkpoints/recorded", help="run checkpoints (resumed from)")
    p.add_argument("--device", default="auto")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's)")
    args = p.parse_args(argv)
    if args.threads:
        import torch
        torch.set_num_threads(args.threads)
    try:
        kernel = _parse_sets(args.kernel)
        if set(kernel) - {"*"}:
            raise ValueError(f"--kernel takes KEY=VALUE for every task, got {args.kernel}")
        plans = make_plans(args.profile, args.tasks, steps=args.steps, data=args.data,
                           overrides=_parse_sets(args.sets), kernel=kernel.get("*", {}))
    except ValueError as e:
        p.error(str(e))
    rec = record(plans, profile=args.profile, out_dir=args.out, seed=args.seed, device=args.device,
                 ckpt_dir=args.ckpt_dir, budget_s=args.budget_s)
    for r in rec["rows"]:
        print(f"{r['task']:>15} ({r['data']}) | {r['variant']:<18} test acc {r['test_accuracy']:.3f}  "
              f"sparsity {r['sparsity']:.2f}  spectral TV {r['spectral_tv']:.3f}  {r['train_time_s']:.0f} s")
    n_runs = len(rec["rows"]) + len(rec["pending"])
    state = "complete" if rec["complete"] else (f"{len(rec['pending'])} of {n_runs} runs still to do: run the "
                                                "same command again to go on")
    print(f"{rec['path']}: {len(rec['rows'])} runs recorded, {state}")
    return rec


if __name__ == "__main__":
    main(sys.argv[1:])
