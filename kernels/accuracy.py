"""python -m lconv.kernels.accuracy: the fp16/bf16 error table of every FlashButterfly path against fp64.

Motivation
----------
A reduced-precision FFT convolution can be wrong in two ways that ordinary tests (u = randn·0.02) never see: an
intermediate overflows although the output fits (inputs with a large mean: raw pixels, a constant kernel), and one
sample's size leaks into its neighbour's error (samples packed together). This table measures both, for every path.

What it measures
----------------
For each path (fused causal / circular / gated / learned blocks, three-pass causal / gated), each input family and
each dtype (fp16, bf16), the relative error max|ours − ref| / max|ref| of y and of every gradient (du, dk, and
dpregate, dpostgate for gated paths), with `ref` the fp64 torch.fft result on the same dtype-rounded inputs, beside
PyTorch's own relative error in that dtype (fp32 torch.fft of the rounded inputs, outputs rounded to the dtype).
Families:
  - "randn":      u, dy = randn·0.02, k = randn (the kernel tests' inputs);
  - "large mean": u = 255 − 10·rand (raw pixel values), k = 0.02 + 0.005·randn, dy = 1 + 0.1·randn, sized so that
                  every output and gradient fits the dtype (issue 14's input, generalised);
  - "mixed":      two samples, the first 1000× the second; only the second sample's outputs are scored (y, du and
                  the gates' gradients: dk sums over samples by definition and is left out).
A non-finite output counts as an infinite error. On a CPU the kernels run through Triton's interpreter
(TRITON_INTERPRET=1 before `import lconv.kernels`), where bf16 dots run in fp32: the CPU bf16 column checks scaling, loads
and stores, not bf16 tensor-core rounding.

    TRITON_INTERPRET=1 python -m lconv.kernels.accuracy            # CPU, interpreter
    python -m lconv.kernels.accuracy --out results                 # GPU: also writes results/accuracy-<device>-<time>.json
"""
from __future__ import annotations

import argparse
import math

import torch

DTYPES = {"float16": torch.float16, "bfloat16": torch.bfloat16}
FAMILIES = ("randn", "large mean", "mixed")

# path name → (N, L, gated, learned); N > 4096 runs the three-pass kernel.
PATHS = {
    "fused causal": (2048, 1024, False, False),
    "fused circular": (1024, 1024, False, False),
    "fused gated": (2048, 1024, True, False),
    "fused learned": (1024, 512, False, True),
    "three-pass causal": (8192, 4096, False, False),
    "three-pass gated": (8192, 4096, True, False),
}


def _inputs(family: str, B: int, H: int, L: int, gated: bool, gen: torch.Generator):
    """u, k, dy, (pre, post) in fp32 for one family (rounded to the dtype by the caller)."""
    def rand(*s):
        return torch.rand(*s, generator=gen)

    def randn(*s):
        return torch.randn(*s, generator=gen)

    if family == "randn":
        u, k, dy = randn(B, H, L) * 0.02, randn(H, L), randn(B, H, L) * 0.02
        gates = (randn(B, H, L), randn(B, H, L)) if gated else ()
    elif family == "large mean":
        u, k, dy = 255 - 10 * rand(B, H, L), 0.02 + 0.005 * randn(H, L), 1 + 0.1 * randn(B, H, L)
        gates = (0.5 + 0.5 * rand(B, H, L), 0.5 + 0.5 * rand(B, H, L)) if gated else ()
    elif family == "mixed":
        u, k, dy = randn(B, H, L) * 0.02, randn(H, L), randn(B, H, L) * 0.02
        u[0] *= 1000.0
        dy[0] *= 1000.0
        gates = (randn(B, H, L), randn(B, H, L)) if gated else ()
    else:
        raise ValueError(f"family={family!r}: use one of {FAMILIES}")
    return u, k, dy, gates


def _fft_conv(u, k, N, pre=None, post=None):
    """post ⊙ first L of the N-point circular conv of zero-padded pre ⊙ u and k, by torch.fft in k's precision."""
    v = u if pre is None else u * pre
    y = torch.fft.irfft(torch.fft.rfft(v.to(k.dtype), n=N) * torch.fft.rfft(k, n=N), n=N)[..., :u.shape[-1]]
    y = y.to(u.dtype)
    return y if post is None else y * post


def _grads(fn, tensors, dy):
    """[y, d(tensor) for each tensor] of y = fn(*tensors) with upstream gradient dy."""
    leaves = [t.detach().clone().requires_grad_() for t in tensors]
    y = fn(*leaves)
    y.backward(dy.to(y.dtype))
    return [y.detach()] + [t.grad for t in leaves]


def _rel(o: torch.Tensor, r: torch.Tensor) -> float:
    """max|o − r| / max|r| (inf when o is not finite)."""
    o = o.to(torch.complex128 if o.is_complex() else torch.float64)
    if not torch.isfinite(o).all():
        return math.inf
    scale = r.abs().max().item()
    return (o - r).abs().max().item() / (scale if scale > 0 else 1.0)


def measure(path: str, family: str, dtype: torch.dtype, B: int = 2, H: int = 2, seed: int = 0,
            device: str | torch.device = "cpu") -> list[dict]:
    """Rows {path, family, dtype, output, rel_err, rel_err_torch} for one path, family and dtype."""
    from lconv.butterfly import default_sizes, dft_matrix, learned_butterfly_conv

    from . import conv as kernels

    N, L, gated, learned = PATHS[path]
    gen = torch.Generator().manual_seed(seed)
    u, k, dy, gates = _inputs(family, B, H, L, gated, gen)
    u, dy = u.to(dtype).to(device), dy.to(dtype).to(device)
    k = k.to(device)
    gates = tuple(g.to(dtype).to(device) for g in gates)
    blocks = ()
    if learned:
        blocks = tuple((dft_matrix(M) + 0.1 * torch.complex(torch.randn(M, M, generator=gen),
                                                            torch.randn(M, M, generator=gen))).to(device)
                       for M in default_sizes(N))

    def ours(u, k, *rest):
        g, b = rest[:len(gates)], rest[len(gates):]
        if learned:
            return kernels.flash_butterfly_conv(u, k, N, *g, dft1=b[0].to(torch.complex64),
                                                dft2=b[1].to(torch.complex64), backend="triton")
        if N > 4096:
            return kernels.three_pass_conv(u, k, N, *g, backend="triton")
        return kernels.flash_butterfly_conv(u, k, N, *g, backend="triton")

    def reference(u, k, *rest):  # fp64 for fp64 inputs, fp32 (rounded to the dtype) for the rest
        g, b = rest[:len(gates)], rest[len(gates):]
        if learned:
            cdt = torch.complex128 if u.dtype == torch.float64 else torch.complex64
            y = learned_butterfly_conv(u.to(k.dtype), k, N, b[0].to(cdt), b[1].to(cdt)).to(u.dtype)
            return y
        return _fft_conv(u, k, N, *g)

    names = ["y", "du", "dk"] + (["dpregate", "dpostgate"] if gated else []) + (["ddft1", "ddft2"] if learned else [])
    got = _grads(ours, (u, k, *gates, *blocks), dy)
    want = _grads(reference, [t.double() if not t.is_complex() else t for t in (u, k, *gates)] + list(blocks),
                  dy.double())
    base = _grads(reference, [t.float() if t.dtype == dtype else t for t in (u, k, *gates)] + list(blocks),
                  dy.float())
    rows = []
    for name, o, r, b in zip(names, got, want, base):
        if family == "mixed":
            if name in ("dk", "ddft1", "ddft2"):
                continue
            o, r, b = o[1:], r[1:], b[1:]  # the small sample only
        if name in ("y", "du", "dpregate", "dpostgate"):
            b = b.to(dtype)  # PyTorch's result in the dtype, as ours
        rows.append({"path": path, "family": family, "dtype": str(dtype)[6:], "output": name,
                     "rel_err": _rel(o, r), "rel_err_torch": _rel(b, r)})
    return rows


def table(dtypes=tuple(DTYPES), families=FAMILIES, paths=tuple(PATHS), device="cpu") -> list[dict]:
    """measure() over every path, family and dtype."""
    rows = []
    for dt in dtypes:
        for family in families:
            for path in paths:
                rows += measure(path, family, DTYPES[dt], device=device)
    return rows


def worst(rows: list[dict]) -> dict:
    """{(dtype, family): (largest rel_err, its path/output, PyTorch's largest rel_err)}."""
    out = {}
    for r in rows:
        key = (r["dtype"], r["family"])
        best = out.get(key)
        if best is None or r["rel_err"] > best[0] or (math.isinf(r["rel_err"]) and not math.isinf(best[0])):
            out[key] = (r["rel_err"], f"{r['path']} {r['output']}", max(r["rel_err_torch"], (best or (0, 0, 0))[2]))
        else:
            out[key] = (best[0], best[1], max(best[2], r["rel_err_torch"]))
    return out


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--dtypes", nargs="*", default=list(DTYPES), choices=list(DTYPES))
    parser.add_argument("--families", nargs="*", default=list(FAMILIES), choices=list(FAMILIES))
    parser.add_argument("--paths", nargs="*", default=list(PATHS), choices=list(PATHS))
    parser.add_argument("--out", default=None, help="folder for accuracy-<device>-<UTC time>.json (with provenance)")
    args = parser.parse_args(argv)
    device = "cuda" if torch.cuda.is_available() else "cpu"
    rows = table(args.dtypes, args.families, args.paths, device)
    print(f"{'path':<18} {'family':<11} {'dtype':<9} {'output':<10} {'ours':>10} {'torch':>10}")
    for r in rows:
        print(f"{r['path']:<18} {r['family']:<11} {r['dtype']:<9} {r['output']:<10} {r['rel_err']:>10.3g} "
              f"{r['rel_err_torch']:>10.3g}")
    print("\nlargest relative error across paths (ours; PyTorch's largest in the same dtype):")
    for (dt, family), (err, where, err_torch) in worst(rows).items():
        print(f"  {dt:<9} {family:<11} {err:.3g} ({where}); PyTorch {err_torch:.3g}")
    if args.out:
        from pathlib import Path

        from lconv.results import provenance, slug, write_json_atomic

        prov = provenance(device)
        path = Path(args.out) / f"accuracy-{slug(prov['device'])}-{prov['date'].replace(':', '')}.json"
        write_json_atomic(path, {"provenance": prov, "rows": rows})
        print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
