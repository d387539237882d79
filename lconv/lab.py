"""`make lab`: JupyterLab on notebooks/ with the `lconv` kernel as the default, also when run as root.

    python -m lconv.lab                          # what `make lab` runs: opens JupyterLab, prints its URL
    python -m lconv.lab --port 8899 --no-browser

Jupyter refuses to start as root ("Running as root is not recommended. Use --allow-root to bypass."), which is the
usual case in a container or on a cloud box: there, and only there, `--allow-root` is added, and the command says so.
The notebooks already name the `lconv` kernel (registered in the venv by `make setup`); new notebooks get it too
(`--MappingKernelManager.default_kernel_name=lconv`). The server listens on localhost only unless `--ip` says
otherwise.
"""
from __future__ import annotations

import argparse
import os
import shutil
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
KERNEL = "lconv"


def is_root() -> bool:
    return hasattr(os, "geteuid") and os.geteuid() == 0


def lab_command(notebook_dir=REPO / "notebooks", *, port: int | None = None, ip: str = "localhost",
                token: str | None = None, browser: bool = True, root: bool | None = None) -> tuple[list[str], list[str]]:
    """(argv for `jupyter lab`, the lines that say what was added and why). root: None = ask the OS.
    Raises FileNotFoundError when notebook_dir is missing."""
    notebook_dir = Path(notebook_dir)
    if not notebook_dir.is_dir():
        raise FileNotFoundError(f"{notebook_dir} is not a folder: run from the repository (make lab)")
    jupyter = shutil.which("jupyter", path=str(Path(sys.executable).parent)) or shutil.which("jupyter")
    if jupyter is None:
        raise FileNotFoundError("no `jupyter` command next to this Python or on PATH: run `make setup` first")
    argv = [jupyter, "lab", f"--notebook-dir={notebook_dir}", f"--ServerApp.ip={ip}",
            f"--MappingKernelManager.default_kernel_name={KERNEL}"]
    said = [f"JupyterLab on {notebook_dir}, default kernel '{KERNEL}', listening on {ip}"]
    if port is not None:
        argv += [f"--ServerApp.port={port}", "--ServerApp.port_retries=0"]
    if token is not None:
        argv.append(f"--IdentityProvider.token={token}")
    if not browser:
        argv.append("--no-browser")
    if is_root() if root is None else root:
        argv.append("--allow-root")
        said.append("running as root (uid 0), so --allow-root was added: Jupyter refuses root without it")
    return argv, said


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--notebook-dir", type=Path, default=REPO / "notebooks")
    parser.add_argument("--port", type=int, default=None)
    parser.add_argument("--ip", default="localhost")
    parser.add_argument("--no-browser", action="store_true")
    args = parser.parse_args(argv)
    try:
        cmd, said = lab_command(args.notebook_dir, port=args.port, ip=args.ip, browser=not args.no_browser)
    except FileNotFoundError as err:
        print(f"lconv.lab: {err}", file=sys.stderr)
        return 1
    for line in said:
        print(f"make lab: {line}")
    print("make lab: " + " ".join(cmd[1:]), flush=True)
    os.execv(cmd[0], cmd)
    return 0  # not reached


if __name__ == "__main__":
    sys.exit(main())
