"""Notebook 04 (learned Butterfly): its settings, fixed against learned blocks on one task, and the gain verdict.

    from lconv.experiments import settings
    from lconv.experiments.learned_butterfly import LEARNED_BUTTERFLY, compare_fixed_learned, gain_verdict
    cfg = settings(LEARNED_BUTTERFLY, "quick")
    run = compare_fixed_learned(task, **cfg["train"], kernel=cfg["kernel"], butterfly=cfg["butterfly"])

The modules (LearnedButterfly, LearnedButterflyLongConv, use_learned_butterfly) are lconv.learned_butterfly's; the
reference maths is lconv.butterfly's.
"""
from __future__ import annotations

import dataclasses
import math

import torch

from lconv.experiments import Variant, fit
from lconv.learned_butterfly import butterfly_modules, use_learned_butterfly
from lconv.models import build_model
from lconv.paper import SCIFAR, SCIFAR_LEARNED_GAIN
from lconv.results import pick_device


def _mixer_kwargs(kernel):
    """The kernel section of the settings (kernel_lr, the schema's one spelling) as LongConv keyword arguments (lr):
    the same Variant kwargs, hence the same run keys, as before the schema named it kernel_lr."""
    kw = dict(kernel)
    if "kernel_lr" in kw:
        kw = {("lr" if k == "kernel_lr" else k): v for k, v in kw.items()}
    return kw


# Per profile: the task, its overrides, the training settings (lconv.experiments.compare's), the kernel and the
# Butterfly settings. "quick" trains both models in a few minutes on a 2-core CPU (the learned one ≈ 2.5× slower:
# the PyTorch reference runs its block matmuls where the fixed model runs an rfft); "full" is the standalone sCIFAR
# script of PAPER.md (6 layers, d_model 256, dropout 0.1, kernel dropout 0.2, kernel LR 1e-3, λ 1e-3, LR 1e-2,
# wd 0.05, batch 50, 300 epochs) with the official learned-Butterfly LR 1e-3 and no weight decay on the blocks.
LEARNED_BUTTERFLY = {
    "smoke": dict(task="digits", overrides={},
                  train=dict(d_model=16, n_layers=1, steps=30, lr=1e-2, batch_size=32, warmup=3, weight_decay=0.0,
                             prenorm=False),
                  kernel=dict(lam=0.002, kernel_lr=1e-2, channels=1),
                  butterfly=dict(butterfly_init="dft", butterfly_lr=1e-2)),
    "quick": dict(task="smnist", overrides=dict(n_train=2000, n_val=500, n_test=1000),
                  train=dict(d_model=24, n_layers=2, steps=100, lr=1e-2, batch_size=32, warmup=10,
                             weight_decay=0.0, prenorm=False),
                  kernel=dict(lam=0.002, kernel_lr=1e-2, channels=1),
                  butterfly=dict(butterfly_init="dft", butterfly_lr=1e-2)),
    "full": dict(task="cifar", overrides={},
                 train=dict(d_model=256, n_layers=6, steps=270_000, lr=1e-2, batch_size=50, warmup=1000,
                            weight_decay=0.05, prenorm=False, dropout=0.1, eval_every=5000),
                 kernel=dict(lam=0.001, kernel_lr=1e-3, kernel_dropout=0.2, channels=2),
                 butterfly=dict(butterfly_init="dft", butterfly_lr=1e-3)),
}


@dataclasses.dataclass
class FixedVsLearned:
    """What compare_fixed_learned returns: the table (one row per model), histories, trained models (CPU, eval)."""

    table: "object"  # pandas.DataFrame
    histories: dict
    models: dict


def build_fixed_and_learned(task, *, d_model, n_layers, kernel, butterfly, prenorm=False, dropout=0.0, seed=0):
    """(fixed, learned): a long-conv SequenceClassifier for `task` and a copy with learned Butterfly blocks.

    Same weights (drawn from `seed`); the learned one is converted by use_learned_butterfly(**butterfly).
    """
    variant = Variant("fixed FFT", "longconv", _mixer_kwargs(kernel))
    fixed, learned = (build_model(task, variant, d_model=d_model, n_layers=n_layers, prenorm=prenorm,
                                  dropout=dropout, seed=seed) for _ in range(2))
    return fixed, use_learned_butterfly(learned, **butterfly)


def compare_fixed_learned(task, *, d_model, n_layers, steps, lr, batch_size, kernel, butterfly, seed=0,
                          device="auto", ckpt_dir=None, weight_decay=0.0, warmup=0, eval_every=None,
                          eval_batches=None, prenorm=False, dropout=0.0, log=False):
    """Train a long-conv classifier with the fixed FFT and the same one with learned Butterfly blocks; compare.

    Both models start from the same weights (the learned one is lconv.experiments.build_model's model converted by
    use_learned_butterfly), see the same data in the same order, and use the same settings; at a "dft" init they
    compute the same function at step 0. Runs are checkpointed like lconv.experiments.compare.
    """
    import pandas as pd

    dev = pick_device(device)
    train_cfg = dict(d_model=d_model, n_layers=n_layers, steps=steps, lr=lr, batch_size=batch_size, seed=seed,
                     weight_decay=weight_decay, warmup=warmup, prenorm=prenorm, dropout=dropout)
    fixed = Variant("fixed FFT", "longconv", _mixer_kwargs(kernel))
    learned = Variant("learned Butterfly", "longconv", dict(_mixer_kwargs(kernel), butterfly=dict(butterfly)))
    _, _, test_loader = task.loaders(batch_size)
    rows, histories, models = [], {}, {}
    pair = build_fixed_and_learned(task, d_model=d_model, n_layers=n_layers, kernel=kernel, butterfly=butterfly,
                                   prenorm=prenorm, dropout=dropout, seed=seed)
    for variant, model in zip((fixed, learned), pair):
        row, history = fit(model, task, variant, train_cfg, test_loader=test_loader, device=dev, ckpt_dir=ckpt_dir,
                           prefix="butterfly", eval_every=eval_every, eval_batches=eval_batches, log=log)
        dist = [m.distance_from_dft() for m in butterfly_modules(model)]
        row.update(butterfly_params=sum(p.numel() for m in butterfly_modules(model) for p in m.parameters()),
                   dist_dft1=max((d["dft1"] for d in dist), default=0.0),
                   dist_dft2=max((d["dft2"] for d in dist), default=0.0),
                   dist_transform=max((d["transform"] for d in dist), default=0.0))
        rows.append(row)
        histories[variant.name], models[variant.name] = history, model
        if log:
            took = "loaded" if row["resumed"] else f"{row['wall_s']:.0f} s"
            print(f"{variant.name:<18} test acc {row['test_accuracy']:.3f}  ({took})", flush=True)
    return FixedVsLearned(pd.DataFrame(rows), histories, models)


# ---------------------------------------------------------------- reading the numbers

TASK_TITLES = {"cifar": "sequential CIFAR", "smnist": "sequential Fashion-MNIST", "digits": "8×8 digits"}


def gain_summary(table, n_test):
    """{acc_fixed, acc_learned, gain (points), se (one binomial standard error of the difference of two accuracies
    on the same n_test images), extra_params, extra_share (%)} from compare_fixed_learned's table (index: variant)."""
    acc_fixed = 100 * table.loc["fixed FFT", "test_accuracy"]
    acc_learned = 100 * table.loc["learned Butterfly", "test_accuracy"]
    se = 100 * math.sqrt(sum(a / 100 * (1 - a / 100) for a in (acc_fixed, acc_learned)) / n_test)
    extra = table.loc["learned Butterfly", "params"] - table.loc["fixed FFT", "params"]
    return {"acc_fixed": acc_fixed, "acc_learned": acc_learned, "gain": acc_learned - acc_fixed, "se": se,
            "extra_params": extra, "extra_share": 100 * extra / table.loc["fixed FFT", "params"]}


def paper_table(summary, profile, task_title):
    """The paper's sCIFAR numbers (lconv.paper) beside ours, one row each: fixed, learned, gain."""
    import pandas as pd

    return pd.DataFrame({"paper (sCIFAR)": [SCIFAR["fixed FFT"], SCIFAR["learned Butterfly"], SCIFAR_LEARNED_GAIN],
                         f"ours ({profile}: {task_title})": [summary["acc_fixed"], summary["acc_learned"],
                                                             summary["gain"]]},
                        index=["fixed FFT", "learned Butterfly", "gain (points)"])


def gain_verdict(summary, profile, task_title):
    """The verdict on claim 9 in words, chosen from the measured gain and its standard error (gain_summary)."""
    gain, se = summary["gain"], summary["se"]
    paper = f"+{SCIFAR_LEARNED_GAIN:g}"
    if abs(gain) <= 2 * se:
        verdict = (f"The learned blocks change test accuracy by {gain:+.1f} points (± {se:.1f}, one standard error): "
                   f"within noise. This run does **not** reproduce the paper's {paper}-point gain.")
    elif gain > 0:
        verdict = f"The learned blocks gain {gain:+.1f} points (± {se:.1f}), in the direction of the paper's {paper}."
    else:
        verdict = (f"The learned blocks lose {gain:+.1f} points (± {se:.1f}): this run does **not** reproduce the "
                   f"paper's {paper}-point gain.")
    verdict += (f" One seed; the learned model has {summary['extra_params']:,} more parameters "
                f"(+{summary['extra_share']:.0f} %).")
    if profile != "full":
        verdict += (f" It is a {profile} run on {task_title} with a small model and few steps, not the paper's sCIFAR "
                    "setting (profile 'full'), so it neither confirms nor refutes the paper's number.")
    return verdict


def triton_check(N=256, seed=0):
    """The learned layer's Triton path (through lconv.backend) against its PyTorch reference, forward and block
    gradients, on noisy blocks: ({"y", "d dft1", "d dft2"} → relative max |Δ|, a line saying where it ran and the
    errors); (None, the reason) where Triton runs neither on a GPU nor in the interpreter."""
    from lconv import backend as backend_door
    from lconv.learned_butterfly import LearnedButterfly

    if not backend_door.triton_available():
        return None, "kernels cannot be imported here (no Triton): check skipped"
    kernels = backend_door.kernels_module()
    if not (kernels.INTERPRET or torch.cuda.is_available()):
        return None, ("Triton runs neither on a GPU nor in the interpreter here (set TRITON_INTERPRET=1 before "
                      "importing kernels): check skipped")
    dev = "cuda" if torch.cuda.is_available() else "cpu"
    torch.manual_seed(seed)
    noisy = LearnedButterfly(N, init="dft+noise", noise=0.05).to(dev)
    u = torch.randn(3, 2, 100, device=dev)
    k = 0.1 * torch.randn(2, 100, device=dev)
    dy = torch.randn(3, 2, 100, device=dev)
    got = {}
    for backend in ("triton", "torch"):
        noisy.zero_grad()
        y = noisy.conv(u, k, backend=backend)
        y.backward(dy)
        got[backend] = (y.detach(), noisy.dft1.grad.clone(), noisy.dft2.grad.clone())
    errs = {what: ((a - b).abs().max() / b.abs().max().clamp(min=1)).item()
            for what, a, b in zip(("y", "d dft1", "d dft2"), got["triton"], got["torch"])}
    where = "GPU" if dev == "cuda" else "interpreter"
    return errs, (f"Triton ({where}) vs reference, N={N}, noisy blocks, relative max |Δ|: "
                  + ", ".join(f"{w} {e:.1e}" for w, e in errs.items()))
