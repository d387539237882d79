"""`make lab`: the command adds --allow-root exactly when run as root; a real JupyterLab started headless on a free
loopback port lists the notebooks through its REST API with the `lconv` kernel as default, and is always stopped."""
import json
import secrets
import socket
import subprocess
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from lconv.lab import KERNEL, lab_command

NOTEBOOKS = Path(__file__).resolve().parent.parent / "notebooks"


@pytest.mark.parametrize("root", [True, False])
def test_allow_root_only_as_root(root):
    argv, said = lab_command(NOTEBOOKS, root=root, browser=False)
    assert ("--allow-root" in argv) == root
    assert any("allow-root" in s for s in said) == root
    assert f"--MappingKernelManager.default_kernel_name={KERNEL}" in argv and "--no-browser" in argv


def test_missing_notebook_dir_is_a_clear_error(tmp_path):
    with pytest.raises(FileNotFoundError, match="make lab"):
        lab_command(tmp_path / "nowhere")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _get(url: str) -> dict:
    with urllib.request.urlopen(url, timeout=10) as r:
        return json.loads(r.read())


@pytest.mark.timeout(240)
def test_lab_serves_the_notebooks(tmp_path):
    port, token = _free_port(), secrets.token_hex(16)
    argv, _ = lab_command(NOTEBOOKS, port=port, ip="127.0.0.1", token=token, browser=False)
    log = (tmp_path / "lab.log").open("w")
    env = {**__import__("os").environ, "JUPYTER_RUNTIME_DIR": str(tmp_path / "runtime")}
    proc = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT, env=env)
    base = f"http://127.0.0.1:{port}"
    try:
        deadline, contents = time.monotonic() + 180, None
        while time.monotonic() < deadline and proc.poll() is None:
            try:
                contents = _get(f"{base}/api/contents?token={token}")
                break
            except (urllib.error.URLError, ConnectionError, OSError):
                time.sleep(1)
        assert contents is not None, (f"JupyterLab did not answer on {base} (exit code {proc.poll()}):\n"
                                      + (tmp_path / "lab.log").read_text()[-3000:])
        names = {c["name"] for c in contents["content"]}
        assert {p.name for p in NOTEBOOKS.glob("[0-9]*.ipynb")} <= names
        assert _get(f"{base}/api/kernelspecs?token={token}")["default"] == KERNEL
        with pytest.raises(urllib.error.HTTPError):  # the token is required
            _get(f"{base}/api/contents")
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=10)
        log.close()
