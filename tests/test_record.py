"""Recordings of notebook 02's comparison: plans from the profiles, time-boxed chunks that resume to the same rows."""
import json
import time

import pytest
import torch

import lconv.record
from lconv.data import get_task
from lconv.experiments.squash_smooth import SQUASH_SMOOTH, squash_smooth_variants
from lconv.record import STAND_INS, _parse_sets, load_records, main, make_plans, record, record_path

TINY = {"*": {"n_train": 48, "n_val": 16, "n_test": 16}}


def test_plans_follow_the_profile_and_shorten_runs_in_proportion():
    full = SQUASH_SMOOTH["full"]["tasks"]
    plans = make_plans("full", ["lra_listops", "lra_pathfinder"], steps=4000, data="generated",
                       overrides={"lra_pathfinder": {"n_train": 50000}})
    listops, path = plans
    assert (listops.data, path.data) == (STAND_INS["lra_listops"], STAND_INS["lra_pathfinder"]) == \
        ("listops", "pathfinder32")
    assert listops.train["steps"] == path.train["steps"] == 4000
    assert listops.train["warmup"] == round(full["lra_listops"]["train"]["warmup"] * 4000 / 80_000) == 500
    assert listops.train["eval_every"] == 2000 and path.train["eval_every"] == 4000  # capped at the run length
    assert path.overrides == {"n_train": 50000} and listops.overrides == {}
    assert path.kernel["bidirectional"] and path.kernel["lam"] == 0.001  # the task's kernel options
    assert listops.train["d_model"] == 128 and listops.train["n_layers"] == 8  # everything else as configured
    assert make_plans("full", ["lra_listops"])[0].data == "lra_listops"  # release data by default
    assert [p.task for p in make_plans("quick")] == list(SQUASH_SMOOTH["quick"]["tasks"])


def test_plans_refuse_what_cannot_be_recorded():
    with pytest.raises(ValueError, match="no generated stand-in"):
        make_plans("full", ["lra_imdb"], data="generated")
    with pytest.raises(ValueError, match="not recorded"):
        make_plans("quick", ["smnist"], overrides={"listops": {"n_train": 10}})
    with pytest.raises(ValueError, match="data must be one of"):
        make_plans("quick", data="lra")
    with pytest.raises(ValueError, match="steps must be a positive int"):
        make_plans("quick", steps=0)
    with pytest.raises(ValueError, match="not in this profile"):
        make_plans("quick", ["cifar"])
    with pytest.raises(ValueError, match="unknown kernel option"):
        make_plans("quick", kernel={"lr": 1e-3})
    with pytest.raises(SystemExit):  # argparse names the error and exits before anything trains
        main(["--profile", "smoke", "--kernel", "smnist.lam=0.001"])


def test_kernel_options_reach_every_variant():
    plans = make_plans("quick", ["smnist", "listops"], kernel={"kernel_lr": 1e-3, "lam": 0.003})
    for plan in plans:
        assert plan.kernel["kernel_lr"] == 1e-3 and plan.kernel["lam"] == 0.003
        assert plan.kernel["smooth_window"] == SQUASH_SMOOTH["quick"]["kernel"]["smooth_window"]  # the rest kept
        variants = squash_smooth_variants(**plan.kernel)
        assert all(v.kwargs["lr"] == 1e-3 for v in variants[:4]) and variants[1].kwargs["lam"] == 0.003
    assert record_path("/r", plans, profile="quick", seed=0, device="cpu") != \
        record_path("/r", make_plans("quick", ["smnist", "listops"]), profile="quick", seed=0, device="cpu")


def test_set_arguments_parse_per_task_and_for_all():
    assert _parse_sets(["lra_pathfinder.n_train=50000", "n_val=500", "listops.tol=1.5", "x.name=abc"]) == {
        "lra_pathfinder": {"n_train": 50000}, "*": {"n_val": 500}, "listops": {"tol": 1.5}, "x": {"name": "abc"}}
    with pytest.raises(ValueError, match="KEY=VALUE"):
        _parse_sets(["n_train"])


def test_a_recording_cut_by_its_budget_resumes_to_the_uncut_rows(tmp_path, monkeypatch):
    plans = make_plans("smoke", steps=8, overrides=TINY)
    kw = dict(profile="smoke", device="cpu", log=False)
    straight = record(plans, out_dir=tmp_path / "a", ckpt_dir=tmp_path / "a" / "ckpt", **kw)
    assert straight["complete"] and straight["pending"] == [] and len(straight["rows"]) == 5

    def slow_get_task(*args, **kwargs):  # data that takes longer than the whole budget to make
        time.sleep(0.3)
        return get_task(*args, **kwargs)

    with monkeypatch.context() as m:
        m.setattr(lconv.record, "get_task", slow_get_task)
        cut = record(plans, out_dir=tmp_path / "b", ckpt_dir=tmp_path / "b" / "ckpt", budget_s=0.2, **kw)
    assert not cut["complete"] and len(cut["pending"]) == 5 and cut["rows"] == []
    assert json.loads(open(cut["path"]).read())["pending"] == cut["pending"]  # written, not only returned
    ckpts = list((tmp_path / "b" / "ckpt" / "digits").glob("longconv-*.pt"))
    assert len(ckpts) == 1 and torch.load(ckpts[0], weights_only=False)["step"] == 1  # cut after one step
    resumed = record(plans, out_dir=tmp_path / "b", ckpt_dir=tmp_path / "b" / "ckpt", **kw)
    assert resumed["complete"] and resumed["path"] == cut["path"]
    for r, s in zip(resumed["rows"], straight["rows"]):
        assert r == {**s, "train_time_s": r["train_time_s"]}  # same numbers, whatever the timings
    assert [r["variant"] for r in resumed["rows"]] == ["long conv", "+ Squash", "+ Smooth", "+ Squash + Smooth",
                                                        "S4D"]
    assert resumed["provenance"]["device"].startswith("CPU") and resumed["provenance"]["commit"]
    # a third call finds every run recorded, trains nothing and leaves the file (and its provenance) as it was
    before = open(cut["path"]).read()
    again = record(plans, out_dir=tmp_path / "b", ckpt_dir=tmp_path / "nowhere", **kw)
    assert again["rows"] == resumed["rows"] and again["complete"] and not (tmp_path / "nowhere").exists()
    assert open(cut["path"]).read() == before


def test_other_settings_write_another_file_and_load_records_reads_all(tmp_path):
    a = make_plans("smoke", steps=8, overrides=TINY)
    b = make_plans("smoke", steps=9, overrides=TINY)
    paths = {record_path(tmp_path, p, profile="smoke", seed=0, device="cpu") for p in (a, b)}
    assert len(paths) == 2 and all(p.name.startswith("squash-smooth-cpu-") for p in paths)
    assert load_records(tmp_path).empty
    main(["--profile", "smoke", "--steps", "8", "--set", "n_train=48", "--set", "n_val=16", "--set", "n_test=16",
          "--out", str(tmp_path), "--ckpt-dir", str(tmp_path / "ckpt"), "--device", "cpu"])
    table = load_records(tmp_path)
    assert len(table) == 5 and table.recording_complete.all() and (table.profile == "smoke").all()
    assert {"device", "commit", "date", "file", "test_accuracy", "spectral_tv", "data"} <= set(table.columns)
    assert (table.steps == 8).all() and (table.data == "digits").all()
    assert table.settings[0].startswith("width 16, 1 layers, 8 steps (warm-up 1), batch 32, lr 0.01")
    assert table.settings[0].endswith("; data: n_train 48, n_val 16, n_test 16")


@pytest.mark.slow
def test_the_gpu_recording_builds_and_runs_its_models_here():
    """The LRA plans a GPU session would record, at their real widths and lengths: data, the five models, a forward
    and backward pass on two examples — so a configuration error shows here, not after device time is spent."""
    from lconv.models import build_model

    tiny = {"*": {"n_train": 8, "n_val": 4, "n_test": 4}}
    for plan in make_plans("full", ["lra_listops", "lra_pathfinder"], steps=10, data="generated", overrides=tiny):
        task = get_task(plan.data, profile="full", **plan.overrides)
        assert task.seq_len == {"listops": 2048, "pathfinder32": 1024}[plan.data]
        x, y = next(iter(task.loaders(2)[0]))
        t = plan.train
        for variant in squash_smooth_variants(**plan.kernel):
            model = build_model(task, variant, d_model=t["d_model"], n_layers=t["n_layers"], prenorm=t["prenorm"],
                                dropout=t.get("dropout", 0.0), pool=t.get("pool", "mean"))
            logits = model(x)
            assert logits.shape == (2, task.n_classes) and torch.isfinite(logits).all()
            torch.nn.functional.cross_entropy(logits, y).backward()
