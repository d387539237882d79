"""Shared test set-up: offline, deterministic, and Triton in interpreter mode when there is no GPU."""
import os

import torch

# Triton reads TRITON_INTERPRET when a kernel is defined, so this must run before `kernels` is imported.
if not torch.cuda.is_available():
    os.environ.setdefault("TRITON_INTERPRET", "1")

# No test and no notebook may open a network connection; notebooks' kernels inherit the variable.
os.environ["LCONV_NO_NETWORK"] = "1"
from lconv.netguard import block_network  # noqa: E402

block_network()

import pytest  # noqa: E402


# The tests train tiny models: one intra-op thread is as fast, and two threads stall badly when other processes
# (notebook kernels, DDP workers) share this 2-core machine.
torch.set_num_threads(1)


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)
    yield


@pytest.fixture
def kernel_device():
    """Kernel tests: tensors they make land on the GPU when there is one (compiled kernels), else on the CPU
    (interpreter). Use with `pytestmark = pytest.mark.usefixtures("kernel_device")`."""
    if torch.cuda.is_available():
        with torch.device("cuda"):
            yield torch.device("cuda")
    else:
        yield torch.device("cpu")


class SmokeBuild:
    """One folder where the notebooks run in the smoke profile, each at most once per test session: the notebook
    tests run them, the book test builds its HTML book from the same outputs (lconv.book)."""

    def __init__(self, out):
        self.out, self.runs = out, {}

    def run(self, path):
        from lconv.workbook import run_notebook

        if path.stem not in self.runs:
            self.runs[path.stem] = run_notebook(path, self.out, profile="smoke", device="cpu")
        return self.runs[path.stem]


@pytest.fixture(scope="session")
def smoke_build(tmp_path_factory):
    return SmokeBuild(tmp_path_factory.mktemp("smoke-build"))
