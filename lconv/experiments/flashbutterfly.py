"""Notebook 03 (FlashButterfly): its settings. The kernels themselves are in kernels/ (the notebook imports them
directly; lconv reaches them only through lconv.backend), their references in lconv.butterfly, the recorded GPU
timings are picked by kernels.bench.load_shown (the newest `make device-check` results, else the recorded benchmark)
and read by kernels.bench.recorded_report, which judges every target of lconv.paper again on their rows
(kernels.bench.check_targets: MET / NOT MET / NOT MEASURED), and the paper's and the peer's numbers are lconv.paper's.
"""

# Per profile: the FFT sizes N whose Triton kernels (or their reference) are checked against fp64 in §7.
FLASHBUTTERFLY = {
    "smoke": dict(kernel_N=[256]),
    "quick": dict(kernel_N=[256, 1024]),
    "full": dict(kernel_N=[256, 512, 1024, 2048, 4096]),
}
