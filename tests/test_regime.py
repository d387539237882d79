"""The regime study: its cells and stages, recording per (cell, seed), and the numbers read from the recordings."""
import math

import pandas as pd
import pytest

from lconv import regime
from lconv.experiments import scaled_steps
from lconv.record import Plan


def test_cells_are_named_by_their_settings_and_planned_on_the_base():
    for name, c in regime.CELLS.items():
        assert regime.cell_name(c) == name
    p = regime.plan("psmnist n1000 w32 klr-paper")
    assert (p.task, p.data) == ("psmnist n1000 w32 klr-paper", "psmnist")
    assert p.overrides == {"n_val": 500, "n_test": 2000, "perm_seed": 0, "n_train": 1000}
    assert p.kernel["kernel_lr"] == 1e-3 and p.kernel["lam"] == 0.002 and p.kernel["kernel_dropout"] == 0.0
    assert p.train["d_model"] == 32 and p.train["steps"] == 1500 and p.train["warmup"] == 150
    assert p.train["dropout"] == 0.1 and p.train["weight_decay"] == 0.05  # the official LRA Image values
    assert regime.plan("psmnist n1000 w32 klr-quick").kernel["kernel_lr"] == 2e-2
    for stage, (cells, seeds) in regime.STAGES.items():
        assert set(cells) <= set(regime.CELLS) and seeds


def test_bad_cells_and_stages_are_refused():
    with pytest.raises(ValueError, match="unknown regime cell"):
        regime.plan("cifar n1000 w32 klr-paper")
    with pytest.raises(ValueError, match="task must be"):
        regime.cell("cifar", 1000, 32, "paper", 10)
    with pytest.raises(ValueError, match="kernel_lr must be"):
        regime.cell("smnist", 1000, 32, "1e-3", 10)
    with pytest.raises(ValueError, match="stage must be"):
        regime.record_stage("all")
    with pytest.raises(ValueError, match="not in stage"):
        regime.record_stage("seeds", cells=["smnist n4000 w32 klr-paper"])


def _tiny_plan(name):
    """A digits stand-in for a cell (Fashion-MNIST is not needed to test the bookkeeping)."""
    p = Plan(task=name, data="digits", train=scaled_steps(dict(regime.BASE["train"], d_model=8, steps=100, warmup=10), 3),
             overrides={"n_train": 40, "n_val": 16, "n_test": 16},
             kernel=dict(regime.BASE["kernel"], kernel_lr=regime.KERNEL_LRS[regime.CELLS[name]["kernel_lr"]]))
    p.train["n_layers"] = 1
    return p


def test_stages_record_one_file_per_cell_and_seed_and_load_back(tmp_path, monkeypatch):
    monkeypatch.setattr(regime, "plan", _tiny_plan)
    cells = ["psmnist n1000 w32 klr-paper", "psmnist n1000 w32 klr-quick"]
    recs = regime.record_stage("seeds", out_dir=tmp_path, device="cpu", ckpt_dir=tmp_path / "ckpt", log=False)
    assert [(r["plans"][0]["task"], r["seed"]) for r in recs] == [(c, s) for s in (1, 2) for c in cells]
    assert all(r["complete"] and len(r["rows"]) == 5 for r in recs)
    assert len(list(tmp_path.glob("regime-cpu-*.json"))) == 4
    # the two kernel-lr twins share their S4D run (S4D's lr is its own): trained once, loaded once
    s4d = [r["rows"][-1] for r in recs[:2]]
    assert s4d[0]["variant"] == "S4D" and s4d[0]["test_accuracy"] == s4d[1]["test_accuracy"]
    runs = regime.load_regime(tmp_path)
    assert len(runs) == 20 and set(runs.seed) == {1, 2} and set(runs.kernel_lr) == {"paper", "quick"}
    assert (runs.task == "digits").all() and (runs.n_train == 40).all() and runs.commit.notna().all()
    assert ((runs.gap - (runs.train_accuracy - runs.test_accuracy)).abs() < 1e-12).all()
    again = regime.record_stage("seeds", out_dir=tmp_path, device="cpu", ckpt_dir=tmp_path / "none", log=False)
    assert [r["rows"] for r in again] == [r["rows"] for r in recs] and not (tmp_path / "none").exists()
    assert regime.load_regime(tmp_path / "empty").empty
    todo = regime.stage_status(tmp_path)
    assert todo["seeds"] == [] and todo["grid"] and ("psmnist n1000 w32 klr-paper", 0) in todo["grid"]


def _runs(diffs_by_seed, base_acc=0.7, n_test=2000, cell="c"):
    """A runs table: long conv at base_acc, + Squash at base_acc + d (points / 100) per seed."""
    rows = []
    for seed, d in enumerate(diffs_by_seed):
        for variant, acc in (("long conv", base_acc), ("+ Squash", base_acc + d / 100)):
            rows.append(dict(cell=cell, seed=seed, variant=variant, test_accuracy=acc, train_accuracy=1.0,
                             n_test=n_test, sparsity=0.0, trainable_fraction=float("nan"), total_variation=1.0, spectral_tv=0.4))
    out = pd.DataFrame(rows)
    out["gap"] = out.train_accuracy - out.test_accuracy
    return out


def test_differences_take_seed_errors_or_the_test_set_error_with_one_seed():
    d = regime.differences(_runs([3.0, 4.0, 5.0]), others=("+ Squash",)).iloc[0]
    assert d.seeds == 3 and d.difference == pytest.approx(4.0) and d.se == pytest.approx(1 / math.sqrt(3))
    assert d.verdict == "paper" and d.ci_low == pytest.approx(4.0 - 4.302653 / math.sqrt(3), rel=1e-5)
    d1 = regime.differences(_runs([-4.0]), others=("+ Squash",)).iloc[0]
    assert d1.se == pytest.approx(100 * math.sqrt(2 * 0.7 * 0.3 / 2000)) and d1.verdict == "opposite"
    assert regime.differences(_runs([1.0, -1.0, 0.5]), others=("+ Squash",)).iloc[0].verdict == "none"
    s = regime.cell_summary(_runs([3.0, 4.0, 5.0]))
    sq = s.set_index("variant").loc["+ Squash"]
    assert sq.seeds == 3 and sq.test_accuracy == pytest.approx(0.74) and sq.gap == pytest.approx(0.26)


def test_the_verdict_names_cells_in_each_direction():
    runs = pd.concat([_runs([3.0, 4.0, 5.0], cell="a"), _runs([-9.0], cell="b"), _runs([0.1], cell="c")])
    text = regime.regime_verdict(regime.differences(runs, others=("+ Squash",)))
    assert text == ("+ Squash − long conv over 3 cells: the paper's direction beyond two standard errors in a "
                    "(+4.0 ± 0.6 points, 3 seeds); the opposite beyond two standard errors in b (-9.0 ± 1.4 points, "
                    "1 seed); no difference beyond two standard errors in 1 cell.")
    assert regime.regime_verdict(regime.differences(runs.iloc[:0])) == "No regime cell has been recorded yet."
    fig = regime.plot_differences(runs, others=("+ Squash",))
    assert fig.axes[0].get_xlabel().startswith("test accuracy − long conv")


def test_rerun_refuses_unknown_cells_and_variants():
    with pytest.raises(ValueError, match="unknown regime cell"):
        regime.rerun_cell("psmnist n9 w1 klr-paper")
    with pytest.raises(ValueError, match="choose among"):
        regime.rerun_cell(regime.RERUN["cell"], variants=("long conv", "+ Squish"))
    assert regime.RERUN["cell"] in regime.CELLS


def test_rerun_statement_says_whether_the_recorded_run_was_repeated():
    name = "smnist n1000 w32 klr-quick"
    runs = pd.DataFrame({"cell": name, "seed": 0, "variant": ["long conv", "+ Squash"], "test_accuracy": [0.74, 0.77]})
    same = pd.DataFrame({"variant": ["long conv", "+ Squash"], "test_accuracy": [0.74, 0.77]})
    other = pd.DataFrame({"variant": ["long conv", "+ Squash"], "test_accuracy": [0.75, 0.73]})
    assert "+3.0 points" in regime.rerun_statement(same, runs, name) and "the same run" in \
        regime.rerun_statement(same, runs, name)
    assert "-2.0 points" in regime.rerun_statement(other, runs, name) and "not the same numbers" in \
        regime.rerun_statement(other, runs, name)
    assert "no recorded run" in regime.rerun_statement(same, runs.iloc[:0], name)


def test_the_markdown_table_gives_each_cell_its_differences_and_says_what_is_missing():
    runs = pd.concat([_runs([3.0, 4.0, 5.0], cell="b"), _runs([-9.0], cell="a")])
    text = regime.differences_markdown(runs, indent="  ", others=("+ Squash", "+ Smooth"))
    assert text.splitlines() == [
        "  | cell | seeds | long conv % | Squash − plain (points) | Smooth − plain (points) |",
        "  |---|---|---|---|---|",
        "  | a | 1 | 70.0 | -9.0 ± 1.4 (opposite) | not recorded |",
        "  | b | 3 | 70.0 | +4.0 ± 0.6 (paper) | not recorded |"]


def test_update_readme_rewrites_only_the_marked_block(tmp_path):
    import shutil

    src = next(regime.REGIME_DIR.glob(f"{regime.STUDY}-*.json"))
    shutil.copy(src, tmp_path / src.name)
    readme = tmp_path / "README.md"
    readme.write_text(f"intro\n- bullet:\n\n  {regime.TABLE_BEGIN}\n  stale\n  {regime.TABLE_END}\n\nend\n")
    block = regime.update_readme(readme, tmp_path)
    text = readme.read_text()
    assert text.startswith("intro\n- bullet:\n\n  " + regime.TABLE_BEGIN + "\n  | cell |") and "stale" not in text
    assert text.endswith("  " + regime.TABLE_END + "\n\nend\n") and regime.readme_table(readme) == block
    readme.write_text("no markers\n")
    with pytest.raises(ValueError, match="no regime table block"):
        regime.update_readme(readme, tmp_path)


def test_the_readme_table_is_the_one_the_recordings_give():
    """README.md's regime table equals the table of the complete recordings in results/regime: after recording,
    run `python -m lconv.regime table --readme` (and commit both)."""
    readme = regime.REGIME_DIR.parents[1] / "README.md"
    want = regime.differences_markdown(regime.load_regime(complete_only=True), indent="  ")
    assert regime.readme_table(readme) == want, "run `python -m lconv.regime table --readme`"
