"""One training loop for classification and language modelling, on one CPU, one GPU or several under torchrun.

    history = train(model, task, kind="classify", steps=2000, lr=1e-2, weight_decay=0.05, warmup=100,
                    eval_every=200, batch_size=50, ckpt_path="build/ckpt/cifar.pt")

What it does, in order: seeds every RNG; builds the loaders (a lconv.data Task through `task.loaders`, or explicit
(train_loader, val_loader)); re-samples the training set with a DistributedSampler so that the data order is a
function of (seed, epoch) only — the same on 1 or N processes, and replayable on resume; AdamW + cosine schedule
(make_optimizer below: the parameter groups of lconv.layers.register_param's tags); bf16 autocast on CUDA only; gradient clipping; periodic evaluation (accuracy for
classification, loss and perplexity for LM) all-reduced across processes; an atomic checkpoint (model, optimiser,
scheduler, step, data position, RNG states, history; tensors and plain values only, loaded back with
torch.load(weights_only=True) so that a checkpoint file cannot run code) that `train` resumes from when `ckpt_path`
exists. A
non-finite loss or gradient stops training with FloatingPointError: it never trains on with NaN.

Multi-process: launch the same script with `torchrun --nproc_per_node N script.py`; when WORLD_SIZE > 1, `train`
joins the process group (gloo on CPU, nccl on CUDA), wraps the model in DistributedDataParallel and splits each
global batch of `batch_size` (or the train loader's batch size) evenly over the processes.
"""
from __future__ import annotations

import contextlib
import math
import os
import random
import sys
import time
from pathlib import Path

import numpy as np
import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch import nn
from torch.utils.data import DataLoader, DistributedSampler, RandomSampler, Sampler, SequentialSampler
from tqdm import tqdm

from lconv.layers import optim_tag
from lconv.results import atomic_write, pick_device, write_json_atomic

# ---------------------------------------------------------------- optimiser groups and schedule
# Per-parameter settings are tagged where the parameter is made (lconv.layers.register_param, the s4 `register` idea).

_NORMS = (nn.LayerNorm, nn.GroupNorm, nn.modules.batchnorm._BatchNorm, nn.modules.instancenorm._InstanceNorm)


def optimizer_groups(model, lr, weight_decay):
    """AdamW parameter groups: tagged params (register_param) get their own lr/wd; biases, norms, 1-D params no wd."""
    decay, no_decay, tagged, seen = [], [], {}, set()
    for module in model.modules():
        for name, p in module.named_parameters(recurse=False):
            if id(p) in seen or not p.requires_grad:
                continue
            seen.add(id(p))
            optim = optim_tag(module, name)
            if optim is not None:
                key = (optim.get("lr", lr), optim.get("weight_decay", 0.0))
                tagged.setdefault(key, []).append(p)
            elif (isinstance(module, _NORMS) or "norm" in type(module).__name__.lower()
                  or p.ndim < 2 or name.endswith("bias")):
                no_decay.append(p)
            else:
                decay.append(p)
    groups = [{"params": decay, "lr": lr, "weight_decay": weight_decay, "name": "decay"},
              {"params": no_decay, "lr": lr, "weight_decay": 0.0, "name": "no_decay"}]
    for (g_lr, g_wd), params in tagged.items():
        groups.append({"params": params, "lr": g_lr, "weight_decay": g_wd, "name": f"tagged(lr={g_lr}, wd={g_wd})"})
    return [g for g in groups if g["params"]]


def cosine_with_warmup(step, warmup_steps, total_steps):
    """LR multiplier: linear warmup to 1 over warmup_steps, then cosine decay to 0 at total_steps."""
    if step < warmup_steps:
        return (step + 1) / warmup_steps
    progress = min(1.0, (step - warmup_steps) / max(1, total_steps - warmup_steps))
    return 0.5 * (1.0 + math.cos(math.pi * progress))


def make_optimizer(model, lr, weight_decay, warmup_steps, total_steps):
    """(AdamW over optimizer_groups, LambdaLR cosine schedule with linear warmup), stepped once per batch."""
    if not (isinstance(total_steps, int) and total_steps >= 1):
        raise ValueError(f"make_optimizer: total_steps must be an int ≥ 1, got {total_steps!r}")
    if not (isinstance(warmup_steps, int) and 0 <= warmup_steps <= total_steps):
        raise ValueError(f"make_optimizer: warmup_steps must be an int in 0..total_steps={total_steps}, "
                         f"got {warmup_steps!r}")
    optimizer = torch.optim.AdamW(optimizer_groups(model, lr, weight_decay), lr=lr, weight_decay=weight_decay)
    scheduler = torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda step: cosine_with_warmup(step, warmup_steps, total_steps))
    return optimizer, scheduler


KINDS = ("classify", "lm")


# ---------------------------------------------------------------- distributed set-up

def _dist_env():
    """(world_size, rank, local_rank) from the torchrun environment; (1, 0, 0) when not launched by torchrun."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    return world, int(os.environ.get("RANK", "0")), int(os.environ.get("LOCAL_RANK", "0"))


def _world():
    """(world_size, rank) of the initialised process group, or (1, 0)."""
    if dist.is_available() and dist.is_initialized():
        return dist.get_world_size(), dist.get_rank()
    return 1, 0


def _all_reduce_sum(values, device):
    """Sum a list of floats over all processes (no-op on one process)."""
    world, _ = _world()
    if world == 1:
        return list(values)
    t = torch.tensor(values, dtype=torch.float64, device=device)
    dist.all_reduce(t, op=dist.ReduceOp.SUM)
    return t.tolist()


# ---------------------------------------------------------------- data

class _EpochSampler(DistributedSampler):
    """DistributedSampler (drop_last) that can start an epoch part-way, after `skip` of this rank's samples."""

    def __init__(self, dataset, num_replicas, rank, shuffle, seed):
        super().__init__(dataset, num_replicas=num_replicas, rank=rank, shuffle=shuffle, seed=seed, drop_last=True)
        self.skip = 0

    def set_epoch(self, epoch, skip=0):
        super().set_epoch(epoch)
        self.skip = skip

    def __iter__(self):
        return iter(list(super().__iter__())[self.skip:])

    def __len__(self):
        return self.num_samples - self.skip


class _ShardSampler(Sampler):
    """Indices rank, rank + world, … in order, no padding: evaluation sees every sample exactly once."""

    def __init__(self, n, world, rank):
        self.n, self.world, self.rank = n, world, rank

    def __iter__(self):
        return iter(range(self.rank, self.n, self.world))

    def __len__(self):
        return len(range(self.rank, self.n, self.world))


def _loader_kwargs(loader):
    return dict(collate_fn=loader.collate_fn, num_workers=loader.num_workers, pin_memory=loader.pin_memory,
                worker_init_fn=loader.worker_init_fn)


def _train_loader(loader, world, rank, seed):
    """Rebuild the train loader over an _EpochSampler (global batch split over ranks) → (loader, sampler)."""
    sampler = loader.sampler
    if loader.batch_size is None or not isinstance(sampler, (RandomSampler, SequentialSampler, DistributedSampler)):
        if world > 1:
            raise ValueError("train: under torchrun the train loader must be a plain DataLoader(dataset, "
                             "batch_size=..., shuffle=...) so that it can be split over processes; custom "
                             "samplers and batch samplers are not supported")
        return loader, None
    global_batch = loader.batch_size
    if global_batch % world:
        raise ValueError(f"train: the global batch size {global_batch} is not divisible by the {world} processes; "
                         f"use a batch size that is a multiple of {world}")
    per_rank = global_batch // world
    n = len(loader.dataset)
    if n // world < per_rank:
        raise ValueError(f"train: the training set has {n} samples, fewer than one global batch of "
                         f"{global_batch}; lower batch_size")
    shuffle = isinstance(sampler, RandomSampler) or (isinstance(sampler, DistributedSampler) and sampler.shuffle)
    sampler = _EpochSampler(loader.dataset, world, rank, shuffle, seed)
    new = DataLoader(loader.dataset, batch_size=per_rank, sampler=sampler, drop_last=True,
                     generator=torch.Generator().manual_seed(seed), **_loader_kwargs(loader))
    return new, sampler


def _eval_loader(loader, world, rank):
    """On several processes, shard the evaluation set without padding; on one, use the loader as is."""
    if loader is None or world == 1:
        return loader
    return DataLoader(loader.dataset, batch_size=loader.batch_size, sampler=_ShardSampler(len(loader.dataset),
                      world, rank), **_loader_kwargs(loader))


def _resolve_loaders(task_or_loaders, kind, batch_size, num_workers):
    """(kind, train_loader, val_loader) from a lconv.data Task or a (train_loader, val_loader[, test]) pair."""
    if hasattr(task_or_loaders, "loaders"):
        task = task_or_loaders
        kind = kind or task.kind
        if kind != task.kind:
            raise ValueError(f"train: kind={kind!r} but the task {task.name!r} is a {task.kind!r} task; "
                             f"pass kind={task.kind!r} (or leave it out)")
        train_loader, val_loader, _ = task.loaders(batch_size, num_workers=num_workers)
    elif isinstance(task_or_loaders, (tuple, list)) and len(task_or_loaders) in (2, 3):
        train_loader, val_loader = task_or_loaders[0], task_or_loaders[1]
    else:
        raise ValueError("train: pass a lconv.data Task (with .loaders) or a tuple (train_loader, val_loader); "
                         f"got {type(task_or_loaders).__name__}")
    if kind not in KINDS:
        raise ValueError(f"train: kind must be one of {KINDS}, got {kind!r}")
    if not isinstance(train_loader, DataLoader):
        raise ValueError(f"train: the train loader must be a torch DataLoader, got {type(train_loader).__name__}")
    return kind, train_loader, val_loader


def _to_device(batch, device):
    """(x, y) from a batch, on `device`."""
    if not isinstance(batch, (tuple, list)) or len(batch) != 2:
        raise ValueError("train: each batch must be a pair (x, y); wrap your dataset so that items are (x, y)")
    x, y = batch
    return x.to(device, non_blocking=True), y.to(device, non_blocking=True)


def _tokens(x):
    """Sequence positions in a batch: B·L for x (B, L) tokens or (B, L, d) features."""
    return x.shape[0] * (x.shape[1] if x.ndim >= 2 else 1)


# ---------------------------------------------------------------- loss and evaluation

def loss_fn(logits, y, kind):
    """Mean cross-entropy: logits (B, C) vs y (B,) for classify; logits (B, L, V) vs y (B, L) for lm (−100 ignored)."""
    if kind == "classify":
        if logits.ndim != 2 or y.shape != logits.shape[:1]:
            raise ValueError(f"classify: logits must be (B, n_classes) and y (B,), got {tuple(logits.shape)} and "
                             f"{tuple(y.shape)}")
        return F.cross_entropy(logits.float(), y)
    if logits.ndim != 3 or y.shape != logits.shape[:2]:
        raise ValueError(f"lm: logits must be (B, L, V) and y (B, L), got {tuple(logits.shape)} and "
                         f"{tuple(y.shape)}")
    return F.cross_entropy(logits.float().flatten(0, 1), y.flatten())


def _autocast(device, amp):
    """bf16 autocast on CUDA when amp is on; nothing on CPU."""
    if amp and device.type == "cuda":
        return torch.autocast(device_type="cuda", dtype=torch.bfloat16)
    return contextlib.nullcontext()


@torch.no_grad()
def evaluate(model, loader, kind, device, *, amp=False, max_batches=None):
    """Mean loss, accuracy and (lm) perplexity over `loader`'s scored targets, summed over processes if distributed.

    For lm, accuracy is next-token accuracy over targets ≠ -100 (on recall tasks: the answer accuracy).
    """
    if kind not in KINDS:
        raise ValueError(f"evaluate: kind must be one of {KINDS}, got {kind!r}")
    device = pick_device(device) if isinstance(device, str) else device
    was_training = model.training
    model.eval()
    loss_sum, correct, count = 0.0, 0.0, 0.0
    try:
        for i, batch in enumerate(loader):
            if max_batches is not None and i >= max_batches:
                break
            x, y = _to_device(batch, device)
            with _autocast(device, amp):
                logits = model(x)
            if kind == "classify":
                loss_sum += F.cross_entropy(logits.float(), y, reduction="sum").item()
                correct += (logits.argmax(-1) == y).sum().item()
                count += y.numel()
            else:
                loss_sum += F.cross_entropy(logits.float().flatten(0, 1), y.flatten(), reduction="sum").item()
                scored = y != -100  # targets of -100 are not scored (recall tasks score only the answer)
                correct += (logits.argmax(-1)[scored] == y[scored]).sum().item()
                count += scored.sum().item()
    finally:
        model.train(was_training)
    loss_sum, correct, count = _all_reduce_sum([loss_sum, correct, count], device)
    if count == 0:
        raise ValueError("evaluate: nothing to score (an empty loader, max_batches=0, or every target is -100, "
                         "the ignore index); check the evaluation set")
    loss = loss_sum / count
    if kind == "classify":
        return {"loss": loss, "accuracy": correct / count, "n": int(count)}
    return {"loss": loss, "ppl": math.exp(min(loss, 700.0)), "accuracy": correct / count, "n": int(count)}


# ---------------------------------------------------------------- RNG and checkpoints

def _seed_everything(seed):
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)  # also seeds every CUDA device


def _rng_state():
    """Every RNG's state as tensors, ints, floats and lists only, so that torch.load(weights_only=True) reads it."""
    kind, keys, pos, has_gauss, cached = np.random.get_state()
    version, internal, gauss_next = random.getstate()
    state = {"torch": torch.get_rng_state(),
             "numpy": {"kind": str(kind), "keys": torch.from_numpy(keys.astype(np.int64)), "pos": int(pos),
                       "has_gauss": int(has_gauss), "cached_gaussian": float(cached)},
             "python": {"version": int(version), "internal": list(internal), "gauss_next": gauss_next}}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def _set_rng_state(state):
    torch.set_rng_state(state["torch"])
    npy = state["numpy"]
    np.random.set_state((npy["kind"], npy["keys"].numpy().astype(np.uint32), npy["pos"], npy["has_gauss"],
                         npy["cached_gaussian"]))
    py = state["python"]
    random.setstate((py["version"], tuple(py["internal"]), py["gauss_next"]))
    if "cuda" in state and torch.cuda.is_available() and len(state["cuda"]) == torch.cuda.device_count():
        torch.cuda.set_rng_state_all(state["cuda"])


CHECKPOINT_FORMAT = 2  # 2: loadable with weights_only=True (RNG states as tensors and plain values)


def load_checkpoint(path):
    """A checkpoint written by `train`, loaded with torch.load(weights_only=True): tensors and plain Python values
    only, so a file from elsewhere cannot run code. Anything else (a crafted pickle, a checkpoint of the earlier
    format, which held numpy RNG state) raises ValueError saying to delete it and start the run again."""
    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=True)  # RNG states must stay on CPU
    except Exception as err:  # UnpicklingError for anything that is not plain data, or a broken file
        lines = [ln.strip() for ln in str(err).splitlines() if ln.strip()]
        reason = next((ln for ln in lines if "Unsupported" in ln or "error:" in ln.lower()),
                      lines[0] if lines else type(err).__name__).split(" was not an allowed")[0][:200]
        raise ValueError(f"train: {path} is not a checkpoint that can be loaded safely (weights_only=True refused "
                         f"it: {reason}). It is either from an older lconv (before checkpoint format "
                         f"{CHECKPOINT_FORMAT}), damaged, or not a checkpoint at all; nothing in it was run. Delete "
                         f"it and start the run again (or, only for a file you wrote yourself with an older lconv: "
                         f"python -m lconv.train upgrade {path})") from None
    if not isinstance(ckpt, dict) or ckpt.get("format") != CHECKPOINT_FORMAT:
        found = ckpt.get("format", "none") if isinstance(ckpt, dict) else type(ckpt).__name__
        raise ValueError(f"train: {path} has checkpoint format {found}, not {CHECKPOINT_FORMAT}; it cannot be resumed "
                         "by this version of lconv.train. Delete it and start the run again")
    return ckpt


def upgrade_checkpoint(path) -> None:
    """Rewrite a checkpoint of the earlier format (numpy RNG state; loaded with weights_only=False, i.e. its pickle
    runs) in the current one. Only for files you wrote yourself: `train` never loads a checkpoint this way."""
    ckpt = torch.load(path, map_location="cpu", weights_only=False)
    for state in ckpt["rng"]:
        if state is not None and not isinstance(state["numpy"], dict):
            kind, keys, pos, has_gauss, cached = state["numpy"]
            state["numpy"] = {"kind": str(kind), "keys": torch.from_numpy(np.asarray(keys).astype(np.int64)),
                              "pos": int(pos), "has_gauss": int(has_gauss), "cached_gaussian": float(cached)}
            version, internal, gauss_next = state["python"]
            state["python"] = {"version": int(version), "internal": list(internal), "gauss_next": gauss_next}
    ckpt["format"] = CHECKPOINT_FORMAT
    _save_checkpoint(path, ckpt)
    load_checkpoint(path)  # and it now loads safely


def history_path(ckpt_path):
    """Where train() writes the history JSON next to a checkpoint: run.pt → run.history.json."""
    return Path(ckpt_path).with_suffix(".history.json")


def _save_checkpoint(path, state):
    """torch.save through lconv.results.atomic_write (a temporary file, then a rename): never half a checkpoint."""
    atomic_write(path, lambda f: torch.save(state, f))
    write_json_atomic(history_path(path), state["history"])


# ---------------------------------------------------------------- the loop

def _new_history(kind, steps, world, device):
    h = {"kind": kind, "steps": steps, "world_size": world, "device": str(device), "train_loss": [], "lr": [],
         "eval_step": [], "val_loss": [], "tokens_per_s": [], "train_time_s": 0.0, "tokens_seen": 0}
    h["val_accuracy" if kind == "classify" else "val_ppl"] = []
    return h


def _check_args(steps, warmup, eval_every, ckpt_every, until, grad_clip, time_limit_s):
    if not isinstance(steps, int) or steps < 1:
        raise ValueError(f"train: steps must be a positive int, got {steps!r}")
    if not isinstance(warmup, int) or not 0 <= warmup <= steps:
        raise ValueError(f"train: warmup must be an int in 0..steps={steps}, got {warmup!r}")
    for name, v in (("eval_every", eval_every), ("ckpt_every", ckpt_every), ("until", until)):
        if v is not None and (not isinstance(v, int) or v < 1):
            raise ValueError(f"train: {name} must be None or a positive int, got {v!r}")
    if grad_clip is not None and not grad_clip > 0:
        raise ValueError(f"train: grad_clip must be None (no clipping) or > 0, got {grad_clip!r}")
    if time_limit_s is not None and not time_limit_s > 0:
        raise ValueError(f"train: time_limit_s must be None or > 0 seconds, got {time_limit_s!r}")


def train(model, task_or_loaders, *, kind=None, steps, lr=1e-3, weight_decay=0.0, warmup=0, eval_every=None,
          device="auto", amp=True, ckpt_path=None, seed=0, log=True, batch_size=32, num_workers=0, grad_clip=1.0,
          eval_batches=None, ckpt_every=None, until=None, time_limit_s=None):
    """Train `model` for `steps` optimiser steps; return the history dict (resumes from `ckpt_path` if it exists).

    kind: "classify" or "lm" (default: the task's). batch_size: the global batch for a Task (explicit loaders keep
    theirs). warmup: linear-warmup steps of the cosine schedule. eval_every: evaluate every so many steps (and at
    the end); eval_batches caps the evaluation batches. amp: bf16 autocast, used on CUDA only. ckpt_every: defaults
    to eval_every. until: stop (after checkpointing) once this many steps are done, while the schedule still spans
    `steps` — to train in chunks. time_limit_s: stop (after checkpointing) at the first step that ends this many
    wall-clock seconds after the call began — to fit a run into time-boxed sessions; the history then holds fewer
    than `steps` train_loss entries, and calling again with the same ckpt_path resumes. log: tqdm bar on a terminal
    and one line per evaluation.

    History keys: train_loss and lr (per step), eval_step with val_loss, val_accuracy (classify) or val_ppl (lm)
    and tokens_per_s (training throughput since the previous evaluation), train_time_s, tokens_seen.
    """
    _check_args(steps, warmup, eval_every, ckpt_every, until, grad_clip, time_limit_s)
    t_call = time.perf_counter()
    kind, train_loader, val_loader = _resolve_loaders(task_or_loaders, kind, batch_size, num_workers)
    env_world, _, local_rank = _dist_env()
    device = pick_device(device)
    created_group = False
    if env_world > 1:
        if device.type == "cuda":
            device = torch.device("cuda", local_rank)
            torch.cuda.set_device(device)
        if not dist.is_initialized():
            dist.init_process_group(backend="nccl" if device.type == "cuda" else "gloo")
            created_group = True
    world, rank = _world()
    stop = steps if until is None else min(until, steps)
    ckpt_every = ckpt_every or eval_every or steps
    use_amp = bool(amp) and device.type == "cuda"

    try:
        _seed_everything(seed + rank)
        train_loader, sampler = _train_loader(train_loader, world, rank, seed)
        val_loader = _eval_loader(val_loader, world, rank)
        model.to(device)
        raw_model = model
        optimizer, scheduler = make_optimizer(raw_model, lr, weight_decay, warmup, steps)
        if world > 1:
            model = torch.nn.parallel.DistributedDataParallel(
                raw_model, device_ids=[device.index] if device.type == "cuda" else None)

        step, epoch, batch_in_epoch, pending_rng = 0, 0, 0, None
        history = _new_history(kind, steps, world, device)
        if ckpt_path is not None and Path(ckpt_path).exists():
            ckpt = load_checkpoint(ckpt_path)
            if ckpt["kind"] != kind or ckpt["steps"] != steps:
                raise ValueError(f"train: {ckpt_path} holds a {ckpt['kind']!r} run of steps={ckpt['steps']}, but "
                                 f"this call asks for {kind!r} with steps={steps}; pass the same settings or "
                                 "delete the checkpoint to start afresh")
            raw_model.load_state_dict(ckpt["model"])
            optimizer.load_state_dict(ckpt["optimizer"])
            scheduler.load_state_dict(ckpt["scheduler"])
            step, epoch, batch_in_epoch = ckpt["step"], ckpt["epoch"], ckpt["batch_in_epoch"]
            history = ckpt["history"]
            rngs = ckpt["rng"]
            pending_rng = rngs[rank] if len(rngs) == world else None  # restored once the data iterator exists
            if pending_rng is None:
                _seed_everything(seed + rank + 1000 * step)
            if log and rank == 0:
                print(f"resumed from {ckpt_path} at step {step}/{steps}", flush=True)

        def save():
            rngs = [_rng_state()]
            if world > 1:
                rngs = [None] * world
                dist.all_gather_object(rngs, _rng_state())
            if rank == 0:
                _save_checkpoint(ckpt_path, {
                    "model": raw_model.state_dict(), "optimizer": optimizer.state_dict(),
                    "scheduler": scheduler.state_dict(), "step": step, "epoch": epoch,
                    "batch_in_epoch": batch_in_epoch, "rng": rngs, "history": history, "kind": kind,
                    "steps": steps, "world_size": world, "format": CHECKPOINT_FORMAT})
            if world > 1:
                dist.barrier()

        show_bar = bool(log) and rank == 0 and sys.stderr.isatty()
        bar = tqdm(total=steps, initial=step, disable=not show_bar, desc=f"train {kind}", dynamic_ncols=True)
        say = (bar.write if show_bar else lambda s: print(s, flush=True)) if (log and rank == 0) else (lambda s: None)
        data_iter, window_time, window_tokens = None, 0.0, 0
        model.train()
        try:
            while step < stop:
                if data_iter is None:
                    if sampler is not None:  # the epoch's order is a function of (seed, epoch): start mid-way
                        sampler.set_epoch(epoch, skip=batch_in_epoch * train_loader.batch_size)
                        data_iter = iter(train_loader)
                    else:  # a custom sampler: replay the epoch up to the saved position
                        data_iter = iter(train_loader)
                        for _ in range(batch_in_epoch):
                            next(data_iter)
                    if pending_rng is not None:
                        _set_rng_state(pending_rng)
                        pending_rng = None
                t0 = time.perf_counter()
                try:
                    batch = next(data_iter)
                except StopIteration:
                    if batch_in_epoch == 0:
                        raise ValueError("train: the train loader yielded no batches; check the dataset and "
                                         "batch_size") from None
                    epoch, batch_in_epoch, data_iter = epoch + 1, 0, None
                    continue
                x, y = _to_device(batch, device)
                with _autocast(device, use_amp):
                    logits = model(x)
                loss = loss_fn(logits, y, kind)
                loss.backward()
                loss_value = _all_reduce_sum([loss.item()], device)[0] / world
                if not math.isfinite(loss_value):
                    raise FloatingPointError(
                        f"train: the loss became {loss_value} at step {step + 1}; stopping instead of training on "
                        f"with NaN. Lower lr (now {lr}), keep grad_clip on, or check the inputs"
                        + (f"; {ckpt_path} holds the last good state" if ckpt_path else ""))
                grad_norm = torch.nn.utils.clip_grad_norm_(raw_model.parameters(),
                                                           grad_clip if grad_clip is not None else math.inf)
                if not torch.isfinite(grad_norm):
                    raise FloatingPointError(
                        f"train: the gradient norm became {grad_norm.item()} at step {step + 1}; stopping before "
                        f"the update. Lower lr (now {lr}) or check the inputs")
                history["lr"].append(optimizer.param_groups[0]["lr"])
                optimizer.step()
                scheduler.step()
                optimizer.zero_grad(set_to_none=True)
                step += 1
                batch_in_epoch += 1
                dt = time.perf_counter() - t0
                n_tok = _tokens(x) * world
                window_time += dt
                window_tokens += n_tok
                history["train_loss"].append(loss_value)
                history["train_time_s"] += dt
                history["tokens_seen"] += n_tok
                bar.update(1)
                bar.set_postfix(loss=f"{loss_value:.4f}")

                if val_loader is not None and ((eval_every and step % eval_every == 0) or step == steps):
                    metrics = evaluate(raw_model, val_loader, kind, device, amp=use_amp, max_batches=eval_batches)
                    tps = window_tokens / window_time if window_time > 0 else float("nan")
                    window_time, window_tokens = 0.0, 0
                    history["eval_step"].append(step)
                    history["val_loss"].append(metrics["loss"])
                    history["tokens_per_s"].append(tps)
                    name = "accuracy" if kind == "classify" else "ppl"
                    extra = metrics[name]
                    history[f"val_{name}"].append(extra)
                    say(f"step {step}/{steps}  train_loss {loss_value:.4f}  val_loss {metrics['loss']:.4f}  "
                        f"{name} {extra:.4f}  {tps:,.0f} tok/s")
                out_of_time = time_limit_s is not None and _all_reduce_sum(
                    [float(time.perf_counter() - t_call > time_limit_s)], device)[0] > 0  # every rank agrees
                if out_of_time:
                    stop = step
                    say(f"time limit {time_limit_s:g} s reached at step {step}/{steps}"
                        + (f"; resume from {ckpt_path}" if ckpt_path else ""))
                if ckpt_path is not None and (step % ckpt_every == 0 or step == stop):
                    save()
        finally:
            bar.close()
        if created_group:
            dist.barrier()  # every process is done with collectives before the group goes away
        return history
    finally:
        if created_group:
            dist.destroy_process_group()


if __name__ == "__main__":  # python -m lconv.train upgrade PATH …: rewrite your own earlier-format checkpoints
    if len(sys.argv) < 3 or sys.argv[1] != "upgrade" or {"-h", "--help"} & set(sys.argv[2:]):
        sys.exit("usage: python -m lconv.train upgrade CHECKPOINT.pt … — rewrites checkpoints of the earlier format in "
                 f"format {CHECKPOINT_FORMAT}, which loads with torch.load(weights_only=True) (only checkpoints you "
                 "wrote yourself: loading the earlier format runs its pickle)")
    missing = [p for p in sys.argv[2:] if not Path(p).is_file()]
    if missing:
        sys.exit(f"no such checkpoint file: {', '.join(missing)}")
    for p in sys.argv[2:]:
        upgrade_checkpoint(p)
        print(f"upgraded {p} to checkpoint format {CHECKPOINT_FORMAT}")
