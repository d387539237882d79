"""Helper for tests/test_train.py: the same small training run on 1 process or under torchrun on several.

    python -m torch.distributed.run --nproc_per_node 2 tests/ddp_worker.py OUT.json

Rank 0 writes the history to OUT.json. `build()` is imported by the test to run the 1-process baseline in-process.
"""
import os
import sys

import torch
from torch.utils.data import DataLoader, TensorDataset

from lconv.models import SequenceClassifier
from lconv.results import write_json_atomic
from lconv.train import train

GLOBAL_BATCH, STEPS = 16, 6


def build():
    """(model, (train_loader, val_loader)) built deterministically: the same on every process."""
    g = torch.Generator().manual_seed(123)
    x = torch.randn(96, 24, 2, generator=g)
    y = (x[:, :12, 0].sum(1) > 0).long()
    train_set, val_set = TensorDataset(x[:64], y[:64]), TensorDataset(x[64:], y[64:])
    torch.manual_seed(7)
    model = SequenceClassifier(d_input=2, n_classes=2, d_model=8, n_layers=2, l_max=24, mixer="h3conv")
    loaders = (DataLoader(train_set, batch_size=GLOBAL_BATCH, shuffle=True), DataLoader(val_set, batch_size=7))
    return model, loaders


def run(log=False):
    model, loaders = build()
    return train(model, loaders, kind="classify", steps=STEPS, lr=1e-2, warmup=2, eval_every=3, device="cpu",
                 seed=3, log=log)


if __name__ == "__main__":
    torch.set_num_threads(1)
    history = run()
    if os.environ.get("RANK", "0") == "0":
        write_json_atomic(sys.argv[1], history)
