"""The official settings table (lconv.paper) and our settings against it (lconv.fidelity)."""
import pytest

from lconv.experiments import settings
from lconv.experiments.squash_smooth import SQUASH_SMOOTH, task_settings
from lconv.fidelity import fidelity_table, ours_knobs
from lconv.paper import KNOB_SOURCES, KNOBS, OFFICIAL_SETTINGS, SOURCES, TASKS

# The knobs on which the notebook's full "cifar_gray" run claims to be the LRA Image config.
CIFAR_MATCHED = ("d_model", "n_layers", "lam", "kernel_lr", "kernel_dropout", "dropout", "batch_size", "lr",
                 "weight_decay")


def _cifar_gray():
    train, _, kernel = task_settings(settings(SQUASH_SMOOTH, "full"), "cifar_gray")
    return ours_knobs(train, kernel)


def test_every_official_task_has_every_knob_and_a_source():
    assert set(OFFICIAL_SETTINGS) == set(TASKS) == set(SOURCES) == set(KNOB_SOURCES)
    for task in TASKS:
        assert set(OFFICIAL_SETTINGS[task]) == set(KNOBS), task
        assert set(KNOB_SOURCES[task]) == set(KNOBS), task
        assert all(isinstance(s, str) and s for s in KNOB_SOURCES[task].values()), task


def test_official_values_spot_checks():
    # values read from the safari files, so an accidental edit of the table fails here
    assert OFFICIAL_SETTINGS["lra_listops"]["kernel_lr"] == 5e-4 and OFFICIAL_SETTINGS["lra_listops"]["n_layers"] == 8
    assert OFFICIAL_SETTINGS["lra_cifar"]["norm"] == "layer" and OFFICIAL_SETTINGS["lra_cifar"]["warmup"] == 1000
    assert OFFICIAL_SETTINGS["lra_pathfinder"]["pool"] == "last" and OFFICIAL_SETTINGS["lra_pathx"]["pool"] == "mean"
    assert OFFICIAL_SETTINGS["scifar_standalone"]["lam"] == 0.001
    assert all(OFFICIAL_SETTINGS[t]["smooth"] is False for t in TASKS)
    assert all(OFFICIAL_SETTINGS[t]["kernel_weight_decay"] == 0.0 for t in TASKS)


def test_full_cifar_gray_matches_lra_cifar_on_the_claimed_knobs():
    ours = _cifar_gray()
    official = OFFICIAL_SETTINGS["lra_cifar"]
    differ = {k: (ours[k], official[k]) for k in CIFAR_MATCHED if ours[k] != pytest.approx(official[k])}
    assert not differ, f"full cifar_gray differs from lra_cifar on {differ}"


def test_ours_knobs_fills_our_fixed_facts():
    ours = _cifar_gray()
    assert set(ours) == set(KNOBS)
    assert ours["norm"] == "layer" and ours["postact"] == "glu" and ours["tie_dropout"] is False
    assert ours["kernel_weight_decay"] == 0.0 and ours["init"] == "random" and ours["schedule"] == "cosine_warmup"
    assert ours["steps"] == 200_000 and ours["epochs"] is None and ours["smooth"] == 7
    train, _, kernel = task_settings(settings(SQUASH_SMOOTH, "full"), "cifar_gray")
    assert ours_knobs(train, kernel, n_train=50_000)["epochs"] == pytest.approx(200.0)


def test_table_columns_and_differs_flags_a_changed_value():
    ours = _cifar_gray()
    changed = dict(ours, lam=0.004)
    t = fidelity_table("lra_cifar", {"full": ours, "changed": changed})
    assert list(t.columns) == ["knob", "official", "full", "changed", "differs"]
    assert list(t.knob) == list(KNOBS)
    row = t.set_index("knob")
    assert bool(row.loc["lam", "differs"]) and row.loc["lam", "changed"] == 0.004
    only_full = fidelity_table("lra_cifar", {"full": ours}).set_index("knob")
    assert not only_full.loc[list(CIFAR_MATCHED), "differs"].any()
    assert only_full.loc["tie_dropout", "differs"]  # ours is untied, the official config ties it


def test_float_tolerance_and_bool_strictness():
    ours = _cifar_gray()
    near = dict(ours, lr=0.01 * (1 + 1e-12), prenorm=0)  # 0 is not False
    row = fidelity_table("lra_cifar", {"x": near}).set_index("knob")
    assert not row.loc["lr", "differs"]
    assert row.loc["prenorm", "differs"]


def test_unknown_task_or_knob_raises():
    with pytest.raises(ValueError, match="unknown official task"):
        fidelity_table("lra_nope", {"x": {}})
    with pytest.raises(ValueError, match="unknown knob"):
        fidelity_table("lra_cifar", {"x": {"d_modle": 512}})
    train, _, kernel = task_settings(settings(SQUASH_SMOOTH, "full"), "cifar_gray")
    with pytest.raises(ValueError, match="unknown train key"):
        ours_knobs(dict(train, warmpu=5), kernel)
    with pytest.raises(ValueError, match="lacks"):
        ours_knobs({k: v for k, v in train.items() if k != "steps"}, kernel)
