"""The kernels' host path (issue 20): k_f by one Triton launch, the no-grad fast path, cached plans, and a pinned count
of the device work one call dispatches.

Counting: `DispatchCount` (a TorchDispatchMode) records every ATen op a call dispatches, the contents of our own
torch.library operators included, and `launch` is replaced by a recorder that launches nothing, so the count is the
host's work alone (allocations, PyTorch kernels, Triton launches), independent of the interpreter. The bounds below
are the design: a forward is one allocation and one launch for k_f, one allocation and one launch for y. Any op that
makes the host wait for the device (.item(), bool(tensor), nonzero, a copy to the CPU) fails the sync check.
"""
import pytest
import torch
from torch._library.custom_ops import OPDEFS
from torch.utils._python_dispatch import TorchDispatchMode

from lconv import kernels
from lconv.butterfly import three_pass_sizes
from lconv.kernels import flash_butterfly as fb, launch as kl, three_pass as tp

pytestmark = pytest.mark.usefixtures("kernel_device")

needs_triton = pytest.mark.skipif(not (kernels.HAS_TRITON and (torch.cuda.is_available() or kernels.INTERPRET)),
                                  reason="Triton kernels need a GPU or TRITON_INTERPRET=1")

SYNCING = {"aten._local_scalar_dense", "aten.item", "aten.nonzero", "aten.is_nonzero", "aten.equal",
           "aten.allclose", "aten.masked_select", "aten.unique", "aten._unique2"}


class DispatchCount(TorchDispatchMode):
    """ATen ops dispatched inside the block (our lconv:: operators are opened and their contents counted)."""

    def __init__(self):
        super().__init__()
        self.ops, self.syncs = [], []

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        if func.namespace == "lconv":
            with self:
                return OPDEFS[func._schema.name]._init_fn(*args, **kwargs)
        name = f"aten.{func._schema.name.split('::')[-1]}"
        self.ops.append(name)
        moves_to_cpu = any(isinstance(v, torch.device) and v.type == "cpu" for v in kwargs.values()) and any(
            isinstance(a, torch.Tensor) and a.device.type != "cpu" for a in args)
        if name in SYNCING or moves_to_cpu:
            self.syncs.append(name)
        return func(*args, **kwargs)


@pytest.fixture
def launches(monkeypatch):
    """Replace the kernel launch in both kernel files by a recorder (nothing runs: the outputs are not computed)."""
    names = []

    def record(kernel, grid, args, meta, N, what):
        names.append(kernel.fn.__name__)

    monkeypatch.setattr(fb, "launch", record)
    monkeypatch.setattr(tp, "launch", record)
    return names


def count(fn):
    with DispatchCount() as c:
        out = fn()
    assert not c.syncs, f"host-device synchronisation: {c.syncs}"
    return out, c.ops


def inputs(B, H, L, N, gated=False, grad=False, dtype=torch.float16):
    u = torch.randn(B, H, L).to(dtype).requires_grad_(grad)
    k = torch.randn(H, L).requires_grad_(grad)
    gates = (torch.rand(B, H, L).to(dtype).requires_grad_(grad), torch.rand(B, H, L).to(dtype).requires_grad_(grad)) \
        if gated else (None, None)
    return u, k, *gates


# ---------------------------------------------------------------------------------------------------------------
# k_f by one launch equals the PyTorch reference layouts
# ---------------------------------------------------------------------------------------------------------------

@needs_triton
@pytest.mark.parametrize("N", kl.FUSED_N)
@pytest.mark.parametrize("Lk", [1, 77, "half", "full"])
def test_k_f_fused_equals_the_reference_layout_to_fp32_rounding(N, Lk):
    Lk = {"half": N // 2, "full": N}.get(Lk, Lk)
    k = torch.randn(3, Lk) * torch.logspace(0, -3, Lk)  # a decaying kernel, as trained ones are
    ours, ref = fb.k_f_fused(k, N), kl.k_f_planes(k, N)  # (H, 2, N) fp32
    exact = kl.k_f_planes(k.double(), N)
    err, err_torch = (ours.double() - exact).abs().max().item(), (ref.double() - exact).abs().max().item()
    assert ours.shape == ref.shape == (3, 2, N)
    assert err <= 2 * err_torch + 4 * 2.0 ** -24 * exact.abs().max().item(), (err, err_torch)


@needs_triton
@pytest.mark.parametrize("N", [256, 4096])
def test_k_f_of_the_learned_kernels_is_the_rfft_gathered_exactly(N):
    k = torch.randn(2, N // 2 + 5)
    ours = fb.k_f_gathered(k, N, kl.get_plan(N, k.device)["k_src_full"])
    assert torch.equal(ours, kl.k_f_planes_full(k, N))  # the same FFT values, moved: no arithmetic but conj


@needs_triton
@pytest.mark.parametrize("N", [8192, 1 << 17, 1 << 20])
def test_k_f_of_the_three_pass_kernel_holds_the_stored_outer_rows_only(N):
    N0, M1, M2 = three_pass_sizes(N)
    R = N0 // 2 + 1
    k = torch.randn(1, 3001)
    ours = tp.k_f_three_pass(k, N)
    assert ours.shape == (1, 2, R * M1 * M2)  # not (H, 2, N): pass 2 reads rows f0 ≤ N0/2 only
    torch.testing.assert_close(ours, kl.k_f_planes_full(k, N, (N0, M1, M2))[..., :R * M1 * M2], rtol=1e-6, atol=1e-5)


# ---------------------------------------------------------------------------------------------------------------
# The no-grad fast path: the same numbers, no autograd node
# ---------------------------------------------------------------------------------------------------------------

@needs_triton
@pytest.mark.parametrize("N, gated, learned", [(512, False, False), (1024, True, False), (256, False, True),
                                               (8192, True, False)])
def test_fast_path_gives_the_graph_paths_numbers_without_a_node(N, gated, learned):
    u, k, pre, post = inputs(2, 2, N // 2, N, gated=gated)
    blocks = {}
    if learned:
        from lconv.butterfly import default_sizes, dft_matrix
        blocks = {f"dft{i}": dft_matrix(M, dtype=torch.complex64) for i, M in enumerate(default_sizes(N), 1)}
    with torch.no_grad():
        fast = kernels.flash_butterfly_conv(u, k, N, pre, post, **blocks)
    assert fast.grad_fn is None
    graph = kernels.flash_butterfly_conv(u, k.clone().requires_grad_(), N, pre, post, **blocks)
    assert graph.grad_fn is not None
    assert torch.equal(fast, graph.detach())


# ---------------------------------------------------------------------------------------------------------------
# Dispatch counts (the host's work per call) and no host-device synchronisation
# ---------------------------------------------------------------------------------------------------------------

FWD_OPS = ["aten.empty", "aten.empty_like"]  # k_f (H, 2, N), y (B, H, L)


@pytest.mark.parametrize("gated", [False, True])
def test_a_forward_is_two_allocations_and_two_launches(launches, gated):
    u, k, pre, post = inputs(4, 3, 512, 1024, gated=gated)
    kernels.flash_butterfly_conv(u, k, 1024, pre, post)  # first call builds the cached tables
    launches.clear()
    _, ops = count(lambda: kernels.flash_butterfly_conv(u, k, 1024, pre, post))
    assert ops == FWD_OPS and launches == ["k_f_half_kernel", "flash_butterfly_fwd_kernel"]
    u, k, pre, post = inputs(4, 3, 512, 1024, gated=gated, grad=True)  # recording a graph: the same device work
    launches.clear()
    y, ops = count(lambda: kernels.flash_butterfly_conv(u, k, 1024, pre, post))
    assert ops == FWD_OPS + ["aten.empty_like"] * gated  # gated: w = conv(pre ⊙ u, k) kept for dpostgate = dy ⊙ w
    assert launches == ["k_f_half_kernel", "flash_butterfly_fwd_kernel"]  # w is the same launch's second output
    assert y.grad_fn is not None


@pytest.mark.parametrize("gated", [False, True])
def test_a_backward_is_two_launches_and_one_allocation_per_gradient(launches, gated):
    """du (and dpregate, dpostgate) by the forward kernel run on dy, dk by its own kernel; dk[0], a view, with one
    chunk of rows; autograd's detach of the leaves' gradients; nothing zero-filled."""
    u, k, pre, post = inputs(4, 3, 512, 1024, gated=gated, grad=True)
    y = kernels.flash_butterfly_conv(u, k, 1024, pre, post)
    dy = torch.ones_like(y)
    launches.clear()
    _, ops = count(lambda: y.backward(dy))
    assert launches == ["flash_butterfly_fwd_kernel", "flash_butterfly_dk_kernel"]
    assert [op for op in ops if op != "aten.detach"] == ["aten.empty_like"] * (3 if gated else 1) + [
        "aten.empty", "aten.select"], ops  # du [, dpregate, dpostgate]; dk's (1, H, Lk) partials, then dk[0]


def test_the_three_pass_forward_is_rfft_plus_four_launches(launches):
    """k_f: rfft (with its zero padding) and one gather launch; then the three passes."""
    u, k, pre, post = inputs(2, 2, 4096, 8192, gated=True)
    kernels.flash_butterfly_conv(u, k, 8192, pre, post)
    launches.clear()
    _, ops = count(lambda: kernels.flash_butterfly_conv(u, k, 8192, pre, post))
    assert launches == ["k_f_gather_kernel", "outer_fwd_kernel", "inner_conv_kernel", "outer_adj_kernel"]
    assert [op for op in ops if op != "aten.empty"] == [
        "aten.constant_pad_nd", "aten._fft_r2c", "aten.view_as_real", "aten.empty_like"], ops  # rfft of k; y
    assert ops.count("aten.empty") == 4, ops  # k_f, the 16-bit buffer z, its block and its row factors


# ---------------------------------------------------------------------------------------------------------------
# Cached device facts and tables
# ---------------------------------------------------------------------------------------------------------------

def test_the_multiprocessor_count_is_asked_once_per_device(monkeypatch):
    asked = []

    class Props:
        multi_processor_count = 132

    monkeypatch.setattr(torch.cuda, "get_device_properties", lambda index: asked.append(index) or Props())
    kl._multiprocessors.cache_clear()
    gpu = torch.device("cuda", 0)
    assert kl.chunks(64, 768, gpu, None) == kl.chunks(64, 768, gpu, None) == (1, 64)
    assert kl.chunks(64, 8, gpu, None) == (64, 1)  # 8 channels: split the batch to fill 4 × 132 programs
    assert asked == [0]
    kl._multiprocessors.cache_clear()


def test_tables_are_not_built_during_cuda_graph_capture(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_current_stream_capturing", lambda: True)
    with pytest.raises(RuntimeError, match=r"lconv\.kernels\.prepare\(2048, 'cuda:5'\)"):
        kl.get_plan(2048, torch.device("cuda", 5))
    kl.prepare(2048, "cpu")  # builds and caches: later calls copy nothing
    assert kl.get_plan(2048, torch.device("cpu")) is kl.get_plan(2048, "cpu")
    with pytest.raises(ValueError, match="not supported"):
        kl.prepare(3000, "cpu")
