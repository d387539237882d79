"""The claims ledger: the verdict rule, a ledger built from fixture results (verdicts, labels, devices), the README
block, and the summary's paper labels."""
import json

import pytest

from lconv import claims
from lconv.claims import (CONTRADICTED, DIRECTION, DIRECTION_ONLY, NOT_AT_SCALE, NOT_TESTABLE, REPRODUCED, SAME,
                          SAME_METRIC, Evidence, ClaimTest, verdict)


def _ev(value, se=None, comparability=SAME):
    return Evidence(value=value, se=se, unit="points", statistic="s", task="t", scale="s", profile="quick",
                    device="CPU", origin="this run", comparability=comparability)


@pytest.mark.parametrize("test, ev, expected", [
    (ClaimTest(+1, 0.0, target=1.5), _ev(2.0), REPRODUCED),  # same measurement, paper's value reached
    (ClaimTest(+1, 0.0, target=1.5), _ev(2.0, comparability=SAME_METRIC), REPRODUCED),
    (ClaimTest(+1, 0.0, target=1.5), _ev(2.0, comparability=DIRECTION), DIRECTION_ONLY),  # never more than direction
    (ClaimTest(+1, 0.0, target=1.5), _ev(0.8), DIRECTION_ONLY),  # right way, short of the paper's number
    (ClaimTest(+1, 0.0, target=1.5), _ev(1.2, se=0.2), REPRODUCED),  # 1.5 within two standard errors
    (ClaimTest(+1, 0.0, target=1.5), _ev(0.3, se=0.5), NOT_AT_SCALE),  # within noise of no effect
    (ClaimTest(+1, 0.0, target=1.5), _ev(-3.0, se=0.5), CONTRADICTED),  # the opposite, same measurement
    (ClaimTest(+1, 0.0, target=1.5), _ev(-3.0, se=0.5, comparability=DIRECTION), NOT_AT_SCALE),  # not a contradiction
    (ClaimTest(+1, 0.0, target=1.5), _ev(-3.0, se=0.5, comparability=SAME_METRIC), NOT_AT_SCALE),
    (ClaimTest(-1, 0.0, target=-0.2), _ev(-0.5), REPRODUCED),  # "lower is better"
    (ClaimTest(-1, 0.0, target=-0.2), _ev(0.4, comparability=DIRECTION), NOT_AT_SCALE),
    (ClaimTest(+1, 1.0, target=2.2), _ev(1.5), DIRECTION_ONLY),  # a speedup above 1, below 2.2
    (ClaimTest(+1, 1.0, target=2.2), _ev(0.7), CONTRADICTED),  # slower than the baseline
    (ClaimTest(+1, 0.0), _ev(0.04, se=0.01, comparability=DIRECTION), DIRECTION_ONLY),  # a figure: direction at most
    (ClaimTest(+1, 0.0), _ev(0.04, se=0.03, comparability=DIRECTION), NOT_AT_SCALE),
    (ClaimTest(0, 0.0, tolerance=2.0), _ev(-0.3, comparability=DIRECTION), DIRECTION_ONLY),  # "≈" within tolerance
    (ClaimTest(0, 0.0, tolerance=2.0), _ev(-0.3), REPRODUCED),
    (ClaimTest(0, 0.0, tolerance=2.0), _ev(5.0), CONTRADICTED),
    (ClaimTest(0, 0.0, tolerance=2.0), _ev(5.0, comparability=DIRECTION), NOT_AT_SCALE),
    (ClaimTest(+1, 0.0, target=1.5), None, NOT_TESTABLE),
    (ClaimTest(+1, 0.0, target=1.5), _ev(None), NOT_TESTABLE),
    (ClaimTest(+1, 0.0, target=1.5), _ev(float("nan")), NOT_TESTABLE),
])
def test_verdict_rule(test, ev, expected):
    assert verdict(test, ev) == expected


def _results_file(d, notebook, rows, device="CPU (2 cores, x86_64)", profile="quick"):
    prov = {"device": device, "commit": "abc1234", "date": "2026-12-01T10:00:00+00:00"}
    rows = [{"task": "", "note": "", "paper": None, "profile": profile, "device": device, **r} for r in rows]
    (d / f"{notebook}.json").write_text(json.dumps({"notebook": notebook, "profile": profile, "provenance": prov,
                                                    "rows": rows}))


def _bench(d):
    rows = [{"N": n, "pass": "fwd", "mode": "causal", "dtype": "float16", "speedup_vs_rfft": s}
            for n, s in ((256, 1.1), (1024, 3.0), (4096, 6.7), (16384, 2.3), (65536, 2.2))]
    rows.append({"N": 1 << 20, "pass": "fwd", "mode": "causal", "dtype": "float16", "speedup_vs_rfft": 0.4})
    (d / "bench-nvidia-h100-20261122T000000Z.json").write_text(json.dumps({
        "provenance": {"device": "NVIDIA H100 80GB HBM3", "commit": "e9ccade", "date": "2026-11-22T22:43:09+00:00"},
        "rows": rows, "s4d_128k": {"B": 4, "H": 256, "L": 131072, "dtype": "float16", "speedup": 4.6,
                                   "ms_s4d_gen_plus_fft_conv": 25.2, "ms_ours_kernel_given": 5.5}}))


@pytest.fixture
def fixture_run(tmp_path):
    """A run's folder (results of notebooks 02, 04, 05 on a CPU) and a recordings folder (one H100 benchmark)."""
    out, rec = tmp_path / "build", tmp_path / "recorded"
    (out / "results").mkdir(parents=True)
    (rec / "regime").mkdir(parents=True)
    r = out / "results"
    stand_in = "mean over quick stand-ins smnist, listops"
    _results_file(r, "02_squash_smooth", [
        {"claim": "LRA average, long conv", "metric": "accuracy %", "ours": 48.8, "paper": 69.5, "task": stand_in},
        {"claim": "LRA average, + Squash", "metric": "accuracy %", "ours": 48.2, "paper": 86.1, "task": stand_in},
        {"claim": "sCIFAR, random init (+ Squash)", "metric": "accuracy %", "ours": 69.55, "paper": 91.0,
         "task": "smnist"},
        {"claim": "sCIFAR, exponential-decay init (+ Squash)", "metric": "accuracy %", "ours": 69.25, "paper": 92.1,
         "task": "smnist"}])
    _results_file(r, "03_flashbutterfly", [
        {"claim": "FlashButterfly speeds up long convolutions", "metric": "fwd speedup vs torch rfft conv",
         "ours": 6.7, "paper": 2.2, "task": "N=4096, B=64, H=768, fp16",
         "note": "recorded, not measured now: NVIDIA H100 80GB HBM3, commit e9ccade"}])
    _results_file(r, "04_learned_butterfly", [
        {"claim": "learned − fixed (claim 9)", "metric": "accuracy points", "ours": 3.0, "paper": 1.5,
         "task": "sequential Fashion-MNIST", "note": "± 1.2 (1 s.e., 2000 test images)"}])
    _results_file(r, "05_language_modeling", [
        {"claim": "H3-Conv matches H3 and beats a Transformer (PILE)", "metric": "test PPL", "ours": p, "paper": q,
         "task": f"{m}: kjv, 1.00M tokens", "note": "byte-level PPL, compare the order only"}
        for m, p, q in (("Transformer", 11.2, 10.7), ("H3", 10.9, 10.2), ("H3-Conv", 10.77, 10.3))] + [
        {"claim": "Monarch MLPs: -0.2 PPL at 30% fewer params", "metric": "PPL change (Monarch - dense)",
         "ours": 0.3, "paper": -0.2, "task": "kjv, 1.00M tokens"},
        {"claim": "Monarch MLPs: -0.2 PPL at 30% fewer params", "metric": "fewer params %", "ours": 29.0,
         "paper": 30.0, "task": "GPT-2 small (computed, 4 blocks)"}])
    _bench(rec)
    return out, rec


def test_ledger_from_fixture_results(fixture_run):
    out, rec = fixture_run
    rows, text = claims.write_ledger(out, rec)
    by_id = {r["id"]: r for r in rows}
    assert [r["id"] for r in rows][:13] == ["1", "2", "3", "4", "4b", "5", "6", "7", "8", "9", "10", "10b", "11"]
    assert {r["verdict"] for r in rows} <= set(claims.VERDICTS)
    # 1: a mean over small stand-ins is not the LRA average; Squash did not help -> not reproduced, never "same"
    assert by_id["1"]["comparability"] == DIRECTION and by_id["1"]["verdict"] == NOT_AT_SCALE
    assert by_id["1"]["value"] == pytest.approx(-0.6)
    # 3: 0.3 points apart on Fashion-MNIST: as robust as the paper says, but only in direction
    assert by_id["3"]["verdict"] == DIRECTION_ONLY
    # 4: byte-level KJV perplexity is not PILE perplexity; H3-Conv beats the Transformer -> direction only
    assert by_id["4"]["comparability"] == DIRECTION and by_id["4"]["verdict"] == DIRECTION_ONLY
    assert by_id["4b"]["value"] == pytest.approx(100 * (10.77 - 10.9) / 10.9)  # at most 5 % above H3
    assert by_id["4b"]["verdict"] == DIRECTION_ONLY
    # 5, 6: the speed rows are the recorded H100 numbers, never this run's CPU
    for cid in ("5", "6"):
        assert "H100" in by_id[cid]["device"] and "recorded" in by_id[cid]["device"]
        assert by_id[cid]["origin"] == "recorded" and "CPU" not in by_id[cid]["device"]
    # 5: faster than rfft at every N ≤ 64K but 2.2× only at some: the worst N (1.1×, 1M excluded) decides
    assert by_id["5"]["value"] == pytest.approx(1.1) and by_id["5"]["verdict"] == DIRECTION_ONLY
    assert by_id["6"]["verdict"] == REPRODUCED
    # 9: +3.0 ± 1.2 points on Fashion-MNIST: beyond noise, not sCIFAR -> direction only
    assert by_id["9"]["se"] == pytest.approx(1.2) and by_id["9"]["verdict"] == DIRECTION_ONLY
    # 10: Monarch MLPs worse here -> not reproduced at this scale; 10b: 29 % vs 30 % of GPT-2 small's own count
    assert by_id["10"]["verdict"] == NOT_AT_SCALE
    assert by_id["10b"]["comparability"] == SAME and by_id["10b"]["verdict"] == REPRODUCED
    for cid in ("7", "8", "11"):
        assert by_id[cid]["verdict"] == NOT_TESTABLE and by_id[cid]["needs"]
    assert by_id["2"]["verdict"] == NOT_TESTABLE and by_id["W1"]["verdict"] == NOT_TESTABLE  # nothing recorded
    # the files, and the run they came from
    data = json.loads((out / "claims.json").read_text())
    assert data["run"]["commit"] == "abc1234" and data["run"]["device"].startswith("CPU")
    md = (out / "claims.md").read_text()
    assert md == text and "not the same measurement" in md and "NVIDIA H100 80GB HBM3 (recorded)" in md


def test_missing_notebook_says_how_to_get_it(fixture_run):
    out, rec = fixture_run
    (out / "results" / "05_language_modeling.json").unlink()
    rows, _ = claims.write_ledger(out, rec)
    row = next(r for r in rows if r["id"] == "4")
    assert row["verdict"] == NOT_TESTABLE and "--only 05" in row["needs"]


def test_ledger_on_the_committed_recordings(tmp_path):
    """The real results/: the speed claims come from the recorded H100 benchmark; the regime finding is read."""
    (tmp_path / "results").mkdir()
    rows, _ = claims.write_ledger(tmp_path)
    by_id = {r["id"]: r for r in rows}
    assert "H100" in by_id["5"]["device"] and by_id["5"]["origin"] == "recorded"
    assert by_id["W1"]["origin"] == "recorded" and by_id["W1"]["se"] > 0
    assert by_id["2"]["origin"] == "recorded"


def test_readme_block_is_replaced_between_markers(fixture_run, tmp_path):
    out, rec = fixture_run
    claims.write_ledger(out, rec)
    readme = tmp_path / "README.md"
    readme.write_text(f"# title\n\n{claims.README_BEGIN}\nold\n{claims.README_END}\n\nrest\n")
    claims.update_readme(readme, out / "claims.json")
    text = readme.read_text()
    assert "old" not in text and text.startswith("# title") and text.endswith("rest\n")
    assert "commit abc1234" in text and "| 5 |" in text and "python -m lconv.claims --readme" in text
    readme.write_text("no markers\n")
    with pytest.raises(ValueError, match="claims:begin"):
        claims.update_readme(readme, out / "claims.json")
    with pytest.raises(FileNotFoundError, match="make reproduce"):
        claims.update_readme(readme, tmp_path / "missing.json")


def test_summary_rows_label_paper_numbers_and_recorded_devices():
    rows = claims.label_summary_rows([
        {"notebook": "02_squash_smooth", "claim": "sCIFAR, random init (+ Squash)", "paper": 91.0,
         "task": "smnist", "profile": "quick", "device": "CPU"},
        {"notebook": "05_language_modeling", "claim": "H3-Conv matches H3 and beats a Transformer (PILE)",
         "paper": 10.7, "task": "Transformer: kjv", "profile": "quick"},
        {"notebook": "05_language_modeling", "claim": "Monarch MLPs: -0.2 PPL at 30% fewer params", "paper": 30.0,
         "task": "GPT-2 small (computed, 4 blocks)", "profile": "quick"},
        {"notebook": "03_flashbutterfly", "claim": "FlashButterfly speeds up long convolutions", "paper": 2.2,
         "device": "CPU (2 cores, x86_64)", "profile": "quick",
         "note": "recorded, not measured now: NVIDIA H100 80GB HBM3, commit e9ccade"},
        {"notebook": "04_learned_butterfly", "claim": "learned − fixed (claim 9)", "paper": 1.5,
         "task": "sequential CIFAR", "profile": "full"},
    ])
    assert rows[0]["paper"] == "91 (sCIFAR; ours: other task)"
    assert "PILE" in rows[1]["paper"] and "other" in rows[1]["paper"]
    assert rows[2]["paper"] == "30"  # GPT-2 small's own parameter count: the same measurement
    assert rows[3]["device"] == "NVIDIA H100 80GB HBM3 (recorded)" and "(" in rows[3]["paper"]
    assert rows[4]["paper"] == "1.5"  # sequential CIFAR at the full profile: the paper's measurement
