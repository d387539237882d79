r"""The FFT as Butterfly (Monarch) block matrices, and the FFT convolution FlashButterfly computes with them.

Cooley–Tukey with N = N1·N2 writes the DFT matrix as block-diagonal factors and a diagonal between them,

    F_N = P (I_{N2} ⊗ F_{N1}) P^T · D · (I_{N1} ⊗ F_{N2}) P,

so an N-point FFT becomes small dense DFTs (matrix multiplies: tensor cores on a GPU) and one elementwise multiply by the
`twiddle` factors. With the index maps n = N2·n1 + n2 (time) and f = f1 + N1·f2 (frequency),

    X[f1 + N1·f2] = Σ_{n2} ω_{N2}^{n2·f2} · ω_N^{n2·f1} · Σ_{n1} ω_{N1}^{n1·f1} · x[N2·n1 + n2],     ω_M = exp(-2πi/M),

i.e. view x as an (N1, N2) matrix, multiply by F_{N1} from the left, by twiddle(N1, N2) elementwise, by F_{N2} from the
right: the result sits in "permuted" order X_perm[f1, f2] = X[f1 + N1·f2]. More factors recurse on the right factor.

A convolution never needs natural order: y = F^{-1}(F u ⊙ F k), and if k's spectrum `k_f` is stored in the same
permuted order, F_perm^{-1} = F_perm^H / N undoes the forward pass step by step (the adjoint runs the factors in
reverse with conjugated matrices), so the permutations cancel between the forward and inverse passes.

Real inputs: k is real, so conv(u_a + i·u_b, k) = conv(u_a, k) + i·conv(u_b, k). Two real rows of u (batch elements
2p and 2p+1 of the same channel) are packed into one complex sequence: one complex FFT convolution gives both outputs,
the real part for one and the imaginary part for the other. No Hermitian post-processing, half the work.

Packing two batch rows makes each row's result depend on its partner's (a NaN in one poisons both; a large one
costs the small one its precision in fp16), so the kernel no longer does it. It uses the half-length real-FFT trick
within one row instead: the even and odd samples of a real row x of length N become one complex sequence
z[m] = x[2m] + i·x[2m+1] of M = N/2 points, one M-point FFT Z gives both halves' spectra,
E[f] = (Z[f] + conj Z[−f])/2, O[f] = (Z[f] − conj Z[−f])/(2i), and x's spectrum X[f] = E[f] + ω_N^f·O[f],
X[f + M] = E[f] − ω_N^f·O[f]; the inverse runs the same steps backwards for y[2m] + i·y[2m+1]. Same work per row as a
packed pair, every row on its own. `real_butterfly_conv` is the fp32/fp64 PyTorch reference of exactly what the
fused Triton kernel in `kernels/` runs (same factors, same unitary scaling 1/√N_i per factor, same k_f layout,
`k_f_half`); `butterfly_conv` is the packed-pair version, kept as the textbook form. Every step is checked against
torch.fft in tests/test_butterfly.py and tests/test_kernels.py.

This module holds every algorithm reference the kernels in kernels/ must equal: the fixed fused kernel
(`real_butterfly_conv`), the learned-Butterfly kernel (`learned_transform`, `learned_butterfly_conv`; maths in
lconv.learned_butterfly's docstring) and the three-pass kernel (`three_pass_sizes`, `three_pass_reference`; maths in
kernels/three_pass.py's docstring).
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F


def dft_matrix(N: int, inverse: bool = False, dtype=torch.complex128, device=None) -> torch.Tensor:
    """The N×N DFT matrix F[j, f] = exp(-2πi·j·f/N); inverse=True gives F^{-1} = conj(F)/N."""
    j = torch.arange(N, device=device)
    jf = torch.outer(j, j) % N  # exact integer phase before the float multiply
    angle = (2 * math.pi / N) * jf.to(torch.float64)  # (N, N)
    F = torch.polar(torch.ones_like(angle), -angle if not inverse else angle)
    if inverse:
        F = F / N
    return F.to(dtype)


def twiddle(N1: int, N2: int, dtype=torch.complex128, device=None) -> torch.Tensor:
    """The twiddle diagonal as an (N1, N2) matrix: twiddle[f1, n2] = exp(-2πi·f1·n2/(N1·N2))."""
    N = N1 * N2
    f1n2 = torch.outer(torch.arange(N1, device=device), torch.arange(N2, device=device)) % N  # (N1, N2)
    angle = (2 * math.pi / N) * f1n2.to(torch.float64)
    return torch.polar(torch.ones_like(angle), -angle).to(dtype)


def default_sizes(N: int) -> tuple[int, int]:
    """The two-factor split the kernel uses: N1 = 2^⌊log2(N)/2⌋, N2 = N/N1 (256=16·16, 512=16·32, 4096=64·64)."""
    if N < 4 or N & (N - 1):
        raise ValueError(f"N={N} must be a power of two ≥ 4 to split into Butterfly factors")
    N1 = 1 << (N.bit_length() - 1) // 2
    return N1, N // N1


def _check_sizes(N: int, sizes) -> tuple[int, ...]:
    sizes = tuple(int(s) for s in sizes)
    if math.prod(sizes) != N:
        raise ValueError(f"sizes {sizes} multiply to {math.prod(sizes)}, not the sequence length N={N}")
    return sizes


def permuted_order(sizes) -> torch.Tensor:
    """idx such that X_perm = X[..., idx]: the natural frequency at each position of the Monarch output."""
    sizes = tuple(sizes)
    if len(sizes) == 1:
        return torch.arange(sizes[0])
    N1, inner = sizes[0], permuted_order(sizes[1:])  # position f1·M + p holds frequency f1 + N1·inner[p]
    return (torch.arange(N1)[:, None] + N1 * inner[None, :]).reshape(-1)


_ORDERS: dict = {}


def _order_on(sizes, device, inverse: bool = False) -> torch.Tensor:
    """permuted_order(sizes) (or its inverse permutation) on `device`, cached: a fresh host-to-device copy per call
    would stall a GPU stream (a pageable copy waits for the work queued before it)."""
    key = (tuple(sizes), str(device), inverse)
    if key not in _ORDERS:
        order = permuted_order(sizes)
        _ORDERS[key] = (torch.argsort(order) if inverse else order).to(device)
    return _ORDERS[key]


def _complex_dtype(x: torch.Tensor):
    return torch.complex128 if x.dtype in (torch.float64, torch.complex128) else torch.complex64


def _fft_perm(x: torch.Tensor, sizes: tuple[int, ...], scale: bool) -> torch.Tensor:
    """Forward Monarch pass over the last dim: natural-order time in, permuted-order frequency out."""
    cdt, dev = x.dtype, x.device
    N1 = sizes[0]
    F1 = dft_matrix(N1, dtype=cdt, device=dev) * (N1 ** -0.5 if scale else 1.0)
    if len(sizes) == 1:
        return x @ F1  # (..., N1); F is symmetric
    M = math.prod(sizes[1:])
    A = x.reshape(*x.shape[:-1], N1, M)  # (..., N1, M): A[n1, m] = x[M·n1 + m]
    C = (F1 @ A) * twiddle(N1, M, dtype=cdt, device=dev)  # (..., N1, M): DFT down the columns, then twiddle
    return _fft_perm(C, sizes[1:], scale).reshape(x.shape)  # (..., N): DFTs along the rows, recursively


def _adjoint_perm(X: torch.Tensor, sizes: tuple[int, ...], scale: bool) -> torch.Tensor:
    """The adjoint (conjugate transpose) of `_fft_perm`: permuted-order frequency in, natural-order time out."""
    cdt, dev = X.dtype, X.device
    N1 = sizes[0]
    F1h = dft_matrix(N1, dtype=cdt, device=dev).conj() * (N1 ** -0.5 if scale else 1.0)
    if len(sizes) == 1:
        return X @ F1h
    M = math.prod(sizes[1:])
    C = _adjoint_perm(X.reshape(*X.shape[:-1], N1, M), sizes[1:], scale)  # (..., N1, M)
    return (F1h @ (C * twiddle(N1, M, dtype=cdt, device=dev).conj())).reshape(X.shape)  # (..., N)


def monarch_fft(x: torch.Tensor, sizes, permuted: bool = False, norm: str = "backward") -> torch.Tensor:
    """FFT over the last dim as Monarch factors (each a batched matmul); equals torch.fft.fft(x, norm=norm).

    sizes = (N1, N2) or (N1, N2, N3), product = x.shape[-1]. permuted=True returns the spectrum in the Monarch's own
    order X_perm = X[..., permuted_order(sizes)]. norm="ortho" scales every factor by 1/√N_i (what the kernel does).
    """
    sizes = _check_sizes(x.shape[-1], sizes)
    if norm not in ("backward", "ortho"):
        raise ValueError(f"norm={norm!r}: use 'backward' (unscaled forward, like torch.fft) or 'ortho'")
    X = _fft_perm(x.to(_complex_dtype(x)), sizes, scale=norm == "ortho")
    if permuted:
        return X
    return X[..., _order_on(sizes, X.device, inverse=True)]


def monarch_ifft(X: torch.Tensor, sizes, permuted: bool = False, norm: str = "backward") -> torch.Tensor:
    """Inverse of `monarch_fft` (same sizes, order and norm); equals torch.fft.ifft(X, norm=norm) for natural order."""
    sizes = _check_sizes(X.shape[-1], sizes)
    if norm not in ("backward", "ortho"):
        raise ValueError(f"norm={norm!r}: use 'backward' (scaled 1/N inverse, like torch.fft) or 'ortho'")
    X = X.to(_complex_dtype(X))
    if not permuted:
        X = X[..., _order_on(sizes, X.device)]  # natural → permuted order
    x = _adjoint_perm(X, sizes, scale=norm == "ortho")
    return x if norm == "ortho" else x / X.shape[-1]


def pack_pairs(u: torch.Tensor) -> torch.Tensor:
    """Real (B, H, L) → complex (⌈B/2⌉, H, L): batch rows 2p and 2p+1 become real and imaginary parts."""
    B = u.shape[0]
    if B % 2:
        u = torch.cat([u, torch.zeros_like(u[:1])])  # (B+1, H, L): a zero partner for the last row
    return torch.complex(u[0::2], u[1::2])  # (⌈B/2⌉, H, L)


def unpack_pairs(z: torch.Tensor, B: int) -> torch.Tensor:
    """Inverse of `pack_pairs`: complex (⌈B/2⌉, H, L) → real (B, H, L)."""
    return torch.stack([z.real, z.imag], dim=1).flatten(0, 1)[:B]  # (B, H, L)


def k_f_permuted(k: torch.Tensor, N: int, sizes=None) -> torch.Tensor:
    """k's spectrum (unscaled FFT of k zero-padded to N) in the Monarch's permuted order: (H, Lk) → complex (H, N)."""
    sizes = _check_sizes(N, sizes or default_sizes(N))
    k_f = torch.fft.fft(k.to(torch.float64 if k.dtype == torch.float64 else torch.float32), n=N)  # (H, N)
    return k_f[..., _order_on(sizes, k.device)]


def butterfly_conv(u: torch.Tensor, k: torch.Tensor, N: int, sizes=None) -> torch.Tensor:
    """y = first L entries of the N-point circular convolution of zero-padded u (B, H, L) and k (H, Lk).

    L, Lk ≤ N/2 gives the causal linear convolution y[t] = Σ_s k[s]·u[t−s]; L = N the circular one. The algorithm
    of the Triton kernel: rows paired into complex sequences, ortho Monarch FFT, multiply by the permuted `k_f`,
    adjoint Monarch pass, unpack. Computes in fp32 (fp64 for fp64 inputs); returns u's dtype; differentiable.
    """
    sizes = _check_sizes(N, sizes or default_sizes(N))
    B, H, L = u.shape
    if L > N or k.shape[-1] > N:
        raise ValueError(f"L={L} and Lk={k.shape[-1]} must be ≤ N={N}")
    rdt = torch.float64 if u.dtype == torch.float64 else torch.float32
    z = pack_pairs(u.to(rdt))  # (P, H, L) complex, P = ⌈B/2⌉
    z = torch.cat([z, z.new_zeros(*z.shape[:-1], N - L)], dim=-1)  # (P, H, N): implicit zero padding
    k_f = k_f_permuted(k.to(rdt), N, sizes)  # (H, N) permuted order
    Z = monarch_fft(z, sizes, permuted=True, norm="ortho")  # (P, H, N)
    y = monarch_ifft(Z * k_f, sizes, permuted=True, norm="ortho")[..., :L]  # (P, H, L)
    return unpack_pairs(y, B).to(u.dtype)  # (B, H, L)


def half_sizes(N: int) -> tuple[int, int]:
    """The (N1, N2) tile of the half-length trick: default_sizes(N/2) (256 → 8·16, 4096 → 32·64)."""
    if N < 8 or N & (N - 1):
        raise ValueError(f"N={N} must be a power of two ≥ 8 for the half-length real-FFT trick")
    return default_sizes(N // 2)


_HALF: dict = {}


def half_tables(N: int, device=None, dtype=torch.complex128) -> dict:
    """Index and twiddle tables of the half-length trick at FFT size N, in the permuted order of half_sizes(N):

    "order" (M,): the natural frequency f at each slot; "rev" (M,): the slot holding −f (mod M);
    "omega" (M,) complex: ω_N^f = exp(−2πi·f/N) at each slot; "k_order" (N,): order, then order + M (k_f's layout).
    """
    key = (N, str(device), dtype)
    if key not in _HALF:
        M = N // 2
        order = permuted_order(half_sizes(N))  # (M,)
        slot = torch.argsort(order)  # frequency → slot
        rev = slot[(-order) % M]  # slot of −f
        angle = (-2 * math.pi / N) * order.to(torch.float64)
        _HALF[key] = {"order": order.to(device), "rev": rev.to(device),
                      "k_order": torch.cat([order, order + M]).to(device),
                      "omega": torch.polar(torch.ones_like(angle), angle).to(dtype=dtype, device=device)}
    return _HALF[key]


def k_f_half(k: torch.Tensor, N: int) -> torch.Tensor:
    """k's N-point spectrum (unscaled FFT of k zero-padded to N) in the kernel's layout: (H, Lk) → complex (H, N),
    k_f[f] at the M = N/2 slots of the permuted order of half_sizes(N), then k_f[f + M] at the same slots."""
    k_f = torch.fft.fft(k.to(torch.float64 if k.dtype == torch.float64 else torch.float32), n=N)  # (H, N)
    return k_f[..., half_tables(N, k.device)["k_order"]]  # (H, N): one gather, as k_f_permuted


def real_butterfly_conv(u: torch.Tensor, k: torch.Tensor, N: int) -> torch.Tensor:
    """y = first L entries of the N-point circular convolution of zero-padded u (B, H, L) and k (H, Lk), row by row.

    The algorithm of the fused Triton kernel (module docstring): each row's even/odd samples as one complex sequence
    of N/2 points, ortho Monarch FFT (permuted order), split into the row's spectrum at f and f + N/2, multiply by
    `k_f_half`, merge, adjoint Monarch pass. No row depends on another. L, Lk ≤ N/2 gives the causal linear
    convolution, L = N the circular one. Computes in fp32 (fp64 for fp64 inputs); returns u's dtype; differentiable.
    """
    B, H, L = u.shape
    if L > N or k.shape[-1] > N:
        raise ValueError(f"L={L} and Lk={k.shape[-1]} must be ≤ N={N}")
    sizes = half_sizes(N)
    M = N // 2
    rdt = torch.float64 if u.dtype == torch.float64 else torch.float32
    cdt = torch.complex128 if rdt == torch.float64 else torch.complex64
    tab = half_tables(N, u.device, cdt)
    x = torch.cat([u.to(rdt), u.new_zeros(B, H, N - L, dtype=rdt)], dim=-1)  # (B, H, N): zero padding
    z = torch.complex(x[..., 0::2], x[..., 1::2])  # (B, H, M): even + i·odd samples
    Z = monarch_fft(z, sizes, permuted=True, norm="ortho")  # (B, H, M) = DFT_M(z)/√M, permuted order
    W = Z[..., tab["rev"]].conj()  # conj Z[−f]
    E, O = (Z + W) / 2, (Z - W) / 2j  # spectra of the even and the odd samples
    K = k_f_half(k.to(rdt), N)  # (H, N): K[f], then K[f + M]
    Y_lo = (E + tab["omega"] * O) * K[..., :M]  # x's spectrum at f, times k's: (B, H, M)
    Y_hi = (E - tab["omega"] * O) * K[..., M:]  # … at f + M
    Zp = (Y_lo + Y_hi) / 2 + 1j * tab["omega"].conj() * (Y_lo - Y_hi) / 2  # spectrum of y[2m] + i·y[2m+1]
    zp = monarch_ifft(Zp, sizes, permuted=True, norm="ortho")  # (B, H, M)
    y = torch.stack([zp.real, zp.imag], dim=-1).reshape(B, H, N)[..., :L]  # (B, H, L)
    return y.to(u.dtype)


# ---------------------------------------------------------------- the learned Butterfly transform (claim 9)
# T(u) = ((dft1 @ A) ⊙ twiddle) @ dft2 with free complex blocks (lconv.learned_butterfly's docstring has the maths);
# u's transform is learned, k's spectrum and the inverse stay exact. The reference the learned Triton kernels equal.

def check_learned_blocks(dft1, dft2, N, H):
    """Raise ValueError unless dft1, dft2 are complex (N1, N1)/(H, N1, N1) and (N2, N2)/(H, N2, N2)."""
    N1, N2 = default_sizes(N)
    for name, d, n in (("dft1", dft1, N1), ("dft2", dft2, N2)):
        if not isinstance(d, torch.Tensor) or not d.is_complex():
            got = d.dtype if isinstance(d, torch.Tensor) else type(d).__name__
            raise ValueError(f"{name} must be a complex tensor ({n}, {n}) or (H, {n}, {n}), got {got}; "
                             f"real (re, im) pairs: pass torch.view_as_complex({name})")
        if d.shape[-2:] != (n, n) or d.dim() not in (2, 3) or (d.dim() == 3 and H is not None and d.shape[0] != H):
            raise ValueError(f"{name} must be ({n}, {n}) or (H={H}, {n}, {n}) for N={N} = {N1}·{N2} "
                             f"(lconv.butterfly.default_sizes), got shape {tuple(d.shape)}")


def learned_transform(x: torch.Tensor, N: int, dft1: torch.Tensor, dft2: torch.Tensor,
                      permuted: bool = False) -> torch.Tensor:
    """T(x) over the last dim: complex (..., H, N) → (..., H, N), natural frequency order (or the kernel's permuted).

    T(x) = ((dft1 @ A) ⊙ twiddle) @ dft2 with A[n1, n2] = x[N2·n1 + n2]; the DFT when the blocks are DFT matrices.
    """
    N1, N2 = default_sizes(N)
    if x.shape[-1] != N:
        raise ValueError(f"learned_transform: last dim must be N={N}, got {tuple(x.shape)}; zero-pad x to N")
    check_learned_blocks(dft1, dft2, N, x.shape[-2] if x.dim() >= 2 else None)
    cdt = x.dtype if x.is_complex() else (torch.complex128 if x.dtype == torch.float64 else torch.complex64)
    x = x.to(cdt)
    A = x.reshape(*x.shape[:-1], N1, N2)  # (..., H, N1, N2)
    C = (dft1.to(cdt) @ A) * twiddle(N1, N2, dtype=cdt, device=x.device)  # (..., H, N1, N2): learned N1-point blocks
    Z = (C @ dft2.to(cdt)).reshape(x.shape)  # (..., H, N): position f1·N2 + f2 holds frequency f1 + N1·f2
    if permuted:
        return Z
    return Z[..., torch.argsort(permuted_order((N1, N2))).to(x.device)]  # (..., H, N) natural order


def learned_transform_matrix(N: int, dft1: torch.Tensor, dft2: torch.Tensor) -> torch.Tensor:
    """T as an explicit matrix M (N, N) or (H, N, N), natural order: T(x) = M @ x. Built entry by entry from the blocks.

    M[f1 + N1·f2, N2·n1 + n2] = dft2[n2, f2] · twiddle[f1, n2] · dft1[f1, n1] (the naive dense reference of the tests).
    """
    N1, N2 = default_sizes(N)
    check_learned_blocks(dft1, dft2, N, None)
    cdt = torch.promote_types(dft1.dtype, dft2.dtype)
    tw = twiddle(N1, N2, dtype=cdt, device=dft1.device)  # (N1, N2)
    M = torch.einsum("...ai,ab,...bc->...caib", dft1.to(cdt), tw, dft2.to(cdt))  # (..., f2, f1, n1, n2)
    return M.reshape(*M.shape[:-4], N, N)  # rows f2·N1 + f1 = f1 + N1·f2 (natural), columns N2·n1 + n2


def check_learned_conv_inputs(u, k, N):
    """Raise ValueError unless u (B, H, L) real, k (H, Lk) or (C, H, Lk) real, L, Lk ≤ N, same device."""
    if not isinstance(N, int):
        raise ValueError(f"N must be an int (the FFT size, a power of two ≥ 4), got {N!r}")
    default_sizes(N)  # ValueError unless N is a power of two ≥ 4
    if not isinstance(u, torch.Tensor) or u.dim() != 3 or not u.is_floating_point():
        raise ValueError(f"u must be a real floating tensor (B, H, L), got "
                         f"{tuple(u.shape) if isinstance(u, torch.Tensor) else type(u).__name__}")
    if not isinstance(k, torch.Tensor) or k.dim() not in (2, 3) or not k.is_floating_point():
        raise ValueError("k must be a real floating tensor (H, Lk) or (C, H, Lk)")
    if k.shape[-2] != u.shape[1]:
        raise ValueError(f"k has {k.shape[-2]} channels but u has H={u.shape[1]}: pass k as (H, Lk) or (C, H, Lk)")
    if u.shape[-1] > N or k.shape[-1] > N:
        raise ValueError(f"L={u.shape[-1]} and Lk={k.shape[-1]} must be ≤ N={N}; pick N ≥ L + Lk (a power of two) "
                         "for a causal convolution without wrap-around")
    if u.device != k.device:
        raise ValueError(f"u is on {u.device} and k on {k.device}: move both to the same device")


def learned_butterfly_conv(u: torch.Tensor, k: torch.Tensor, N: int, dft1: torch.Tensor,
                           dft2: torch.Tensor) -> torch.Tensor:
    """y = Re(ifft(T(u) ⊙ fft(k)))[..., :L] with T the learned Butterfly transform (module docstring), the reference.

    u (B, H, L); k (H, Lk) → y (B, H, L), or k (C, H, Lk) → y (B, C, H, L). N is the FFT size (power of two ≥ 4;
    L, Lk ≤ N/2 gives the causal linear convolution at DFT blocks). dft1 complex (N1, N1) or (H, N1, N1), dft2
    (N2, N2) or (H, N2, N2), unnormalised (== lconv.butterfly.dft_matrix at init). Computes in fp32 (fp64 for fp64
    u); returns u's dtype; differentiable in u, k, dft1, dft2.
    """
    check_learned_conv_inputs(u, k, N)
    check_learned_blocks(dft1, dft2, N, u.shape[1])
    if dft1.device != u.device or dft2.device != u.device:
        raise ValueError(f"dft1/dft2 are on {dft1.device}/{dft2.device} but u on {u.device}: move them to u's device")
    rdt = torch.float64 if u.dtype == torch.float64 else torch.float32
    cdt = torch.complex128 if rdt == torch.float64 else torch.complex64
    B, H, L = u.shape
    N1, N2 = default_sizes(N)
    # learned_transform(u_pad), specialised to a real, zero-padded input: only the first ⌈L/N2⌉ rows of A are
    # nonzero and real, so the first stage is two real matmuls over those rows
    rows = -(-L // N2)
    A = F.pad(u.to(rdt), (0, rows * N2 - L)).reshape(B, H, rows, N2)  # (B, H, rows, N2) real
    dft1 = dft1.to(cdt)[..., :rows]  # (…, N1, rows)
    C = torch.complex(dft1.real @ A, dft1.imag @ A) * twiddle(N1, N2, dtype=cdt, device=u.device)  # (B, H, N1, N2)
    Z = (C @ dft2.to(cdt)).reshape(B, H, N)  # (B, H, N) permuted order f1·N2 + f2
    Z = Z[..., torch.argsort(permuted_order((N1, N2))).to(u.device)]  # (B, H, N) natural order
    k_f = torch.fft.fft(k.to(rdt), n=N)  # (H, N) or (C, H, N): exact spectrum of k
    Y = Z * k_f if k.dim() == 2 else Z[:, None] * k_f  # (B, H, N) or (B, C, H, N)
    return torch.fft.ifft(Y, n=N).real[..., :L].to(u.dtype)  # (B, [C,] H, L): exact inverse, real part


# ---------------------------------------------------------------- the three-pass algorithm (N = 8192 … 2^20)
# One more Cooley–Tukey level across M-strided rows: N = N0·M with M ≤ MAX_INNER on chip (kernels/three_pass.py's
# docstring has the maths); `three_pass_reference` is the PyTorch reference kernels.three_pass equals.

THREE_PASS_N = tuple(1 << e for e in range(13, 21))  # 8192 … 2^20
MAX_INNER = 4096  # the largest M the fused inner convolution holds on chip


def three_pass_sizes(N: int) -> tuple[int, int, int]:
    """(N0, M1, M2) with N = N0·M1·M2: M = M1·M2 = min(4096, N/16) on chip, N0 ≥ 16 across the strided rows."""
    check_seqlen_three_pass(N)
    M = min(MAX_INNER, N // 16)
    return (N // M, *default_sizes(M))


def check_seqlen_three_pass(N) -> int:
    """N must be one of THREE_PASS_N (the FFT size, not the input length)."""
    if not isinstance(N, int) or N not in THREE_PASS_N:
        raise ValueError(f"FFT size N={N!r} is not supported by the three-pass kernel; supported N (the FFT size, "
                         f"≥ 2·L for a causal convolution): {list(THREE_PASS_N)}; N ≤ 4096 uses the fused kernel")
    return N


def three_pass_reference(u: torch.Tensor, k: torch.Tensor, N: int, pregate=None, postgate=None) -> torch.Tensor:
    """postgate ⊙ (first L of the N-point circular conv of zero-padded pregate ⊙ u and k), by the three passes.

    u (B, H, L), k (H, Lk), L, Lk ≤ N (any N = N0·M with a power-of-two M ≥ 16; sizes from three_pass_sizes when N
    is a three-pass size, else (16, default_sizes(N/16))). Row by row, outer rows 0 … N0/2 only (module docstring).
    Differentiable; returns u's dtype.
    """
    N0, M1, M2 = three_pass_sizes(N) if N in THREE_PASS_N else (16, *default_sizes(N // 16))
    M, R = M1 * M2, N0 // 2 + 1
    B, H, L = u.shape
    if L > N or k.shape[-1] > N:
        raise ValueError(f"L={L} and Lk={k.shape[-1]} must be ≤ N={N}")
    rdt = torch.float64 if u.dtype == torch.float64 else torch.float32
    cdt = torch.complex128 if rdt == torch.float64 else torch.complex64
    v = u.to(rdt) if pregate is None else u.to(rdt) * pregate.to(rdt)  # (B, H, L)
    x = torch.cat([v, v.new_zeros(B, H, N - L)], dim=-1).reshape(B, H, N0, M)  # (B, H, N0, M): zero padding
    F0 = dft_matrix(N0, dtype=cdt, device=u.device) / math.sqrt(N0)  # (N0, N0) unitary, symmetric
    tw = twiddle(N0, M, dtype=cdt, device=u.device)[:R]  # (R, M)
    # pass 1: N0-point DFT across the M-strided rows, rows f0 ≤ N0/2 only, then twiddles
    C = (F0[:R] @ x.to(cdt)) * tw  # (B, H, R, M)
    # pass 2: R independent inner FFT convolutions, row f0 with its own segment of k_f
    k_f = k_f_permuted(k.to(rdt), N, (N0, M1, M2)).reshape(H, N0, M)[:, :R]  # (H, R, M) permuted order
    Z = monarch_fft(C, (M1, M2), permuted=True, norm="ortho")  # (B, H, R, M)
    D = monarch_ifft(Z * k_f, (M1, M2), permuted=True, norm="ortho")  # (B, H, R, M)
    # pass 3: back across the rows; rows R … N0−1 are the conjugates of rows N0/2−1 … 1
    T = D * tw.conj()  # (B, H, R, M)
    T = torch.cat([T, T[..., 1:N0 - R + 1, :].flip(-2).conj()], dim=-2)  # (B, H, N0, M)
    y = (F0.conj() @ T).real.reshape(B, H, N)[..., :L]  # (B, H, L)
    if postgate is not None:
        y = y * postgate.to(rdt)
    return y.to(u.dtype)
