"""The training loop: it learns, resumes exactly, agrees between 1 and 2 processes, and stops on NaN."""
import json
import math
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from lconv.models import CausalLM, SequenceClassifier
from lconv.train import CHECKPOINT_FORMAT, evaluate, history_path, load_checkpoint, train, upgrade_checkpoint

HERE = Path(__file__).resolve().parent


def spike_task(n, L=64, seed=0):
    """Which half of a length-L sequence holds a spike of height 3 (noise 0.1 elsewhere): 2 classes."""
    g = torch.Generator().manual_seed(seed)
    y = torch.randint(0, 2, (n,), generator=g)
    pos = torch.randint(0, L // 2, (n,), generator=g) + y * (L // 2)  # (n,)
    x = 0.1 * torch.randn(n, L, 1, generator=g)  # (n, L, 1)
    x[torch.arange(n), pos, 0] += 3.0
    return TensorDataset(x, y)


@pytest.mark.parametrize("mixer,kw", [("longconv", {"lr": 3e-2}), ("s4d", {})])
def test_classifier_learns_spike_task(mixer, kw):
    """Validation loss falls well below chance (ln 2) in 200 steps: a kernel must learn where the spike was."""
    torch.manual_seed(0)
    model = SequenceClassifier(d_input=1, n_classes=2, d_model=16, n_layers=2, l_max=64, mixer=mixer,
                               prenorm=False, **kw)
    loaders = (DataLoader(spike_task(1024), batch_size=32, shuffle=True),
               DataLoader(spike_task(256, seed=1), batch_size=128))
    assert evaluate(model, loaders[1], "classify", "cpu")["loss"] > 0.6  # near chance before training
    h = train(model, loaders, kind="classify", steps=200, lr=1e-2, warmup=10, eval_every=100, device="cpu",
              log=False)
    assert h["val_loss"][-1] < 0.5 * math.log(2), h["val_loss"]
    assert h["val_accuracy"][-1] > 0.85
    assert len(h["train_loss"]) == 200 and h["eval_step"] == [100, 200]
    assert all(t > 0 for t in h["tokens_per_s"])


def _tiny_setup(seed=0):
    g = torch.Generator().manual_seed(5)
    x = torch.randn(40, 16, 2, generator=g)
    y = (x[:, :, 1].mean(1) > 0).long()
    torch.manual_seed(seed)
    model = SequenceClassifier(d_input=2, n_classes=2, d_model=8, n_layers=2, l_max=16, dropout=0.2, mlp=True)
    return model, (DataLoader(TensorDataset(x[:30], y[:30]), batch_size=8, shuffle=True),
                   DataLoader(TensorDataset(x[30:], y[30:]), batch_size=5))


def test_resume_equals_straight_run(tmp_path):
    """2N steps straight == N steps, a fresh process state, resume from the checkpoint, N more (dropout + shuffle)."""
    kw = dict(kind="classify", steps=10, lr=1e-2, warmup=2, eval_every=3, device="cpu", seed=1, log=False)
    model, loaders = _tiny_setup()
    straight = train(model, loaders, **kw)

    ckpt = tmp_path / "run.pt"
    model_a, loaders_a = _tiny_setup()
    first = train(model_a, loaders_a, ckpt_path=ckpt, until=5, **kw)  # stops mid-epoch (3 batches per epoch)
    assert len(first["train_loss"]) == 5 and ckpt.exists()
    assert json.loads(history_path(ckpt).read_text())["train_loss"] == first["train_loss"]
    torch.manual_seed(999)  # the resumed run must not depend on the RNG state it starts with
    model_b, loaders_b = _tiny_setup(seed=42)  # a different init: the checkpoint must overwrite it
    resumed = train(model_b, loaders_b, ckpt_path=ckpt, **kw)

    assert resumed["train_loss"] == straight["train_loss"]
    assert resumed["val_loss"] == straight["val_loss"] and resumed["eval_step"] == [3, 6, 9, 10]
    assert resumed["lr"] == straight["lr"]
    for p, q in zip(model.parameters(), model_b.parameters()):
        torch.testing.assert_close(p, q, rtol=0, atol=0)
    # a finished run resumes to an immediate return; other settings are refused
    assert train(model_b, loaders_b, ckpt_path=ckpt, **kw)["train_loss"] == straight["train_loss"]
    with pytest.raises(ValueError, match="delete the checkpoint"):
        train(model_b, loaders_b, ckpt_path=ckpt, **{**kw, "steps": 20})


class _RunsCode:
    """Unpickling this calls open(marker, "w"): what a crafted checkpoint could do with any callable."""

    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return (open, (self.marker, "w"))


def test_checkpoint_loads_with_weights_only_and_a_crafted_one_is_refused(tmp_path):
    """The checkpoint holds tensors and plain values only (RNG states included); a pickle that would run code, and a
    checkpoint of the earlier format (numpy RNG state, loaded with weights_only=False), are refused before anything
    in them runs, with a message that says to delete the file and start again."""
    kw = dict(kind="classify", steps=4, lr=1e-2, device="cpu", seed=1, log=False)
    model, loaders = _tiny_setup()
    ckpt = tmp_path / "run.pt"
    train(model, loaders, ckpt_path=ckpt, until=2, **kw)
    state = torch.load(ckpt, map_location="cpu", weights_only=True)  # plain data: no error
    assert state["format"] == CHECKPOINT_FORMAT and state["step"] == 2
    assert isinstance(state["rng"][0]["numpy"]["keys"], torch.Tensor)
    assert load_checkpoint(ckpt)["step"] == 2

    marker = tmp_path / "code-ran"
    crafted = tmp_path / "crafted.pt"
    torch.save({"model": _RunsCode(marker), "step": 0}, crafted)
    refused = "not a checkpoint that can be loaded safely.*Unsupported global: GLOBAL io.open\\).*Delete it and start"
    with pytest.raises(ValueError, match=refused):
        train(model, loaders, ckpt_path=crafted, **kw)
    assert not marker.exists(), "loading the checkpoint ran code"

    old = tmp_path / "old.pt"  # what the previous format saved: numpy's RNG state as a numpy array
    import numpy as np
    legacy = {**state, "rng": [{"torch": torch.get_rng_state(), "numpy": np.random.get_state(),
                                "python": __import__("random").getstate()}]}
    legacy.pop("format")
    torch.save(legacy, old)
    with pytest.raises(ValueError, match="older lconv.*Delete it and start the run again"):
        train(model, loaders, ckpt_path=old, **kw)
    upgrade_checkpoint(old)  # the owner of an earlier-format file can convert it explicitly
    assert load_checkpoint(old)["step"] == 2
    no_format = tmp_path / "no-format.pt"
    torch.save({k: v for k, v in state.items() if k != "format"}, no_format)
    with pytest.raises(ValueError, match="format none.*Delete it and start the run again"):
        load_checkpoint(no_format)


def test_lm_training_and_perplexity():
    """A tiny H3-Conv LM learns a periodic token stream; eval reports loss and ppl = exp(loss)."""
    V, L = 8, 32
    seq = torch.arange(64 * (L + 1)) % 5 + torch.randint(0, 2, (64 * (L + 1),)) * 3  # (N·(L+1),)
    seq = seq.view(64, L + 1)
    data = TensorDataset(seq[:, :-1], seq[:, 1:])
    torch.manual_seed(0)
    model = CausalLM(V, 16, 2, L, mixer="h3conv", lr=1e-2)
    h = train(model, (DataLoader(data, batch_size=16, shuffle=True), DataLoader(data, batch_size=32)), kind="lm",
              steps=60, lr=3e-3, warmup=5, eval_every=30, device="cpu", log=False)
    assert h["val_ppl"][-1] == pytest.approx(math.exp(h["val_loss"][-1]))
    assert h["val_loss"][-1] < 0.8 * math.log(V)
    assert h["tokens_seen"] == 60 * 16 * L


def test_evaluate_counts_accuracy():
    class Constant(nn.Module):
        def __init__(self):
            super().__init__()
            self.w = nn.Parameter(torch.tensor([2.0, 0.0]))

        def forward(self, x):
            return self.w.expand(x.shape[0], 2)

    y = torch.tensor([0, 0, 0, 1, 1, 0, 1])
    loader = DataLoader(TensorDataset(torch.zeros(7, 3, 1), y), batch_size=3)
    m = evaluate(Constant(), loader, "classify", "cpu")
    assert m["accuracy"] == pytest.approx(4 / 7) and m["n"] == 7
    p0 = math.exp(2) / (math.exp(2) + 1)
    assert m["loss"] == pytest.approx(-(4 * math.log(p0) + 3 * math.log(1 - p0)) / 7)


def test_non_finite_loss_stops_training(tmp_path):
    x = torch.randn(16, 8, 1)
    x[3, 2, 0] = float("nan")

    class Pool(nn.Module):
        def __init__(self):
            super().__init__()
            self.lin = nn.Linear(1, 2)

        def forward(self, x):
            return self.lin(x).mean(1)  # (B, 2)

    loader = DataLoader(TensorDataset(x, torch.zeros(16, dtype=torch.long)), batch_size=4)
    with pytest.raises(FloatingPointError, match="loss became nan at step 1.*lr"):
        train(Pool(), (loader, None), kind="classify", steps=5, device="cpu", log=False,
              ckpt_path=tmp_path / "c.pt")
    assert not (tmp_path / "c.pt").exists()


def test_time_limit_stops_at_a_checkpoint_and_resumes(tmp_path):
    """A spent time limit stops after the current step with a checkpoint; resuming finishes the straight run."""
    kw = dict(kind="classify", steps=6, lr=1e-2, warmup=1, device="cpu", seed=1, log=False)
    model, loaders = _tiny_setup()
    straight = train(model, loaders, **kw)
    ckpt = tmp_path / "run.pt"
    model_a, loaders_a = _tiny_setup()
    cut = train(model_a, loaders_a, ckpt_path=ckpt, time_limit_s=1e-9, **kw)
    assert len(cut["train_loss"]) == 1 and ckpt.exists() and cut["eval_step"] == []
    resumed = train(model_a, loaders_a, ckpt_path=ckpt, **kw)
    assert resumed["train_loss"] == straight["train_loss"] and resumed["val_loss"] == straight["val_loss"]
    with pytest.raises(ValueError, match="time_limit_s"):
        train(model, loaders, time_limit_s=0, **kw)


def test_bad_arguments_raise_value_error():
    model, loaders = _tiny_setup()
    with pytest.raises(ValueError, match="kind must be one of"):
        train(model, loaders, kind="regress", steps=2, log=False)
    with pytest.raises(ValueError, match="steps must be a positive int"):
        train(model, loaders, kind="classify", steps=0, log=False)
    with pytest.raises(ValueError, match="warmup"):
        train(model, loaders, kind="classify", steps=2, warmup=5, log=False)
    with pytest.raises(ValueError, match="Task.*tuple"):
        train(model, "cifar", kind="classify", steps=2, log=False)
    big = DataLoader(loaders[0].dataset, batch_size=64)
    with pytest.raises(ValueError, match="lower batch_size"):
        train(model, (big, None), kind="classify", steps=2, log=False)


def _free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.slow
def test_ddp_two_processes_match_one(tmp_path):
    """torchrun with 2 CPU processes (gloo) on the same global batch gives the 1-process losses within 1e-5."""
    sys.path.insert(0, str(HERE))
    import ddp_worker

    single = ddp_worker.run()
    out = tmp_path / "ddp.json"
    env = {**os.environ, "OMP_NUM_THREADS": "1", "GLOO_SOCKET_IFNAME": "lo"}
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_addr", "127.0.0.1",
           "--master_port", str(_free_port()), str(HERE / "ddp_worker.py"), str(out)]
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=180)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    ddp = json.loads(out.read_text())
    assert ddp["world_size"] == 2 and single["world_size"] == 1
    assert len(ddp["train_loss"]) == ddp_worker.STEPS
    torch.testing.assert_close(torch.tensor(ddp["train_loss"]), torch.tensor(single["train_loss"]),
                               rtol=0, atol=1e-5)
    torch.testing.assert_close(torch.tensor(ddp["val_loss"]), torch.tensor(single["val_loss"]), rtol=0, atol=1e-5)
    assert ddp["val_accuracy"] == single["val_accuracy"]


def test_accepts_a_task_and_uses_its_loaders():
    """A lconv.data-style Task (duck-typed here): kind comes from the task, batch_size goes to task.loaders."""
    model, (train_loader, val_loader) = _tiny_setup()
    calls = []

    class FakeTask:
        name, kind = "fake", "classify"

        def loaders(self, batch_size, num_workers=0):
            calls.append(batch_size)
            return (DataLoader(train_loader.dataset, batch_size=batch_size, shuffle=True),
                    DataLoader(val_loader.dataset, batch_size=batch_size), None)

    h = train(model, FakeTask(), steps=4, batch_size=6, device="cpu", log=False)
    assert calls == [6] and h["kind"] == "classify" and len(h["train_loss"]) == 4
    assert h["tokens_seen"] == 4 * 6 * 16 and h["eval_step"] == [4]
    with pytest.raises(ValueError, match="pass kind='classify'"):
        train(model, FakeTask(), kind="lm", steps=2, log=False)
