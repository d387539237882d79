"""Notebook 02 (Squash and Smooth): its settings, the five variants, and the verdicts in words.

    from lconv.experiments import settings, compare
    from lconv.experiments.squash_smooth import SQUASH_SMOOTH, task_settings, squash_smooth_variants
    cfg = settings(SQUASH_SMOOTH, "quick")
    train, overrides, kernel = task_settings(cfg, "smnist")

SQUASH_SMOOTH's entries are also what lconv.record / lconv.regime record (their file names hash them), so its values
change only with a new recording.
"""
from __future__ import annotations

import math

import torch

from lconv.experiments import Variant, long_conv_variant
from lconv.paper import LRA_AVERAGE, SCIFAR, SCIFAR_INIT_GAIN

# Notebook 02: no regularisation / + Squash / + Smooth / + both / S4D on several tasks, a λ sweep, random vs decay
# init. Per task: "train" feeds compare(), "overrides" feeds get_task(), "kernel" (optional) updates the profile's
# "kernel" options, which feed squash_smooth_variants / lam_sweep_variants / init_variants.
_QUICK = dict(d_model=32, n_layers=2, lr=1e-2, batch_size=32, prenorm=False)
SQUASH_SMOOTH = {
    "smoke": dict(
        kernel=dict(lam=0.002, kernel_lr=2e-2, smooth_window=7, channels=1, s4d_lr=1e-2),
        tasks={"digits": dict(train=dict(d_model=16, n_layers=1, steps=100, lr=1e-2, batch_size=32, warmup=10,
                                         prenorm=False), overrides={})},
        sweep=dict(task="digits", lams=(0.0, 0.002, 0.004)),
        init=dict(task="digits"),
        lra_tasks=()),
    "quick": dict(
        kernel=dict(lam=0.002, kernel_lr=2e-2, smooth_window=7, channels=1, s4d_lr=1e-2),
        tasks={
            "smnist": dict(train=dict(_QUICK, steps=250, warmup=25), overrides=dict(n_val=500, n_test=2000)),
            "listops": dict(train=dict(_QUICK, steps=800, warmup=80),
                            overrides=dict(n_train=8000, min_len=50, max_len=250, seq_len=256, n_val=250,
                                           n_test=1000)),
            # Pathfinder-32 stays at chance on a CPU budget (400 steps, with or without bidirectional kernels,
            # pre-norm and last-token pooling: the model memorises 2000 images but does not generalise), so it
            # gets a token 40 steps: its kernels still show what Squash and Smooth do, its accuracy says nothing.
            "pathfinder32": dict(train=dict(_QUICK, steps=40, warmup=4),
                                 overrides=dict(n_train=1000, n_val=200, n_test=200)),
        },
        sweep=dict(task="smnist", lams=(0.0, 0.001, 0.002, 0.004)),
        init=dict(task="smnist"),
        lra_tasks=()),
    "full": dict(  # safari configs/experiment/lra/long-conv-lra-*.yaml (their norm is BatchNorm; LayerNorm here)
        kernel=dict(lam=0.002, kernel_lr=1e-3, smooth_window=7, channels=2, s4d_lr=1e-3, kernel_dropout=0.2),
        tasks={
            "lra_listops": dict(train=dict(d_model=128, n_layers=8, steps=80_000, warmup=10_000, lr=1e-2,
                                           weight_decay=0.05, batch_size=50, prenorm=False, eval_every=2000),
                                kernel=dict(lam=0.002, kernel_lr=5e-4, kernel_dropout=0.2), overrides={}),
            "lra_imdb": dict(train=dict(d_model=256, n_layers=6, steps=50_000, warmup=5000, lr=1e-2,
                                        weight_decay=0.05, batch_size=16, prenorm=True, eval_every=2000),
                             kernel=dict(lam=0.003, kernel_lr=1e-3, kernel_dropout=0.2), overrides={}),
            "lra_aan": dict(train=dict(d_model=256, n_layers=6, steps=50_000, warmup=2500, lr=1e-2,
                                       weight_decay=0.05, batch_size=32, prenorm=True, eval_every=2000),
                            kernel=dict(lam=0.004, kernel_lr=1e-4, kernel_dropout=0.1), overrides={}),
            "cifar_gray": dict(train=dict(d_model=512, n_layers=6, steps=200_000, warmup=1000, lr=1e-2,
                                          weight_decay=0.05, batch_size=50, prenorm=False, dropout=0.1,
                                          eval_every=5000),
                               kernel=dict(lam=0.003, kernel_lr=1e-3, kernel_dropout=0.2), overrides={}),
            "lra_pathfinder": dict(train=dict(d_model=256, n_layers=6, steps=500_000, warmup=2500, lr=4e-3,
                                              weight_decay=0.03, batch_size=64, prenorm=True, pool="last",
                                              eval_every=10_000),
                                   kernel=dict(lam=0.001, kernel_lr=1e-3, kernel_dropout=0.3, bidirectional=True),
                                   overrides={}),
            "lra_path128": dict(train=dict(d_model=256, n_layers=6, steps=500_000, warmup=10_000, lr=5e-4,
                                           weight_decay=0.05, batch_size=16, prenorm=True, eval_every=10_000),
                                kernel=dict(lam=0.001, kernel_lr=5e-4, kernel_dropout=0.3, bidirectional=True),
                                overrides={}),
            # sequential CIFAR (colour), the standalone script (PAPER.md): 300 epochs of 45k images at batch 50
            "cifar": dict(train=dict(d_model=256, n_layers=6, steps=270_000, warmup=1000, lr=1e-2,
                                     weight_decay=0.05, batch_size=50, prenorm=False, dropout=0.1, eval_every=5000),
                          kernel=dict(lam=0.001, kernel_lr=1e-3, kernel_dropout=0.2), overrides={}),
        },
        sweep=dict(task="cifar", lams=(0.0, 0.001, 0.002, 0.003)),
        init=dict(task="cifar"),
        # the six LRA tasks the paper averages (ListOps, Text, Retrieval, Image, Pathfinder, Path-X)
        lra_tasks=("lra_listops", "lra_imdb", "lra_aan", "cifar_gray", "lra_pathfinder", "lra_path128")),
}


def task_settings(cfg, name):
    """(train kwargs for compare, get_task overrides, kernel options) of task `name` in a SQUASH_SMOOTH entry."""
    if name not in cfg["tasks"]:
        raise ValueError(f"task {name!r} is not in this profile; choose one of {sorted(cfg['tasks'])}")
    spec = cfg["tasks"][name]
    return dict(spec["train"]), dict(spec.get("overrides", {})), {**cfg["kernel"], **spec.get("kernel", {})}


def squash_smooth_variants(lam=0.002, kernel_lr=1e-3, smooth_window=7, channels=1, s4d_lr=None,
                           kernel_dropout=0.0, bidirectional=False, d_state=64, init="random"):
    """The five models of the paper's first claim: long conv with no regularisation, + Squash, + Smooth, + both, S4D.

    Everything but the regulariser is shared. "long conv" has no kernel regularisation at all (λ = 0, no smoothing,
    no kernel dropout); the others use `kernel_dropout` as the paper's configs do.
    """
    if not lam > 0:
        raise ValueError(f"squash_smooth_variants: lam must be > 0 for the Squash variants, got {lam!r}")
    shared = dict(kernel_lr=kernel_lr, channels=channels, bidirectional=bidirectional, init=init)
    return [
        long_conv_variant("long conv", **shared),
        long_conv_variant("+ Squash", lam=lam, kernel_dropout=kernel_dropout, **shared),
        long_conv_variant("+ Smooth", smooth_window=smooth_window, kernel_dropout=kernel_dropout, **shared),
        long_conv_variant("+ Squash + Smooth", lam=lam, smooth_window=smooth_window, kernel_dropout=kernel_dropout,
                          **shared),
        Variant("S4D", "s4d", dict(channels=channels, bidirectional=bidirectional, d_state=d_state,
                                   lr=kernel_lr if s4d_lr is None else s4d_lr)),
    ]


def lam_sweep_variants(lams, *, kernel_lr=1e-3, channels=1, kernel_dropout=0.0, bidirectional=False,
                       init="random", **_ignored):
    """Long conv + Squash at each λ (λ = 0: no regularisation, as the "long conv" variant), named "λ = …"."""
    shared = dict(kernel_lr=kernel_lr, channels=channels, bidirectional=bidirectional, init=init)
    return [long_conv_variant(f"λ = {lam:g}", lam=lam, kernel_dropout=kernel_dropout if lam > 0 else 0.0, **shared)
            for lam in lams]


def init_variants(*, lam=0.002, kernel_lr=1e-3, channels=1, kernel_dropout=0.0, bidirectional=False, **_ignored):
    """Long conv + Squash from the two initialisations: random (randn·0.002) and exponential decay."""
    shared = dict(lam=lam, kernel_lr=kernel_lr, channels=channels, bidirectional=bidirectional,
                  kernel_dropout=kernel_dropout)
    return [long_conv_variant("random init", init="random", **shared),
            long_conv_variant("decay init", init="decay", **shared)]


def chance_level(task):
    """Accuracy of always predicting the most frequent test label."""
    ys = torch.tensor([int(task.test[i][1]) for i in range(len(task.test))])
    return torch.bincount(ys).max().item() / len(ys)


def accuracy_verdict(table, chance, base="long conv", other="+ Squash", margin=None):
    """One sentence per task, chosen from the measured test accuracies: did `other` beat `base` by > margin?

    table: compare() rows (any number of tasks); chance: task name → chance accuracy. margin=None: two standard
    errors of the difference of two accuracies on the task's test set, 2·sqrt(2·p(1 − p)/n_test) (one seed each,
    so this is a floor on the noise), or 0.02 when the table has no n_test column. A variant counts as having
    learned only if its validation accuracy (when the table has one) clears chance + margin as well as its test
    accuracy: a test score above chance with validation at chance is noise, not learning.
    """
    lines = []
    for task, rows in table.groupby("task", sort=False):
        acc = dict(zip(rows["variant"], rows["test_accuracy"]))
        if base not in acc or other not in acc:
            raise ValueError(f"accuracy_verdict: table for {task!r} lacks {base!r} or {other!r}")
        a, b, c = acc[base], acc[other], chance[task]
        m = margin
        if m is None:
            n = rows["n_test"].iloc[0] if "n_test" in rows else None
            p = (a + b) / 2
            m = 2 * math.sqrt(2 * p * (1 - p) / n) if n else 0.02
        held_out = rows[["test_accuracy", "val_accuracy"]] if "val_accuracy" in rows else rows[["test_accuracy"]]
        best = held_out.min(axis=1).max()  # min skips a missing validation score
        if best < c + m:
            on = "validation and test" if "val_accuracy" in rows else "test"
            lines.append(f"{task}: no variant learned beyond chance ({c:.1%}; best {best:.1%} on {on}) in this "
                         f"budget, so this task says nothing about the gap at this scale.")
        elif b - a > m:
            lines.append(f"{task}: {other} beats {base} by {100 * (b - a):.1f} points ({b:.1%} vs {a:.1%}): "
                         f"the paper's direction.")
        elif a - b > m:
            lines.append(f"{task}: {base} beats {other} by {100 * (a - b):.1f} points ({a:.1%} vs {b:.1%}): "
                         f"the opposite of the paper's gap.")
        else:
            lines.append(f"{task}: no accuracy gap at this scale ({other} {b:.1%} vs {base} {a:.1%}, within "
                         f"{100 * m:.1f} points, two standard errors on {task}'s test set).")
    return "\n".join(lines)


def smoothness_verdict(table, base="long conv", others=("+ Squash", "+ Smooth", "+ Squash + Smooth")):
    """One sentence per task and variant, from the trained kernels' total variation: smoother than `base` or not?"""
    lines = []
    for task, rows in table.groupby("task", sort=False):
        tv = dict(zip(rows["variant"], rows["total_variation"]))
        for o in others:
            if o not in tv:
                continue
            word = "smoother" if tv[o] < tv[base] else "rougher"
            lines.append(f"{task}: {o} kernels are {word} than {base}'s (total variation {tv[o]:.2f} vs "
                         f"{tv[base]:.2f}).")
    return "\n".join(lines)


def squashed_smoother_in_frequency(table):
    """The tasks on which the squashed kernels are smoother in frequency (spectral total variation) than the
    unregularised ones: the paper's claim 2 in its own terms holds on a task when it is listed."""
    stv = table.set_index(["task", "variant"])["spectral_tv"]
    tasks = list(table.task.unique())
    return [t for t in tasks if stv[t, "+ Squash"] < stv[t, "long conv"]]


def kernel_verdict(table, profile):
    """The verdict on the paper's "noisy unless regularised" in words, chosen from the trained kernels of compare()'s
    table (every task): in time (total variation), then in frequency (spectral total variation, and against init)."""
    tasks = list(table.task.unique())
    tv = table.set_index(["task", "variant"])["total_variation"]
    noisier = [t for t in tasks if tv[t, "long conv"] > tv[t, "+ Squash"]]
    if len(noisier) == len(tasks):
        lines = ["As in the paper: on every task the unregularised kernels are rougher than the squashed ones."]
    else:
        lines = [f"Unlike the paper's figure, at {profile} scale the unregularised kernels are rougher than the "
                 f"squashed ones on {len(noisier)} of {len(tasks)} tasks: here training itself makes them smooth (the "
                 f"gradient of a tap under mean pooling is nearly a running sum over lags, and Adam moves every tap by "
                 f"≈ lr), while Squash leaves a sparse comb of the taps that started above λ — sparse in time, but not "
                 f"smooth by total variation. The paper's figure is of kernels after full-scale training (10^5 steps "
                 f"at kernel lr 1e-3): the full profile checks it."]
    stv = table.set_index(["task", "variant"])["spectral_tv"]
    variants = [v for v in table.variant.unique() if v != "S4D"]
    lines.append("\nspectral total variation of the trained kernels (white noise ≈ 0.46; lower = smoother in "
                 "frequency):")
    lines.append(table.pivot(index="variant", columns="task", values="spectral_tv").loc[variants].round(3)
                 .to_string())
    smoother_f = squashed_smoother_in_frequency(table)
    lines.append(f"In frequency, the squashed kernels are smoother than the unregularised ones on {len(smoother_f)} "
                 f"of {len(tasks)} tasks" + (" — as in the paper." if len(smoother_f) == len(tasks) else
                                             f" ({', '.join(smoother_f) or 'none'}) — unlike the paper."))
    stv0 = table.set_index(["task", "variant"])["spectral_tv_init"]
    for v in ("long conv", "+ Squash"):
        rougher = [t for t in tasks if stv[t, v] > stv0[t, v]]
        lines.append(f"{v}: spectrum rougher after training than at init on {len(rougher)} of {len(tasks)} tasks "
                     f"(" + ", ".join(f"{t} {stv0[t, v]:.2f} → {stv[t, v]:.2f}" for t in tasks) + ")")
    return "\n".join(lines)


def init_verdict(task_name, a_rand, a_decay, tol=3.0):
    """Decay against random init in words (claim 3): robust when the accuracies differ by at most `tol` points."""
    gap = 100 * (a_decay - a_rand)
    return (f"{task_name}: decay init {a_decay:.1%} vs random {a_rand:.1%} ({gap:+.1f} points; paper on sCIFAR: "
            f"{SCIFAR_INIT_GAIN:+.1f}). " + (f"Robust to initialisation at this scale (within {tol:g} points)."
                                              if abs(gap) <= tol else
                                              f"Not robust at this scale: the two initialisations differ by more "
                                              f"than {tol:g} points."))


def paper_rows(table, cfg, profile, init_task, a_rand, a_decay):
    """The Results rows of §9 (keyword dicts for Results.add): the LRA-average rows with the paper's numbers
    (lconv.paper), each run's accuracy, the init rows, and the kernel-shape rows per task."""
    lra = [t for t in cfg["lra_tasks"] if t in cfg["tasks"]]
    avg_tasks = lra or list(cfg["tasks"])
    avg_label = ("LRA average over " if lra else f"mean over {profile} stand-ins ") + ", ".join(avg_tasks)
    mean_acc = table[table.task.isin(avg_tasks)].groupby("variant", sort=False).test_accuracy.mean()
    rows = [dict(claim=f"LRA average, {variant}" + (" (paper: S4)" if variant == "S4D" else ""), metric="accuracy %",
                 ours=100 * mean_acc[variant], paper=LRA_AVERAGE.get(variant), task=avg_label)
            for variant in mean_acc.index]
    rows += [dict(claim=f"{r.variant}", metric="test accuracy %", ours=100 * r.test_accuracy, task=r.task,
                  note=f"{r.steps} steps; kernel sparsity {r.sparsity:.2f}, total variation {r.total_variation:.2f}")
             for _, r in table.iterrows()]
    rows += [dict(claim="sCIFAR, random init (+ Squash)", metric="accuracy %", ours=100 * a_rand,
                  paper=SCIFAR["random init"], task=init_task, note="paper figure via a third-party summary [U]"),
             dict(claim="sCIFAR, exponential-decay init (+ Squash)", metric="accuracy %", ours=100 * a_decay,
                  paper=SCIFAR["decay init"], task=init_task, note="paper figure via a third-party summary [U]")]
    sq = table.set_index(["task", "variant"])
    for name in cfg["tasks"]:
        rows += [dict(claim="kernel sparsity, long conv → + Squash", metric="share of zero taps",
                      ours=float(sq.loc[(name, "+ Squash"), "sparsity"]), task=name,
                      note=f"long conv {sq.loc[(name, 'long conv'), 'sparsity']:.2f}"),
                 dict(claim="kernel total variation, long conv → + Squash + Smooth", metric="total variation",
                      ours=float(sq.loc[(name, "+ Squash + Smooth"), "total_variation"]), task=name,
                      note=f"long conv {sq.loc[(name, 'long conv'), 'total_variation']:.2f}, "
                           f"+ Squash {sq.loc[(name, '+ Squash'), 'total_variation']:.2f}"),
                 dict(claim="kernel spectral total variation, long conv → + Squash",
                      metric="spectral TV (smooth in freq.)", ours=float(sq.loc[(name, "+ Squash"), "spectral_tv"]),
                      task=name, note=f"long conv {sq.loc[(name, 'long conv'), 'spectral_tv']:.3f}; white noise 0.46")]
    return rows


def scale_note(profile):
    """What a run below the full profile cannot show about the paper's LRA gap ("" at full scale)."""
    if profile == "full":
        return ""
    return (f"\nThe accuracy gap of the paper ({LRA_AVERAGE['long conv']} → {LRA_AVERAGE['+ Squash']}) is an LRA, "
            f"10^5-step result; it is not expected to show in {profile} runs. Run it on a GPU: make reproduce "
            f"PROFILE=full  (or python -m lconv.workbook run --profile full --only 02)")


RECORDED_COLUMNS = ["task", "variant", "steps", "test_accuracy", "val_accuracy", "chance", "final_train_loss",
                    "sparsity", "total_variation", "spectral_tv", "train_time_s"]


def recorded_report(recorded, results_dir="results"):
    """(text, rows, failed) for notebook 02's §10 from lconv.record.load_records(): per recording file its header,
    settings, table and verdicts in words; `rows` the Results.add keyword dicts; `failed` the checks that did not
    hold (every accuracy in [0, 1] with a commit; Squash zeroes taps at any scale)."""
    lines, rows, failed = [], [], []
    if recorded.empty:
        lines.append(f"No recordings in {results_dir} yet: the larger-scale comparison has not been recorded.")
    for file, rec in recorded.groupby("file", sort=False):
        head = rec.iloc[0]
        state = "complete" if head.recording_complete else "INCOMPLETE (runs still to do)"
        lines.append(f"\n### RECORDED, NOT RUN NOW — {file}: profile {head.profile} settings, {head.device}, torch "
                     f"{head.torch}, commit {str(head.commit)[:12]}, {head.date}; {state}")
        for (task_name, data), line in dict(zip(zip(rec.task, rec.data), rec.settings)).items():
            lines.append(f"{task_name} (trained on {data}): {line}")
        lines.append(rec[RECORDED_COLUMNS].round(3).to_string(index=False))
        if not (rec.test_accuracy.between(0, 1).all() and rec.commit.notna().all()):
            failed.append(f"{file}: an accuracy outside [0, 1] or a row without a commit")
        chance_r = dict(zip(rec.task, rec.chance))
        for other in ("+ Squash", "S4D"):
            done = rec.groupby("task").variant.agg(lambda v, o=other: {"long conv", o} <= set(v))
            if done.any():
                lines.append(accuracy_verdict(rec[rec.task.isin(done[done].index)], chance_r, "long conv", other))
        for task_name, task_rows in rec.groupby("task", sort=False):
            r = task_rows.set_index("variant")
            if {"long conv", "+ Squash"} <= set(r.index):
                if not r.loc["+ Squash", "sparsity"] > r.loc["long conv", "sparsity"]:
                    failed.append(f"{file} {task_name}: + Squash is not sparser than long conv")
                word = "smoother" if r.loc["+ Squash", "spectral_tv"] < r.loc["long conv", "spectral_tv"] else "rougher"
                lines.append(f"{task_name}: squashed kernels are {word} in frequency than unregularised ones (spectral "
                             f"TV {r.loc['+ Squash', 'spectral_tv']:.3f} vs {r.loc['long conv', 'spectral_tv']:.3f}); "
                             f"in time, total variation {r.loc['+ Squash', 'total_variation']:.2f} vs "
                             f"{r.loc['long conv', 'total_variation']:.2f}")
        rows += [dict(claim=f"recorded: {r.variant}", metric="test accuracy %", ours=100 * r.test_accuracy,
                      task=f"{r.task} ({r.data} data)", profile=f"{r.profile}, {r.steps} steps", device=r.device,
                      note=f"results/{r.file}, commit {str(r.commit)[:12]}; spectral TV {r.spectral_tv:.3f}")
                 for _, r in rec.iterrows()]
    return "\n".join(lines), rows, failed
