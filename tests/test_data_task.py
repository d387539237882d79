"""The get_task interface: registry, profiles, overrides, loaders, item shapes; and the network guard."""
import socket

import pytest
import torch

from lconv.data import PROFILES, TASKS, Task, get_task
from lconv.netguard import NetworkBlocked

GENERATED = ["listops", "pathfinder32", "assoc_recall", "induction", "digits"]


def test_network_is_blocked():
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    try:
        with pytest.raises(NetworkBlocked):
            s.connect(("93.184.216.34", 80))
        with pytest.raises(NetworkBlocked):
            s.connect_ex(("93.184.216.34", 80))
    finally:
        s.close()


def test_unknown_task_profile_and_parameter_raise_valueerror(tmp_path):
    with pytest.raises(ValueError, match="unknown task"):
        get_task("no_such_task", root=tmp_path)
    with pytest.raises(ValueError, match="profile"):
        get_task("digits", profile="huge", root=tmp_path)
    with pytest.raises(ValueError, match="n_train"):  # the message lists the known parameters
        get_task("digits", profile="smoke", root=tmp_path, n_trian=10)


def test_registry_names_from_the_brief():
    for name in ["digits", "smnist", "psmnist", "listops", "pathfinder32", "pathfinder64", "path128", "path256",
                 "assoc_recall", "induction", "kjv", "cifar", "lra_listops", "lra_imdb", "lra_aan",
                 "lra_pathfinder", "wikitext103"]:
        assert name in TASKS
    assert PROFILES == ("smoke", "quick", "full")


@pytest.mark.parametrize("name", GENERATED)
def test_smoke_tasks_follow_the_interface(name, tmp_path):
    task = get_task(name, profile="smoke", seed=0, root=tmp_path)
    assert isinstance(task, Task) and task.kind in ("classify", "lm")
    assert 100 <= len(task.train) <= 1000 and len(task.val) > 0 and len(task.test) > 0
    train, val, test = task.loaders(batch_size=16)
    x, y = next(iter(train))
    assert x.shape[:2] == (16, task.seq_len)
    if task.vocab_size is None:  # continuous inputs: (B, L, d_input) float32
        assert x.dtype == torch.float32 and x.shape == (16, task.seq_len, task.d_input) and task.d_input >= 1
        assert torch.isfinite(x).all()
    else:  # tokens: (B, L) int64 within the vocabulary
        assert x.dtype == torch.int64 and x.shape == (16, task.seq_len) and task.d_input is None
        assert 0 <= int(x.min()) and int(x.max()) < task.vocab_size
    if task.kind == "classify":
        assert y.shape == (16,) and y.dtype == torch.int64 and 0 <= int(y.min()) and int(y.max()) < task.n_classes
    else:
        assert y.shape == x.shape and y.dtype == torch.int64 and task.n_classes is None


def test_train_loader_shuffle_is_seeded(tmp_path):
    t1 = get_task("digits", profile="smoke", seed=3, root=tmp_path)
    t2 = get_task("digits", profile="smoke", seed=3, root=tmp_path)
    t3 = get_task("digits", profile="smoke", seed=4, root=tmp_path)
    first = lambda t: next(iter(t.loaders(8)[0]))[1]  # noqa: E731
    assert torch.equal(first(t1), first(t2))
    assert not torch.equal(first(t1), first(t3))


def test_digits_sizes_and_values(tmp_path):
    task = get_task("digits", profile="quick", root=tmp_path)
    assert (len(task.train), len(task.val), len(task.test)) == (1197, 300, 300)
    assert task.seq_len == 64 and task.n_classes == 10 and task.d_input == 1
    xs = torch.stack([task.train[i][0] for i in range(len(task.train))])  # (N, 64, 1)
    assert abs(xs.mean().item()) < 0.05 and abs(xs.std().item() - 1) < 0.05  # normalised on train
    labels = {int(task.test[i][1]) for i in range(len(task.test))}
    assert labels == set(range(10))
