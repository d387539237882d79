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


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)
    yield
