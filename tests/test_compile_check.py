"""kernels.compile_check: what the kernel tests launch is recorded (Triton's interpreter) and compiled for a GPU target
without a GPU; a kernel that does not compile is reported with the compiler's message, not raised."""
import json
import os
import subprocess
import sys
import textwrap

import pytest
import torch

from lconv import kernels
from lconv.kernels import compile_check, launch

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
pytestmark = pytest.mark.skipif(not kernels.HAS_TRITON, reason="needs Triton")


def _record_calls(monkeypatch):
    seen = []
    monkeypatch.setattr(launch, "ON_LAUNCH", lambda kernel, args, meta: seen.append(
        compile_check.specialisation(kernel, args, meta)))
    return seen


@pytest.mark.skipif(torch.cuda.is_available(), reason="records through the interpreter (CPU)")
def test_a_gated_forward_and_backward_record_their_kernels_and_argument_types(monkeypatch):
    seen = _record_calls(monkeypatch)
    B, H, N = 2, 2, 256
    u = torch.randn(B, H, N // 2, dtype=torch.float16, requires_grad=True)
    k = torch.randn(H, N // 2, requires_grad=True)
    pre = torch.randn(B, H, N // 2, dtype=torch.float16)
    post = torch.randn(B, H, N // 2, dtype=torch.float16)
    kernels.flash_butterfly_conv(u, k, N, pregate=pre, postgate=post).float().sum().backward()
    names = [s["kernel"].rsplit(".", 1)[1] for s in seen]
    assert names == ["k_f_half_kernel", "flash_butterfly_fwd_kernel", "flash_butterfly_fwd_kernel",
                     "flash_butterfly_dk_kernel"]
    fwd = seen[1]
    assert fwd["kernel"] == "lconv.kernels.flash_butterfly.flash_butterfly_fwd_kernel"
    assert fwd["signature"]["x_ptr"] == "*fp16" and fwd["signature"]["k_f_ptr"] == "*fp32"
    assert "x_ptr" in fwd["divisible"] and fwd["constexprs"]["N1"] * fwd["constexprs"]["N2"] == N // 2
    assert set(fwd["options"]) == {"num_warps", "num_stages"} and "num_warps" not in fwd["constexprs"]
    assert fwd["constexprs"]["CONJ_K"] is False and seen[2]["constexprs"]["CONJ_K"] is True  # forward, then du
    assert fwd["constexprs"]["DOT_FP32"] is False  # fp16 rows: fp16 dots
    json.dumps(seen)  # written as JSON by the recording process


@pytest.mark.skipif(torch.cuda.is_available(), reason="records through the interpreter (CPU)")
def test_bf16_launches_are_recorded_with_the_dots_a_gpu_compiles(monkeypatch):
    seen = _record_calls(monkeypatch)
    kernels.flash_butterfly_conv(torch.randn(2, 2, 128, dtype=torch.bfloat16), torch.randn(2, 128), 256)
    fwd = seen[1]
    assert fwd["signature"]["x_ptr"] == "*bf16"
    assert (fwd["constexprs"]["DOT_FP32"], fwd["constexprs"]["PREC"]) == (False, "tf32")  # the interpreter ran fp32
    assert launch.dot_args(torch.bfloat16)["DOT_FP32"] is launch.INTERPRET


def test_arguments_triton_cannot_take_are_refused_by_name():
    class Kernel:
        arg_names = ["x_ptr", "scale"]

        def fn(self):
            pass

    kernel = Kernel()
    kernel.fn = Kernel.fn
    with pytest.raises(TypeError, match="argument x_ptr has dtype torch.complex64"):
        compile_check.specialisation(kernel, (torch.zeros(2, dtype=torch.complex64), 1.0), {})
    with pytest.raises(TypeError, match="argument scale of type str"):
        compile_check.specialisation(kernel, (torch.zeros(2), "a"), {})
    spec = compile_check.specialisation(kernel, (None, 1), {"num_warps": 4, "BLOCK": 16})
    assert spec["constants"] == {"x_ptr": None, "scale": 1} and spec["options"] == {"num_warps": 4}
    assert spec["constexprs"] == {"BLOCK": 16} and spec["signature"] == {}


COMPILE = textwrap.dedent("""
    import json, sys
    from lconv.kernels import compile_check, probe
    if probe.ptxas_path() is None:
        print(json.dumps("no ptxas")); sys.exit()
    good = json.loads(sys.argv[1])
    bad = json.loads(json.dumps(good)); bad["constexprs"]["N1"] = 3  # not a power of two: tl.arange refuses it
    rows = compile_check.compile_all([good, bad], archs=(90,), jobs=2)
    print(compile_check.summary(rows))
    print(json.dumps(rows))
""")


@pytest.mark.slow  # two compiles in spawned processes without the interpreter: ~15 s on 2 CPU cores
@pytest.mark.skipif(torch.cuda.is_available(), reason="records through the interpreter (CPU)")
def test_recorded_specialisations_compile_for_sm_90_and_failures_are_reported(monkeypatch):
    seen = _record_calls(monkeypatch)
    u = torch.randn(2, 2, 128, dtype=torch.float16)
    kernels.flash_butterfly_conv(u, torch.randn(2, 128), 256)
    env = {k: v for k, v in os.environ.items() if k != "TRITON_INTERPRET"}
    run = subprocess.run([sys.executable, "-c", COMPILE, json.dumps(seen[1])], capture_output=True, text=True,
                         timeout=600, env=env, cwd=ROOT)
    assert run.returncode == 0, run.stderr[-2000:]
    *text, last = run.stdout.strip().splitlines()
    rows = json.loads(last)
    if rows == "no ptxas":
        pytest.skip("Triton's ptxas is not installed: nothing to compile with")
    good, bad = rows
    assert good["ok"] and good["fits"] and good["target"] == "sm_90a" and 0 < good["shared"] <= 227 * 1024
    assert good["kernel"] == "flash_butterfly_fwd_kernel" and good["seconds"] > 0 and good["dtype"] == "fp16"
    assert not bad["ok"] and not bad["fits"] and "power of 2" in bad["error"].lower().replace("two", "2")
    assert text[0].startswith("2 specialisations compiled (1 failed") and any(t.startswith("FAILED") for t in text)


@pytest.mark.slow  # one small test file recorded in a subprocess under the interpreter: ~15 s
def test_record_runs_the_tests_under_the_interpreter_and_collects_distinct_launches(tmp_path):
    node = "tests/test_kernels.py::test_forward_backward_match_fp64[N256-L127-float16]"
    specs = compile_check.record([node], tmp_path / "specs.json")
    names = sorted({s["kernel"].rsplit(".", 1)[1] for s in specs})
    assert names == ["flash_butterfly_dk_kernel", "flash_butterfly_fwd_kernel", "k_f_half_kernel"]
    assert len({json.dumps(s, sort_keys=True) for s in specs}) == len(specs)  # distinct
    with pytest.raises(ValueError, match="pytest found nothing to run there"):
        compile_check.record(["tests/test_kernels.py::no_such_test"], tmp_path / "none.json")
    assert compile_check.main(["--tests", "tests/test_kernels.py::no_such_test", "--out",
                               str(tmp_path / "cc.json")]) == 2
