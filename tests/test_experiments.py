"""The experiment helpers of notebooks 01–02: comparisons on a tiny task, checkpoint reuse, timing, verdicts."""
import math

import numpy as np
import pandas as pd
import pytest
import torch

from lconv.data import get_task
from lconv.experiments import Variant, checkpoint_dir, compare, run_key, settings
from lconv.experiments.long_convs import LONG_CONVS, example_kernel, loglog_slope, time_convs
from lconv.experiments.squash_smooth import (SQUASH_SMOOTH, accuracy_verdict, chance_level, init_variants,
                                             lam_sweep_variants, smoothness_verdict, squash_smooth_variants,
                                             task_settings)
from lconv.inspect import kernel_metrics, learned_kernels, trainable_fraction
from lconv.models import build_model
from lconv.train import train

TRAIN = dict(d_model=8, n_layers=1, steps=6, lr=1e-2, batch_size=16, warmup=1)
COLUMNS = {"task", "variant", "mixer", "val_accuracy", "test_accuracy", "train_accuracy", "n_test", "final_train_loss", "sparsity",
           "total_variation", "high_freq_energy", "spectral_tv", "sparsity_init", "total_variation_init",
           "high_freq_energy_init", "spectral_tv_init", "trainable_fraction", "trainable_fraction_init", "params", "steps", "steps_done", "complete", "train_time_s", "wall_s", "resumed"}


@pytest.fixture(scope="module")
def digits():
    return get_task("digits", profile="smoke", n_train=64, n_val=32, n_test=32)


def _variants():
    v = squash_smooth_variants(lam=0.002, kernel_lr=1e-2, s4d_lr=1e-2, d_state=8)
    return [v[0], v[1], v[4]]  # long conv, + Squash, S4D


def test_compare_returns_metrics_and_kernels(digits, tmp_path):
    run = compare(digits, _variants(), **TRAIN, seed=0, device="cpu", ckpt_dir=tmp_path)
    t = run.table
    assert set(t.columns) == COLUMNS
    assert list(t.variant) == ["long conv", "+ Squash", "S4D"] and (t.task == "digits").all()
    assert ((t.test_accuracy >= 0) & (t.test_accuracy <= 1)).all() and np.isfinite(t.final_train_loss).all()
    r = t.set_index("variant")
    assert r.loc["long conv", "sparsity"] == 0.0
    assert r.loc["+ Squash", "sparsity"] > 0.5  # ≈ 68 % of taps start below λ = 0.002 and stay zero
    assert math.isnan(r.loc["long conv", "trainable_fraction"]) and math.isnan(r.loc["S4D", "trainable_fraction"])
    assert abs(r.loc["+ Squash", "trainable_fraction_init"] - math.erfc(1 / math.sqrt(2))) < 0.06
    assert not t.resumed.any()
    for name, model in run.models.items():  # the training accuracy: every training example, in eval mode
        x = torch.stack([digits.train[i][0] for i in range(len(digits.train))])
        y = torch.tensor([int(digits.train[i][1]) for i in range(len(digits.train))])
        with torch.no_grad():
            assert r.loc[name, "train_accuracy"] == pytest.approx((model(x).argmax(-1) == y).float().mean().item())
    for name in t.variant:
        assert run.kernels[name]["init"].shape == run.kernels[name]["trained"].shape == (1, 1, 8, 64)
        assert not torch.equal(run.kernels[name]["init"], run.kernels[name]["trained"])  # training moved them
        assert len(run.histories[name]["train_loss"]) == TRAIN["steps"]


def test_compare_reuses_finished_and_resumes_interrupted_runs(digits, tmp_path):
    variants = _variants()[:2]
    # interrupt "+ Squash" after 2 of 6 steps, at the path compare() uses
    cfg = dict(d_model=8, n_layers=1, steps=6, lr=1e-2, batch_size=16, seed=0, weight_decay=0.0, warmup=1,
               prenorm=False, dropout=0.0, pool="mean")
    ckpt = tmp_path / "digits" / f"longconv-{run_key(digits, variants[1], cfg)}.pt"
    model = build_model(digits, variants[1], d_model=8, n_layers=1, seed=0)
    train(model, digits, steps=6, lr=1e-2, warmup=1, device="cpu", ckpt_path=ckpt, seed=0, log=False,
          batch_size=16, until=2)
    assert ckpt.exists()
    first = compare(digits, variants, **TRAIN, seed=0, device="cpu", ckpt_dir=tmp_path)
    assert list(first.table.resumed) == [False, True]
    assert len(first.histories["+ Squash"]["train_loss"]) == 6
    again = compare(digits, variants, **TRAIN, seed=0, device="cpu", ckpt_dir=tmp_path)
    assert again.table.resumed.all()
    pd.testing.assert_series_equal(first.table.test_accuracy, again.table.test_accuracy)
    for name in ("long conv", "+ Squash"):
        assert torch.equal(first.kernels[name]["trained"], again.kernels[name]["trained"])
    # a different setting is a different run, not a resumed one
    other = compare(digits, variants[:1], **dict(TRAIN, lr=5e-3), seed=0, device="cpu", ckpt_dir=tmp_path)
    assert not other.table.resumed.any()


def test_equal_settings_share_a_run_key(digits):
    cfg = dict(d_model=8, steps=6)
    none, squash = squash_smooth_variants(lam=0.002, kernel_lr=1e-2)[:2]
    lam0, lam2 = lam_sweep_variants((0.0, 0.002), kernel_lr=1e-2)
    rand, decay = init_variants(lam=0.002, kernel_lr=1e-2)
    assert run_key(digits, none, cfg) == run_key(digits, lam0, cfg)
    assert run_key(digits, squash, cfg) == run_key(digits, lam2, cfg) == run_key(digits, rand, cfg)
    assert run_key(digits, decay, cfg) != run_key(digits, rand, cfg)
    assert run_key(digits, none, cfg) != run_key(digits, none, dict(cfg, steps=7))


def test_variants_and_settings_validate():
    names = [v.name for v in squash_smooth_variants()]
    assert names == ["long conv", "+ Squash", "+ Smooth", "+ Squash + Smooth", "S4D"]
    with pytest.raises(ValueError, match="lam"):
        squash_smooth_variants(lam=0.0)
    for table in (LONG_CONVS, SQUASH_SMOOTH):
        assert set(table) == {"smoke", "quick", "full"}
        with pytest.raises(ValueError, match="profile"):
            settings(table, "huge")
    for profile in ("smoke", "quick", "full"):
        cfg = settings(SQUASH_SMOOTH, profile)
        assert cfg["sweep"]["task"] in cfg["tasks"] and cfg["init"]["task"] in cfg["tasks"]
        for name in cfg["tasks"]:
            train_kw, _, kernel_kw = task_settings(cfg, name)
            assert {"d_model", "n_layers", "steps", "lr", "batch_size"} <= set(train_kw)
            assert 0 < kernel_kw["lam"] < 0.01  # on the init scale randn·0.002, never the code default 0.1
    with pytest.raises(ValueError, match="choose one of"):
        task_settings(settings(SQUASH_SMOOTH, "quick"), "nope")


def test_compare_rejects_bad_input(digits):
    with pytest.raises(ValueError, match="at least one"):
        compare(digits, [], **TRAIN)
    with pytest.raises(ValueError, match="unique"):
        compare(digits, [Variant("a"), Variant("a")], **TRAIN)
    model = build_model(digits, Variant("attn", "attention", {}), d_model=8, n_layers=1)
    with pytest.raises(ValueError, match="no LongConvKernel"):
        learned_kernels(model)
    assert math.isnan(trainable_fraction(model))


def test_kernel_metrics_tell_noise_from_smooth_and_sparse():
    g = torch.Generator().manual_seed(0)
    noise = kernel_metrics(torch.randn(16, 512, generator=g))
    smooth = kernel_metrics(torch.sin(torch.linspace(0, 3, 512)).expand(16, -1))
    assert noise["total_variation"] > 1.2 and noise["high_freq_energy"] > 0.4 and noise["sparsity"] == 0
    assert smooth["total_variation"] < 0.05 and smooth["high_freq_energy"] < 0.01
    k = example_kernel(256)
    assert k.shape == (256,) and kernel_metrics(torch.where(k.abs() > 0.002, k, 0 * k))["sparsity"] > 0.3


def test_time_convs_and_loglog_slope():
    df = time_convs((16, 32, 64), B=1, H=2, repeats=1, threads=1)
    assert list(df.columns) == ["L", "method", "seconds"] and len(df) == 6 and (df.seconds > 0).all()
    assert set(df.method) == {"direct", "fft"}
    L = np.array([64, 128, 256, 512])
    assert loglog_slope(L, 3e-9 * L**2) == pytest.approx(2.0)
    assert loglog_slope(L, 1e-7 * L * np.log(L)) == pytest.approx(1.0, abs=0.2)
    with pytest.raises(ValueError):
        loglog_slope([1, 2], [0.1, -1.0])
    with pytest.raises(ValueError):
        time_convs((1,))
    stopped = time_convs((16, 32), methods={"slow": lambda u, k: None}, repeats=1, max_seconds=-1.0)
    assert list(stopped.L) == [16]  # over budget at L = 16: not timed at L = 32


def test_verdicts_follow_the_numbers():
    rows = [("a", "long conv", 0.50, 0.3), ("a", "+ Squash", 0.60, 1.2), ("b", "long conv", 0.62, 1.1),
            ("b", "+ Squash", 0.50, 0.4), ("c", "long conv", 0.11, 0.2), ("c", "+ Squash", 0.12, 0.3),
            ("d", "long conv", 0.70, 0.2), ("d", "+ Squash", 0.71, 0.3)]
    t = pd.DataFrame(rows, columns=["task", "variant", "test_accuracy", "total_variation"])
    text = accuracy_verdict(t, {"a": 0.1, "b": 0.1, "c": 0.1, "d": 0.1}).splitlines()
    assert "beats long conv by 10.0 points" in text[0] and "paper's direction" in text[0]
    assert "opposite" in text[1] and "beyond chance" in text[2] and "no accuracy gap" in text[3]
    tv = smoothness_verdict(t, others=("+ Squash",)).splitlines()
    assert "rougher" in tv[0] and "smoother" in tv[1]
    t["n_test"] = 100  # two standard errors of a difference near p = 0.55 on 100 samples ≈ 14 points
    assert all("no accuracy gap" in line or "beyond chance" in line
               for line in accuracy_verdict(t, {"a": 0.1, "b": 0.1, "c": 0.1, "d": 0.1}).splitlines())
    with pytest.raises(ValueError, match="lacks"):
        accuracy_verdict(t[t.variant == "long conv"], {"a": 0.1, "b": 0.1, "c": 0.1, "d": 0.1})
    # a test score above chance whose validation score sits at chance is not learning
    fluke = pd.DataFrame([("p", "long conv", 0.498, 0.514), ("p", "S4D", 0.560, 0.498)],
                         columns=["task", "variant", "test_accuracy", "val_accuracy"]).assign(n_test=1000)
    assert "no variant learned beyond chance" in accuracy_verdict(fluke, {"p": 0.5}, other="S4D")
    fluke["val_accuracy"] = [0.514, 0.580]
    assert "S4D beats long conv by 6.2 points" in accuracy_verdict(fluke, {"p": 0.5}, other="S4D")


def test_chance_level_and_checkpoint_dir(digits, tmp_path):
    ys = torch.tensor([int(digits.test[i][1]) for i in range(len(digits.test))])
    assert chance_level(digits) == pytest.approx(torch.bincount(ys).max().item() / len(ys))
    assert checkpoint_dir(tmp_path / "results", "02_x") == (tmp_path / "checkpoints" / "02_x").resolve()


# ---------------------------------------------------------------- the verdicts of notebooks 01, 02 and 04, in words

def test_settings_override_lam_and_steps_everywhere_and_keep_the_table():
    cfg = settings(SQUASH_SMOOTH, "full", lam=0.01, steps=100)
    assert all(t["train"]["steps"] == 100 for t in cfg["tasks"].values())
    assert cfg["kernel"]["lam"] == 0.01 and all(t["kernel"]["lam"] == 0.01 for t in cfg["tasks"].values())
    assert cfg["tasks"]["lra_listops"]["train"]["warmup"] == round(10_000 * 100 / 80_000)  # warm-up scaled
    assert SQUASH_SMOOTH["full"]["kernel"]["lam"] == 0.002  # a deep copy
    assert settings(SQUASH_SMOOTH, "quick") == SQUASH_SMOOTH["quick"]  # None keeps the profile's
    assert settings(LONG_CONVS, "quick", lam=0.0)["kernel"] == dict(LONG_CONVS["quick"]["kernel"], lam=0.0)


def _metrics(tv, stv, hf=0.3):
    return {"total_variation": tv, "spectral_tv": stv, "high_freq_energy": hf, "sparsity": 0.0}


def test_roughness_verdict_follows_the_numbers():
    from lconv.experiments.long_convs import roughness_verdict

    noise = _metrics(1.4, 0.46, 0.5)
    rough = roughness_verdict(_metrics(0.02, 0.1), _metrics(1.0, 0.2), noise, steps=200)
    assert rough.startswith("As in the paper: the trained kernels are noisy") and "rougher than the random" in rough
    smooth = roughness_verdict(_metrics(1.4, 0.4), _metrics(0.1, 0.3), noise, steps=200)
    assert smooth.startswith("Not as in the paper") and "after 200 steps" in smooth and "smoother than" in smooth


def _kernel_table(tv_long, tv_squash, stv_long, stv_squash):
    rows = []
    for task in ("a", "b"):
        for v, tv, stv in (("long conv", tv_long, stv_long), ("+ Squash", tv_squash, stv_squash)):
            rows.append(dict(task=task, variant=v, total_variation=tv, spectral_tv=stv, spectral_tv_init=0.4))
    return pd.DataFrame(rows)


def test_kernel_and_init_verdicts_follow_the_numbers():
    from lconv.experiments.squash_smooth import (init_verdict, kernel_verdict, scale_note,
                                                 squashed_smoother_in_frequency)

    paper_like = _kernel_table(1.0, 0.5, 0.5, 0.2)
    assert kernel_verdict(paper_like, "quick").startswith("As in the paper: on every task")
    assert "— as in the paper." in kernel_verdict(paper_like, "quick")
    assert squashed_smoother_in_frequency(paper_like) == ["a", "b"]
    unlike = _kernel_table(0.5, 1.0, 0.2, 0.5)
    assert kernel_verdict(unlike, "quick").startswith("Unlike the paper's figure, at quick scale")
    assert "(none) — unlike the paper." in kernel_verdict(unlike, "quick")
    assert squashed_smoother_in_frequency(unlike) == []
    assert "Robust to initialisation" in init_verdict("smnist", 0.80, 0.82)
    assert "+2.0 points; paper on sCIFAR: +1.1" in init_verdict("smnist", 0.80, 0.82)
    assert "Not robust" in init_verdict("smnist", 0.70, 0.80)
    assert scale_note("full") == "" and "69.5 → 86.1" in scale_note("quick")


def test_paper_rows_take_the_papers_numbers_from_lconv_paper():
    from lconv.experiments.squash_smooth import paper_rows
    from lconv.paper import LRA_AVERAGE, SCIFAR

    table = pd.DataFrame([dict(task="digits", variant=v, test_accuracy=0.5, steps=10, sparsity=0.1,
                               total_variation=0.2, spectral_tv=0.3)
                          for v in ("long conv", "+ Squash", "+ Squash + Smooth", "S4D")])
    rows = paper_rows(table, settings(SQUASH_SMOOTH, "smoke"), "smoke", "digits", 0.5, 0.6)
    by_claim = {r["claim"]: r for r in rows}
    assert by_claim["LRA average, long conv"]["paper"] == LRA_AVERAGE["long conv"]
    assert by_claim["LRA average, S4D (paper: S4)"]["paper"] == LRA_AVERAGE["S4D"]
    assert by_claim["sCIFAR, random init (+ Squash)"]["paper"] == SCIFAR["random init"]
    assert by_claim["sCIFAR, exponential-decay init (+ Squash)"]["ours"] == pytest.approx(60.0)


def test_gain_verdict_follows_the_gain_and_its_standard_error():
    from lconv.experiments.learned_butterfly import gain_summary, gain_verdict

    def table(fixed, learned):
        return pd.DataFrame({"test_accuracy": [fixed, learned], "params": [1000, 1100]},
                            index=["fixed FFT", "learned Butterfly"])

    s = gain_summary(table(0.80, 0.81), n_test=1000)
    assert s["gain"] == pytest.approx(1.0) and s["extra_params"] == 100 and s["extra_share"] == pytest.approx(10)
    assert "within noise" in gain_verdict(s, "quick", "8×8 digits")
    assert "neither confirms nor refutes" in gain_verdict(s, "quick", "8×8 digits")
    assert "in the direction of the paper's +1.5" in gain_verdict(gain_summary(table(0.5, 0.9), 1000), "full", "x")
    assert "lose" in gain_verdict(gain_summary(table(0.9, 0.5), 1000), "full", "x")
