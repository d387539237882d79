"""kernels.device_check on CPU: the plan (grid shapes, time boxes), the pytest parser, the process runner (a stage that
fails or times out is reported), host µs plumbing, the target table on fixture rows (MET / NOT MET / NOT MEASURED),
the notebook's loader, and the whole smoke run (Triton's interpreter, tiny sizes, no timings; about 45 s here)."""
import json
import sys

import pytest
import torch

from lconv.kernels import bench, device_check
from lconv.paper import PEER_MS, TARGET_FWD_VS_RFFT, TARGET_HOST_US


def test_the_device_check_grid_keeps_b_at_least_8_and_even_and_shrinks_h_first():
    cases = device_check.bench_cases()
    assert [c["N"] for c in cases] == sorted(c["N"] for c in cases)  # smallest N first: a cut loses the largest
    assert {c["N"] for c in cases} == set(bench.FULL_N) and {c["dtype"] for c in cases} == set(bench.TARGET_DTYPES)
    assert {c["mode"] for c in cases} == set(bench.ALL_MODES)
    assert {c["N"] for c in cases if c["mode"] == "learned"} == {n for n in bench.FULL_N if n <= bench.FUSED_MAX_N}
    for c in cases:
        assert c["B"] >= 8 and c["B"] % 2 == 0 and c["B"] * c["H"] * c["L"] <= 1 << 28, c
        if c["B"] < bench.FULL_B:  # B shrinks only once H is down to MIN_H
            assert c["H"] <= bench.MIN_H, c
    big = {c["N"]: (c["B"], c["H"]) for c in cases if c["mode"] == "plain" and c["dtype"] == "float16"}
    assert big[1 << 20] == (16, 16) and big[1 << 18] == (64, 16) and big[8192] == (64, 512)
    host = device_check.host_cases()
    assert {c["N"] for c in host} == set(device_check.HOST_N) and {c["dtype"] for c in host} == {"float16"}
    smoke = device_check.bench_cases(smoke=True)
    assert {(c["B"], c["H"]) for c in smoke} == {(2, 2)} and {c["N"] for c in smoke} == {256, 8192}


def test_stage_time_boxes_fit_the_budget():
    later = ["host", "s4d_128k", "bench"]
    t = device_check.stage_timeout("tests", 540, later)
    assert t == device_check.BOXES["tests"]
    assert device_check.stage_timeout("tests", 100, later) < 100 - device_check.RESERVE_S  # room left for the rest
    assert device_check.stage_timeout("bench", 300, []) == 300 - device_check.RESERVE_S  # the bench takes what is left
    assert device_check.stage_timeout("host", 10, ["bench"]) == 0.0  # nothing left: the stage is skipped


SERIAL_OUTPUT = ("collected 5 items\n\ntests/test_kernels.py::test_a[N256-L127-float16] PASSED   [ 20%]\n"
                 "tests/test_kernels.py::test_bad_inputs[shape must be (B, H] FAILED [ 40%]\n"
                 "tests/test_gates.py::test_c SKIPPED (no GPU) [ 60%]\n")
XDIST_OUTPUT = ("created: 4/4 workers\n4 workers [5 items]\n\nscheduling tests via LoadScheduling\n\n"
                "tests/test_kernels.py::test_a[N256-L127-float16] \n"
                "[gw1] [  0%] PASSED tests/test_kernels.py::test_a[N256-L127-float16] \n"
                "[gw0] [  1%] FAILED tests/test_kernels.py::test_bad_inputs[shape must be (B, H] \n"
                "[gw3] [  1%] SKIPPED tests/test_gates.py::test_c \n")


@pytest.mark.parametrize("out", [SERIAL_OUTPUT, XDIST_OUTPUT], ids=["serial", "xdist"])
def test_pytest_output_is_parsed_finished_or_cut_short(out):
    p = device_check.parse_pytest(out)
    assert p["collected"] == 5 and p["finished"] == 3
    assert p["counts"] == {"PASSED": 1, "FAILED": 1, "SKIPPED": 1}
    assert p["failed"] == ["tests/test_kernels.py::test_bad_inputs[shape must be (B, H]"]


def test_the_tests_stage_spreads_over_xdist_workers_except_in_smoke_mode(monkeypatch):
    assert device_check.pytest_workers(smoke=True) == 0
    monkeypatch.setattr(device_check.os, "sched_getaffinity", lambda pid: set(range(16)), raising=False)
    assert device_check.pytest_workers(smoke=False) == min(14, device_check.MAX_TEST_WORKERS)
    monkeypatch.setattr(device_check.os, "sched_getaffinity", lambda pid: {0, 1})
    assert device_check.pytest_workers(smoke=False) == 2


def test_a_stage_that_fails_or_hangs_is_reported_and_killed(tmp_path):
    env = device_check.child_env(smoke=True)
    assert env["TRITON_INTERPRET"] == "1" and env["TRITON_CACHE_DIR"].startswith(str(device_check.TMP))
    status, rc, out = device_check.run_process([sys.executable, "-c", "print('x'); raise SystemExit(3)"], 30, env,
                                               tmp_path / "fail.log")
    assert (status, rc) == ("failed", 3) and "x" in out
    status, rc, _ = device_check.run_process([sys.executable, "-c", "import time; time.sleep(60)"], 1, env,
                                             tmp_path / "hang.log")
    assert (status, rc) == ("timed out", None)


def test_host_us_times_the_host_loop_between_block_and_sync():
    """The plumbing of bench.host_us on CPU: fn once (compile), block, `calls` calls timed, busy checked, sync."""
    events = []
    out = bench.host_us(lambda: events.append("call"), calls=5, block_ms=100.0,
                        block=lambda ms: events.append(f"block {ms}"), sync=lambda: events.append("sync"),
                        busy=lambda: True)
    assert events == ["call", "sync", "block 100.0"] + ["call"] * 5 + ["sync"]
    assert out["calls"] == 5 and out["gpu_busy"] is True and 0 < out["host_us"] < 1e5
    case = bench.grid(Ns=(256,), dtypes=("float16",), modes=("gated",), B=2, H=2)[0]
    rows = bench.host_case(case, torch.device("cpu"), timed=False)  # interpreter: runs each call, times nothing
    assert [r["what"] for r in rows] == ["ours", "rfft"] and all(r["host_us"] is None for r in rows)


def _row(N, dtype, mode, pass_, speedup, B=64, H=768, ms=1.0, kernel=None):
    case = {"N": N, "L": N // 2 if mode == "causal" else N, "B": B, "H": H, "dtype": dtype, "mode": mode}
    kernel = kernel or ("fused" if N <= bench.FUSED_MAX_N else "three_pass")
    return bench.finish_row(case, pass_, kernel, {"ours": ms, "rfft": ms * speedup, "complex": ms * speedup},
                            {}, 4.8e12)


def _full_rows(speedup=3.0, graph_ms=None):
    """Every N, dtype, mode and pass of the grid, each `speedup`× over rfft (graph rows at graph_ms when given)."""
    rows = []
    for c in bench.grid(max_elems=1 << 28):
        rows += [_row(c["N"], c["dtype"], c["mode"], p, speedup, c["B"], c["H"]) for p in ("fwd", "fwd_bwd")]
        if graph_ms is not None:
            rows.append(_row(c["N"], c["dtype"], c["mode"], "fwd_graph", speedup, c["B"], c["H"], ms=graph_ms))
    return rows


def test_target_table_met_only_when_every_n_and_dtype_passed():
    fwd_plain = next(t for t in bench.check_targets(_full_rows()) if t["target"].startswith("fwd ≥")
                     and t["target"].endswith("(plain)"))
    assert fwd_plain["status"] == "MET" and fwd_plain["ours"] == 3.0
    # one N missing in bf16: NOT MEASURED (never MET), with the gap named
    rows = [r for r in _full_rows() if not (r["N"] == 1024 and r["dtype"] == "bfloat16")]
    t = next(t for t in bench.check_targets(rows) if t["target"].startswith("fwd ≥") and "(gated)" in t["target"])
    assert (t["met"], t["status"]) == (None, "NOT MEASURED") and "bfloat16 N 1024" in t["where"]
    # one N failing: NOT MET, with the number and where, even with others missing
    rows = [dict(r, speedup_vs_rfft=1.5) if (r["N"] == 512 and r["mode"] == "causal") else r for r in rows]
    t = next(t for t in bench.check_targets(rows) if t["target"].startswith("fwd ≥") and "(causal)" in t["target"])
    assert (t["met"], t["status"], t["ours"]) == (False, "NOT MET", 1.5) and "N=512" in t["where"]
    assert TARGET_FWD_VS_RFFT > 1.5


def test_target_table_for_the_peer_three_pass_bandwidth_learned_host_and_s4d():
    rows = _full_rows(graph_ms=0.01)
    learned = [_row(n, d, "learned", p, 3.0, ms=1.2) for n in (256, 4096) for d in bench.TARGET_DTYPES
               for p in ("fwd", "fwd_bwd")]
    host = [{"N": 256, "dtype": "float16", "mode": "plain", "what": "ours", "host_us": 25.0},
            {"N": 4096, "dtype": "float16", "mode": "gated", "what": "ours", "host_us": 55.0},
            {"N": 256, "dtype": "float16", "mode": "plain", "what": "rfft", "host_us": 500.0}]  # not ours: not judged
    s4d = {"B": 4, "H": 256, "N": 1 << 18, "dtype": "float16", "speedup": 1.2}
    targets = bench.check_targets(rows + learned, s4d, host)
    status = {t["target"]: t["status"] for t in targets}
    peer = [t for t in targets if t["target"].startswith("GPU time ≤ the peer's")]
    assert len(peer) == len([n for n in PEER_MS if n <= 1 << 20]) and all(t["status"] == "MET" for t in peer)
    three = next(t for t in targets if t["target"].startswith("three-pass"))
    assert three["status"] == "MET" and three["ours"] == 3.0
    bw = next(t for t in targets if "peak HBM bandwidth" in t["target"])
    assert bw["target"].endswith("(fwd_graph)") and bw["status"] == "MET"
    assert [s for t, s in status.items() if t.startswith("learned")] == ["MET", "MET"]  # 1.2 ≤ 1.5
    h = next(t for t in targets if t["target"].startswith("host time"))
    assert (h["status"], h["ours"]) == ("NOT MET", 55.0) and "N=4096" in h["where"] and TARGET_HOST_US == 40.0
    assert status["128K: ≥ 1.8× faster than S4D generation + FFT conv"] == "NOT MET"
    # three-pass rows at B < 8 do not count (the old bench ran 1M at B = 1)
    small_b = [dict(r, B=1) if r["kernel"] == "three_pass" else r for r in rows]
    assert next(t for t in bench.check_targets(small_b) if t["target"].startswith("three-pass"))["status"] \
        == "NOT MEASURED"
    # no timings at all (a smoke run): every target NOT MEASURED, none MET
    empty = bench.check_targets([dict(r, ms_ours=None, speedup_vs_rfft=None, speedup_vs_complex=None,
                                      bw_fraction_of_peak=None, ms_ours_full_grid=None) for r in rows])
    assert {t["status"] for t in empty} == {"NOT MEASURED"}


def test_the_notebook_shows_the_newest_device_check_else_the_recorded_bench(tmp_path):
    base = {"rows": [], "provenance": {"device": "NVIDIA H200", "date": "2026-12-01T00:00:00+00:00"}}
    (tmp_path / "bench-h100-old.json").write_text(json.dumps({**base, "benchmark": "lconv.kernels.bench",
                                                              "provenance": {"date": "2026-11-22"}}))
    assert bench.load_shown(tmp_path)["path"].endswith("bench-h100-old.json")
    (tmp_path / "bench-cpu-smoke.json").write_text(json.dumps({**base, "benchmark": bench.DEVICE_CHECK,
                                                               "smoke": True}))
    assert bench.load_shown(tmp_path)["path"].endswith("bench-h100-old.json")  # smoke runs never count
    (tmp_path / "bench-h200-dc.json").write_text(json.dumps({**base, "benchmark": bench.DEVICE_CHECK,
                                                             "provenance": {"date": "2026-11-01"}}))
    assert bench.load_shown(tmp_path)["path"].endswith("bench-h200-dc.json")  # device-check first, even if older


def test_no_gpu_exit_path(monkeypatch, capsys, tmp_path):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert device_check.main(["--out", str(tmp_path)]) == 0
    assert "no GPU" in capsys.readouterr().out and not list(tmp_path.iterdir())


def test_smoke_run_exercises_every_stage_and_writes_results_with_provenance(tmp_path, capsys):
    """The whole plumbing on CPU: stage runner, child processes, pytest subprocess, results file with provenance,
    the side-by-side table and the target table — with no timings, every speed target NOT MEASURED, never MET."""
    results = device_check.run(tmp_path, budget_s=300, smoke=True)
    out = capsys.readouterr().out
    stages = {s["stage"]: s for s in results["stages"]}
    assert list(stages) == list(device_check.STAGES)
    assert all(s["status"] == "ok" for s in stages.values()), results["stages"]
    assert results["tests"]["counts"].get("PASSED") == len(device_check.SMOKE_TESTS)
    files = sorted(p.name for p in tmp_path.iterdir())
    assert len(files) == 2 and files[0].endswith(".csv") and files[1].endswith(".json") and files[0].startswith("bench-")
    data = json.loads((tmp_path / files[1]).read_text())
    assert data["smoke"] is True and data["benchmark"] == bench.DEVICE_CHECK
    assert {"device", "torch", "triton", "cuda", "cudnn", "commit", "date"} <= set(data["provenance"])
    assert {r["pass"] for r in data["rows"]} == {"fwd", "fwd_bwd"} and all(r["ms_ours"] is None for r in data["rows"])
    assert max(r["max_abs_diff"] for r in data["rows"]) < 1e-2  # every path computed the conv, learned included
    assert {r["mode"] for r in data["rows"]} == set(bench.ALL_MODES) and len(data["host"]) == 6
    assert data["s4d_128k"]["speedup"] is None and data["cudnn"].startswith("not available")
    assert [r["pass_"] for r in data["passes"]] == ["k_f", "pass1", "pass2", "pass3"]  # the three-pass split, N = 8192
    assert all(r["ms"] is None and r["bytes"] > 0 for r in data["passes"])
    assert data["targets"] and {t["status"] for t in data["targets"]} == {"NOT MEASURED"}
    assert "[NOT MEASURED]" in out and "[MET" not in out and "| N | mode |" in out
    assert bench.load_shown(tmp_path) is None  # a smoke run is never shown as a result
