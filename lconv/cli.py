"""Train one model on one task from the command line — the same entry point on a CPU, a GPU or several GPUs.

    python -m lconv.cli --task listops --mixer longconv --steps 2000 --ckpt build/ckpt/listops.pt
    torchrun --nproc_per_node 4 -m lconv.cli --task smnist --mixer longconv --lam 0.002 --batch-size 256

Classification tasks train a SequenceClassifier, language-model tasks a CausalLM (lconv.data decides which).
Under torchrun lconv.train runs DistributedDataParallel; --batch-size is the global batch. The run resumes from
--ckpt when it exists, and rank 0 writes the history beside it (<ckpt>.history.json) and prints the final metrics.
"""
from __future__ import annotations

import argparse
import json
import os
import sys

import torch

from lconv.data import PROFILES, get_task
from lconv.models import CausalLM, SequenceClassifier
from lconv.train import train


def build(task, args) -> torch.nn.Module:
    """The model for `task`: a classifier or a causal LM with the chosen mixer, parameters drawn from args.seed."""
    torch.manual_seed(args.seed)
    mixer_kw = json.loads(args.mixer_kw)
    if args.lam is not None:
        mixer_kw["lam"] = args.lam
    if task.kind == "lm":
        return CausalLM(task.vocab_size, args.d_model, args.n_layers, task.seq_len, mixer=args.mixer, mlp=args.mlp,
                        dropout=args.dropout, **mixer_kw)
    return SequenceClassifier(d_input=task.d_input, vocab_size=task.vocab_size, n_classes=task.n_classes,
                              d_model=args.d_model, n_layers=args.n_layers, l_max=task.seq_len, mixer=args.mixer,
                              prenorm=args.prenorm, dropout=args.dropout, **mixer_kw)


def parse(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--task", required=True, help="a lconv.data task name, e.g. smnist, listops, kjv, lra_listops")
    p.add_argument("--profile", default="quick", choices=PROFILES, help="task size")
    p.add_argument("--mixer", default="longconv", help="longconv | s4d | h3 | h3conv | attention")
    p.add_argument("--mixer-kw", default="{}", help='JSON of mixer options, e.g. \'{"smooth_window": 7}\'')
    p.add_argument("--lam", type=float, default=None, help="Squash threshold λ for long-conv kernels")
    p.add_argument("--mlp", default="gpt", choices=("gpt", "monarch"), help="LM MLPs: dense or Monarch")
    p.add_argument("--d-model", type=int, default=64)
    p.add_argument("--n-layers", type=int, default=4)
    p.add_argument("--prenorm", action="store_true", help="pre-norm residual blocks (default: post-norm)")
    p.add_argument("--dropout", type=float, default=0.0)
    p.add_argument("--steps", type=int, default=1000)
    p.add_argument("--batch-size", type=int, default=32, help="global batch (split across torchrun processes)")
    p.add_argument("--lr", type=float, default=1e-3)
    p.add_argument("--weight-decay", type=float, default=0.0)
    p.add_argument("--warmup", type=int, default=0)
    p.add_argument("--eval-every", type=int, default=None)
    p.add_argument("--device", default="auto")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--ckpt", default=None, help="checkpoint path (resumed from when it exists)")
    p.add_argument("--quiet", action="store_true")
    return p.parse_args(argv)


def main(argv=None) -> dict:
    args = parse(argv)
    task = get_task(args.task, profile=args.profile, seed=args.seed)
    model = build(task, args)
    history = train(model, task, steps=args.steps, lr=args.lr, weight_decay=args.weight_decay, warmup=args.warmup,
                    eval_every=args.eval_every, device=args.device, ckpt_path=args.ckpt, seed=args.seed,
                    batch_size=args.batch_size, log=not args.quiet)
    if int(os.environ.get("RANK", "0")) == 0:  # torchrun sets RANK; print once
        metric = "val_accuracy" if task.kind == "classify" else "val_ppl"
        print(f"{task.name} / {args.mixer}: {metric} {history[metric][-1]:.4g} after {args.steps} steps")
    return history


if __name__ == "__main__":
    main(sys.argv[1:])
