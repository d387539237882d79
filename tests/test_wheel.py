"""The installed package, as a user gets it: a wheel in a fresh virtual environment, run from another directory.

Two things a checkout hides: a module that only imports because the repository root is on sys.path, and an
import name that clashes with another distribution. So the test builds the project's wheel, installs it next to
a stand-in for Hugging Face's `kernels` distribution (a top-level package of that name, version 0.17.2 on PyPI)
into a new venv, and from a temporary directory runs the public layers and the kernel's reference path. No
network: both wheels are built here and installed with --no-index; torch and the other dependencies come from
the project's venv through a .pth line (a directory named in a .pth file is only put on sys.path: the
project's editable-install hooks inside it are not run, so the repository's lconv cannot leak in).
"""
import json
import os
import subprocess
import sys
import sysconfig
import textwrap
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]

pytestmark = pytest.mark.slow

USER_SCRIPT = textwrap.dedent("""
    import json, sys
    import torch
    import kernels                                    # the other distribution's top-level package
    import lconv
    from lconv import LongConv, fft_conv
    from lconv.layers import S4DKernel
    from lconv.kernels import FlashButterflyConv

    torch.manual_seed(0)
    u, k = torch.randn(2, 8, 128), torch.randn(8, 128)
    y = fft_conv(u, k)
    layer = LongConv(d_model=8, l_max=128, lam=0.002)
    z = layer(torch.randn(2, 128, 8))                 # LongConv is batch-first: (B, L, H)
    s4d = LongConv(d_model=8, l_max=128, kernel="s4d")(torch.randn(2, 128, 8))  # the S4D layer
    k_s4d = S4DKernel(8, 128)()                       # (C, H, L)
    fb = FlashButterflyConv(256, dtype=torch.float32, backend="torch")
    y_fb = fb(u, k)                                   # FlashButterflyConv is channels-first: (B, H, L)
    print(json.dumps(dict(
        standin=getattr(kernels, "STANDIN", None),
        lconv_file=lconv.__file__,
        fb_module=type(fb).__module__,
        fb_err=float((y_fb - y).abs().max()),
        shapes=[list(y.shape), list(z.shape), list(s4d.shape), list(k_s4d.shape)],
        modules=sorted({m.__file__ for m in list(sys.modules.values()) if getattr(m, "__file__", None)}),
    )))
""")


def _run(*cmd, cwd=None, env=None):
    done = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, f"{' '.join(map(str, cmd))} failed:\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}"
    return done.stdout


def _wheel(src, out):
    _run(sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "--no-build-isolation", "--no-index",
         "-w", str(out), str(src))
    (wheel,) = [p for p in out.glob("*.whl")]
    return wheel


def test_wheel_installs_beside_another_kernels_package(tmp_path):
    wheel = _wheel(REPO, tmp_path / "dist-lconv")

    standin = tmp_path / "standin"
    (standin / "kernels").mkdir(parents=True)
    (standin / "kernels" / "__init__.py").write_text('STANDIN = "the other kernels distribution"\n')
    (standin / "pyproject.toml").write_text(textwrap.dedent("""
        [build-system]
        requires = ["setuptools>=64"]
        build-backend = "setuptools.build_meta"
        [project]
        name = "kernels"
        version = "0.17.2"
        [tool.setuptools]
        packages = ["kernels"]
    """))
    standin_wheel = _wheel(standin, tmp_path / "dist-standin")

    venv = tmp_path / "venv"
    _run(sys.executable, "-m", "venv", "--without-pip", str(venv))
    python = venv / "bin" / "python"
    _run(sys.executable, "-m", "pip", "--python", str(python), "install", "-q", "--no-deps", "--no-index",
         str(standin_wheel), str(wheel))
    site = Path(_run(str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])").strip())
    (site / "zz_project_dependencies.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")

    work = tmp_path / "elsewhere"
    work.mkdir()
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "TRITON_INTERPRET")}
    out = json.loads(_run(str(python), "-c", USER_SCRIPT, cwd=work, env=env).splitlines()[-1])

    assert out["standin"] == "the other kernels distribution"  # `import kernels` is still the other package
    assert Path(out["lconv_file"]).is_relative_to(site)        # lconv came from the wheel, not the checkout
    assert out["fb_module"].startswith("lconv.kernels")
    assert out["fb_err"] < 1e-4
    assert out["shapes"] == [[2, 8, 128], [2, 128, 8], [2, 128, 8], [1, 8, 128]]
    files = [Path(f) for f in out["modules"] if Path(f).is_absolute()]  # torch has a few pseudo-files ('_ops.py')
    from_repo = [f for f in files if f.is_relative_to(REPO) and not f.is_relative_to(REPO / ".venv")]
    assert not from_repo, f"modules read from the checkout: {from_repo[:5]}"
    names = subprocess.run([sys.executable, "-m", "zipfile", "-l", str(wheel)], capture_output=True,
                           text=True).stdout
    assert "lconv/kernels/conv.py" in names and " kernels/" not in names  # only one top-level name: lconv
