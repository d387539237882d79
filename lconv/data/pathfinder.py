"""Pathfinder / Path-X (Linsley et al. 2018; LRA), generated deterministically from a seed.

An S×S image (S = 32, 64, 128, 256 → L = 1024 … 65536) holds `n_curves` dashed curves and two square endpoint
markers. Positive: both markers sit on the two ends of one curve. Negative: they sit on ends of two different
curves. Everything else is drawn by the same process for both labels, so the ink carries no label:
  * every image has the same number of curves, each with the same number of dashes of the same length;
  * curves (with the marker squares their ends may carry) never come within `clearance(gap)` pixels of each other
    (Chebyshev), so distinct curves never touch, even after their dashes are bridged by dilating with
    `bridge_radius(gap)`: connectivity of the two markers is exactly the label;
  * the negative's endpoint pair is chosen so that the distance between the two markers, and their distance from
    the image centre, match those of a paired positive (within `tol` pixels): marker geometry is no shortcut either
    (without this, positives' markers, at the extremes of one curve, sit nearer the border).
The generator keeps a record per image: `endpoints` (2, 2) marker centres (row, col) and `endpoint_curve` (2,)
the index of the curve each marker lies on; label = (endpoint_curve[0] == endpoint_curve[1]).
Labels are exactly balanced. Curves are paths of 0.5-pixel steps whose heading turns with an AR(1) curvature.
"""
from __future__ import annotations

import os
from concurrent.futures import ProcessPoolExecutor

import numpy as np

from lconv.data import Task, resolve_params
from lconv.data.cache import cached_arrays
from lconv.data.datasets import ImageSequences

GENERATOR_VERSION = 2
STEP = 0.5  # pixels per path step

# geometry per image size: dash/gap lengths and dashes per curve (pixels), curves per image, marker radius
GEOMETRY = {
    32: dict(dash=3, gap=1, n_dashes=6, n_curves=3, marker=1),
    64: dict(dash=4, gap=2, n_dashes=9, n_curves=4, marker=1),
    128: dict(dash=6, gap=2, n_dashes=14, n_curves=6, marker=2),
    256: dict(dash=10, gap=4, n_dashes=14, n_curves=8, marker=2),
}
SIZE_OF = {"pathfinder32": 32, "pathfinder64": 64, "path128": 128, "path256": 256}
SPLIT_SIZES = {  # (n_train, n_val, n_test) per profile and image size
    "smoke": {32: (256, 64, 64), 64: (128, 32, 32), 128: (64, 16, 16), 256: (32, 8, 8)},
    "quick": {32: (2000, 500, 500), 64: (1000, 200, 200), 128: (400, 100, 100), 256: (100, 50, 50)},
    "full": {32: (160000, 20000, 20000), 64: (160000, 20000, 20000), 128: (160000, 20000, 20000),
             256: (40000, 5000, 5000)},  # uint8 in memory: 200K×128² = 3.3 GB; 50K×256² = 3.3 GB
}


def bridge_radius(gap: int) -> int:
    """Dilation radius that joins the dashes of one curve (pixel gaps up to floor(gap + 1.5), Chebyshev)."""
    return max(1, -(-(int(gap + 1.5) - 1) // 2))


def clearance(gap: int) -> int:
    """Chebyshev distance that pixels of two different curves (markers included) must exceed: after dilating
    both by bridge_radius(gap), two curves still never touch."""
    return 2 * bridge_radius(gap) + 1


def _dilate(mask: np.ndarray, r: int) -> np.ndarray:
    """Binary dilation by a (2r+1)×(2r+1) square (separable: rows, then columns)."""
    out = mask.copy()
    for d in range(1, r + 1):
        out[d:] |= mask[:-d]
        out[:-d] |= mask[d:]
    rows = out.copy()
    for d in range(1, r + 1):
        out[:, d:] |= rows[:, :-d]
        out[:, :-d] |= rows[:, d:]
    return out


def _curve_shape(rng: np.random.Generator, length: float) -> np.ndarray:
    """Points (n, 2) float (row, col) of one smooth random path, shifted so that its pixels start at 0."""
    n = int(round(length / STEP)) + 1
    rho = np.exp(-STEP / (0.3 * length))  # curvature correlation over ~30% of the curve
    kappa_std = 2.5 / length  # rad per pixel: total turning of order 2.5 rad
    noise = rng.normal(0.0, kappa_std * np.sqrt(1 - rho ** 2), n)
    noise[0] = rng.normal(0.0, kappa_std)
    # AR(1) kappa[t] = rho·kappa[t-1] + noise[t] in closed form; rho^-n <= e^(1/0.3) keeps it well conditioned
    decay = rho ** np.arange(n)  # (n,)
    kappa = decay * np.cumsum(noise / decay)  # (n,)
    theta = rng.uniform(0, 2 * np.pi) + np.cumsum(kappa * STEP)  # (n,)
    steps = STEP * np.stack([np.sin(theta), np.cos(theta)], 1)  # (n, 2)
    pts = np.cumsum(steps, 0) - steps[0]  # (n, 2)
    return pts - np.floor(pts.min(0) + 0.5) + 0.0  # rint(pts) >= 0


def _body(pts: np.ndarray, r: int, S: int) -> np.ndarray:
    """Mask (S, S) of a curve's pixels plus the (2r+1)² marker squares its two ends may carry."""
    pix = np.rint(pts).astype(np.int64)  # (n, 2)
    mask = np.zeros((S, S), bool)
    mask[pix[:, 0], pix[:, 1]] = True
    for y, x in pix[[0, -1]]:
        mask[max(y - r, 0):y + r + 1, max(x - r, 0):x + r + 1] = True
    return mask


def _place(rng: np.random.Generator, pts: np.ndarray, occupied_f: np.ndarray, S: int, margin: int):
    """Shift `pts` by a random integer offset keeping it `margin` inside the image and its body off the occupied
    pixels (given by their 2-D rfft `occupied_f`), or None."""
    h, w = np.rint(pts).astype(np.int64).max(0) + 1
    n_y, n_x = S - 2 * margin - h + 1, S - 2 * margin - w + 1  # number of admissible offsets per axis
    if n_y < 1 or n_x < 1:
        return None
    pts = pts + margin
    body = _body(pts, margin, S).astype(float)  # (S, S), placed at offset 0
    # overlap[oy, ox] = Σ body[y, x]·occupied[y + oy, x + ox]: a cross-correlation, via FFT
    overlap = np.fft.irfft2(occupied_f * np.conj(np.fft.rfft2(body)), s=(S, S))
    free = overlap[:n_y, :n_x] < 0.5  # (n_y, n_x)
    choices = np.flatnonzero(free)
    if len(choices) == 0:
        return None
    oy, ox = np.unravel_index(choices[rng.integers(len(choices))], free.shape)
    return pts + np.array([oy, ox])


def marker_stats(a, b, S: int) -> np.ndarray:
    """(distance between the two markers, their summed Chebyshev distance from the image centre)."""
    a, b = np.asarray(a, float), np.asarray(b, float)
    c = (S - 1) / 2
    return np.array([np.hypot(*(a - b)), np.abs(a - c).max() + np.abs(b - c).max()])


def draw_pathfinder(rng: np.random.Generator, S: int, positive: bool, target=None,
                    tol: float = 1.0, max_layouts: int = 400, dash=None, gap=None, n_dashes=None, n_curves=None,
                    marker=None):
    """One image uint8 (S, S) and its record: curves (list of (n, 2) pixel paths), endpoints, endpoint_curve.

    For a negative, `target` = marker_stats of a positive asks for markers as far apart and as far from the centre
    (each ± tol pixels); the closest layout found within `max_layouts` is used if none matches.
    """
    g = dict(GEOMETRY[S]) if S in GEOMETRY else {}
    for k, v in dict(dash=dash, gap=gap, n_dashes=n_dashes, n_curves=n_curves, marker=marker).items():
        if v is not None:
            g[k] = v
    if set(g) != {"dash", "gap", "n_dashes", "n_curves", "marker"}:
        raise ValueError(f"size {S} has no default geometry ({sorted(GEOMETRY)}): pass dash, gap, n_dashes, "
                         "n_curves and marker")
    if g["n_curves"] < 2:
        raise ValueError("n_curves must be >= 2 (negatives need two curves)")
    length = g["n_dashes"] * (g["dash"] + g["gap"]) - g["gap"]
    clear, r = clearance(g["gap"]), g["marker"]
    best = None
    for _ in range(max_layouts):
        curves, occupied = [], np.zeros((S, S), bool)
        for _c in range(g["n_curves"]):
            occupied_f = np.fft.rfft2(occupied.astype(float))
            for _try in range(20):
                pts = _place(rng, _curve_shape(rng, length), occupied_f, S, margin=r)
                if pts is None:
                    continue
                occupied |= _dilate(_body(pts, r, S), clear)
                curves.append(pts)
                break
            else:
                break
        if len(curves) < g["n_curves"]:
            continue
        ends = [np.rint(c[[0, -1]]).astype(np.int64) for c in curves]  # per curve (2, 2)
        if positive:  # both ends of a random curve
            i = int(rng.integers(g["n_curves"]))
            choice = (ends[i][0], ends[i][1], i, i, 0.0)
        else:  # a random pair of ends of two different curves among those matching the target (± tol)
            pairs = [(a, b, i, j, 0.0 if target is None else float(np.abs(marker_stats(a, b, S) - target).max()))
                     for i in range(g["n_curves"]) for j in range(i + 1, g["n_curves"])
                     for a in ends[i] for b in ends[j]]
            good = [q for q in pairs if q[4] <= tol]
            choice = good[rng.integers(len(good))] if good else min(pairs, key=lambda q: q[4])
        if best is None or choice[4] < best[1][4]:
            best = (curves, choice)
        if best[1][4] <= tol:
            break
    if best is None:
        raise ValueError(f"could not place {g['n_curves']} curves of length {length} px in a {S}×{S} image: "
                         "use fewer or shorter curves")
    curves, (a, b, ca, cb, _) = best
    if rng.random() < 0.5:  # marker order carries nothing
        a, b, ca, cb = b, a, cb, ca
    img = np.zeros((S, S), np.uint8)
    period = g["dash"] + g["gap"]
    for pts in curves:
        arc = np.arange(len(pts)) * STEP
        ink = np.rint(pts[(arc % period) <= g["dash"]]).astype(np.int64)  # dashes only
        img[ink[:, 0], ink[:, 1]] = 255
    for p in (a, b):
        img[p[0] - r:p[0] + r + 1, p[1] - r:p[1] + r + 1] = 255
    return img, dict(curves=curves, endpoints=np.stack([a, b]), endpoint_curve=np.array([ca, cb]))


CHUNK = 500  # images per independently seeded chunk: the data do not depend on the number of workers


def _generate_chunk(n: int, S: int, seed: int, split: int, chunk: int, tol: float, geometry: dict):
    rng = np.random.default_rng(np.random.SeedSequence([seed, split, S, 0x9A7F, chunk]))
    labels = (np.arange(n) % 2 == 0).astype(np.int64)  # 1 = connected; each negative follows its positive
    images = np.zeros((n, S, S), np.uint8)
    endpoints = np.zeros((n, 2, 2), np.int16)
    endpoint_curve = np.zeros((n, 2), np.int8)
    last_positive = None
    for i in range(n):
        img, rec = draw_pathfinder(rng, S, bool(labels[i]), target=last_positive, tol=tol * S / 32, **geometry)
        if labels[i]:
            last_positive = marker_stats(*rec["endpoints"], S)
        images[i], endpoints[i], endpoint_curve[i] = img, rec["endpoints"], rec["endpoint_curve"]
    return images, labels, endpoints, endpoint_curve


def generate_pathfinder(n: int, S: int, seed: int, split: int = 0, tol: float = 1.0, workers: int | None = None,
                        **geometry):
    """n balanced images (n, S, S) uint8, labels (n,), endpoints (n, 2, 2), endpoint_curve (n, 2).

    Chunks of CHUNK images are seeded independently and drawn in `workers` processes (default: all cores).
    """
    sizes = [min(CHUNK, n - c) for c in range(0, n, CHUNK)]
    jobs = [(m, S, seed, split, c, tol, geometry) for c, m in enumerate(sizes)]
    workers = min(len(jobs), workers or os.cpu_count() or 1)
    if workers > 1:
        with ProcessPoolExecutor(workers) as pool:
            parts = list(pool.map(_generate_chunk, *zip(*jobs)))
    else:
        parts = [_generate_chunk(*job) for job in jobs]
    images, labels, endpoints, endpoint_curve = (np.concatenate(a) for a in zip(*parts))
    order = np.random.default_rng(np.random.SeedSequence([seed, split, S, 0x5EED])).permutation(n)
    return images[order], labels[order], endpoints[order], endpoint_curve[order]


def pathfinder_task(name, *, profile, seed, root, **overrides) -> Task:
    """Generated Pathfinder as (S·S, 1) pixel sequences, 2 classes (1 = the markers are connected)."""
    S = SIZE_OF[name]
    defaults = {prof: dict(n_train=sizes[S][0], n_val=sizes[S][1], n_test=sizes[S][2], tol=1.0, cache=True,
                           workers=None, **GEOMETRY[S]) for prof, sizes in SPLIT_SIZES.items()}
    p = resolve_params(name, profile, defaults, overrides)
    geometry = {k: p[k] for k in GEOMETRY[S]}
    sets, mean, std = {}, None, None
    for split, key in enumerate(("train", "val", "test")):
        params = dict(geometry, S=S, n=p[f"n_{key}"], tol=p["tol"], seed=seed, split=split,
                      version=GENERATOR_VERSION)
        arrays = cached_arrays(root, f"pathfinder{S}", params, lambda: dict(zip(
            ("images", "labels", "endpoints", "endpoint_curve"),
            generate_pathfinder(p[f"n_{key}"], S, seed, split=split, tol=p["tol"], workers=p["workers"],
                                **geometry))),
            enabled=p["cache"])
        if mean is None:
            mean, std = arrays["images"].mean() / 255.0, arrays["images"].std() / 255.0
        sets[key] = ImageSequences(arrays["images"].reshape(-1, S * S, 1), arrays["labels"], [mean], [std])
        sets[key].record = dict(endpoints=arrays["endpoints"], endpoint_curve=arrays["endpoint_curve"])
    return Task(name, "classify", sets["train"], sets["val"], sets["test"], seq_len=S * S, n_classes=2, d_input=1,
                seed=seed, info=dict(profile=profile, params=p, source="generated", image_size=S))
