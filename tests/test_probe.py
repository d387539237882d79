"""kernels.probe: the fused kernels compiled for NVIDIA targets on this CPU (no GPU): the N = 4096 backward fits the
99 KB of shared memory per block of sm_86/sm_89 GPUs (RTX 3090/4090, A10, L4) at its TUNING settings."""
import json
import os
import subprocess
import sys
import textwrap

import pytest

from lconv import kernels

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

PROBE_4096 = textwrap.dedent("""
    import json
    from lconv.kernels import probe
    if probe.ptxas_path() is None:
        print(json.dumps("no ptxas"))
    else:
        print(json.dumps([probe.probe(kind, 4096, arch=89) for kind in ("du", "dk")]))
""")


def _probe_rows(script: str) -> list:
    """Run a probe script in a subprocess without the interpreter (the compiler) and return its JSON rows; skip the
    test where Triton ships no ptxas."""
    env = {k: v for k, v in os.environ.items() if k != "TRITON_INTERPRET"}
    run = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=600, env=env,
                         cwd=ROOT)
    assert run.returncode == 0, run.stderr[-2000:]
    rows = json.loads(run.stdout.strip().splitlines()[-1])
    if rows == "no ptxas":
        pytest.skip("Triton's ptxas (triton/backends/nvidia/bin/ptxas) is not installed: nothing to compile with")
    return rows


@pytest.mark.slow  # two compiles at N = 4096 in a subprocess without the interpreter: ~20 s on 2 CPU cores
@pytest.mark.skipif(not kernels.HAS_TRITON, reason="needs Triton")
def test_n4096_backward_kernels_fit_99_kb_on_sm_89():
    rows = _probe_rows(PROBE_4096)
    assert [r["kind"] for r in rows] == ["du", "dk"]
    for r in rows:
        assert r["target"] == "sm_89" and r["regs"] > 0, r
        assert r["shared"] <= 99 * 1024, f"{r['kind']} at N=4096 needs {r['shared']} B of shared memory on sm_89"


PROBE_FP32 = textwrap.dedent("""
    import json
    from lconv.kernels import probe
    if probe.ptxas_path() is None:
        print(json.dumps("no ptxas"))
    else:
        print(json.dumps([probe.probe("fwd", 4096, dtype=probe.torch.float32, arch=90),
                          probe.probe("fwd", 4096, dtype=probe.torch.float32, arch=90, num_warps=4)]))
""")


@pytest.mark.slow  # two compiles at N = 4096 in a subprocess: ~30 s on 2 CPU cores
@pytest.mark.skipif(not kernels.HAS_TRITON, reason="needs Triton")
def test_n4096_fp32_forward_at_its_launch_settings_spills_a_fraction_of_tunings_4_warps():
    """fp32 rows launch with kernels.launch.FP32_MIN_WARPS (16 warps at N = 4096): compiled for sm_90, their forward
    spills under 8 KB per thread, against more than 30 KB at the 4 warps TUNING gives 16-bit rows."""
    tuned, four = _probe_rows(PROBE_FP32)
    assert tuned["num_warps"] == 16 and four["num_warps"] == 4
    assert tuned["spill_stores"] < 8 * 1024 < 30 * 1024 < four["spill_stores"], (tuned, four)
