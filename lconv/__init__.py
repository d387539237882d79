"""lconv: long convolutions for sequence modelling, the shared package of the workbook.

Imports run one way, bottom to top (tests/test_house.py reads the graph): the references and leaves (conv,
butterfly, regularize, paper, results, data) → kernels/ (Triton; it imports only those) → backend (the one lazy door
to kernels) → layers → learned_butterfly, mixers, monarch → models → inspect, train → experiments/ (one module per
notebook) → record, regime, cli, workbook (entry points) → the notebooks.

Every name below is imported lazily from the module that defines it, so `import lconv` is cheap and
works on machines where optional pieces (Triton, torchvision) are missing.
"""
import importlib
import os

_EXPORTS = {
    # conv.py: the references every fast path is tested against
    "fft_conv": "conv", "direct_conv": "conv", "bidirectional_kernel": "conv",
    # regularize.py
    "squash": "regularize", "smooth": "regularize", "smooth_freq": "regularize", "kernel_dropout": "regularize",
    # layers.py
    "LongConvKernel": "layers", "S4DKernel": "layers", "LongConv": "layers", "optimizer_groups": "train",
    "make_optimizer": "train",
    # inspect.py
    "sparsity": "inspect", "total_variation": "inspect", "high_freq_energy": "inspect", "spectrum": "inspect",
    "spectral_total_variation": "inspect",
    "plot_kernels": "inspect",
    # mixers.py, models.py, train.py
    "make_mixer": "mixers", "H3": "mixers", "CausalSelfAttention": "mixers",
    "SequenceClassifier": "models", "CausalLM": "models", "count_params": "models", "evaluate": "train",
    # learned_butterfly.py
    "LearnedButterfly": "learned_butterfly", "LearnedButterflyLongConv": "learned_butterfly",
    "learned_butterfly_conv": "butterfly", "use_learned_butterfly": "learned_butterfly",
    # monarch.py
    "MonarchLinear": "monarch", "MonarchMLP": "monarch", "parameter_savings": "monarch",
    # data/
    "get_task": "data",
    # results.py
    "Results": "results", "provenance": "results", "pick_device": "results",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name):
    if name in _EXPORTS:
        return getattr(importlib.import_module(f"lconv.{_EXPORTS[name]}"), name)
    raise AttributeError(f"module 'lconv' has no attribute {name!r}")


if os.environ.get("LCONV_NO_NETWORK") == "1":  # set by the tests: notebooks' kernels inherit it
    from lconv.netguard import block_network

    block_network()
