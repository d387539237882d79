"""Generated tasks: deterministic from a seed, balanced, the specified lengths, labels that agree with an
independent evaluator / the generator's record, and no ink shortcut in Pathfinder."""
import numpy as np
import pytest
import torch

from lconv.data import IGNORE_INDEX, get_task
from lconv.data.listops import (CLOSE, OPS, PAD, TOKEN_ID, VOCAB, decode_listops, evaluate_listops,
                                generate_listops, tokenize_listops)
from lconv.data.pathfinder import (bridge_radius, clearance, draw_pathfinder, generate_pathfinder, marker_stats)
from lconv.data.recall import associative_recall, induction_head

# ------------------------------------------------------------------------------------------------------ ListOps
LISTOPS = dict(min_len=20, max_len=200, seq_len=256, max_depth=6, max_args=6)


def test_listops_same_seed_same_data_other_seed_other_data():
    a = generate_listops(200, 7, **LISTOPS)
    b = generate_listops(200, 7, **LISTOPS)
    c = generate_listops(200, 8, **LISTOPS)
    assert all(np.array_equal(u, v) for u, v in zip(a, b))
    assert not np.array_equal(a[0], c[0])


def test_listops_labels_equal_the_independent_evaluator_and_are_balanced():
    tokens, labels, lengths = generate_listops(500, 0, **LISTOPS)
    assert np.bincount(labels, minlength=10).tolist() == [50] * 10
    for t, y, n in zip(tokens, labels, lengths):
        assert evaluate_listops(t) == y
        assert evaluate_listops(decode_listops(t).split()) == y  # through the text form as well
    assert lengths.min() >= LISTOPS["min_len"] and lengths.max() <= LISTOPS["max_len"]
    # padding exactly after the expression, nothing but padding there
    n_nonpad = (tokens != PAD).sum(1)
    assert np.array_equal(n_nonpad, lengths)
    assert all((t[:n] != PAD).all() for t, n in zip(tokens, lengths))
    # the grammar: every expression opens with an operator and brackets balance
    assert np.isin(tokens[:, 0], OPS).all()
    opens, closes = np.isin(tokens, OPS).sum(1), (tokens == CLOSE).sum(1)
    assert np.array_equal(opens, closes)


def test_listops_evaluator_on_hand_examples():
    assert evaluate_listops("[MAX 2 9 [MIN 4 7 ] 0 ]".split()) == 9
    assert evaluate_listops("[SM 5 6 [MED 1 2 3 4 ] ]".split()) == (5 + 6 + 2) % 10  # median 2.5 → 2
    assert evaluate_listops("( ( [MIN 3 ) 8 ] )".split()) == 3
    assert evaluate_listops(["7"]) == 7
    with pytest.raises(ValueError):
        evaluate_listops("[MAX 2 9".split())
    with pytest.raises(ValueError):
        tokenize_listops("[MAX 2 X ]")
    assert tokenize_listops("( [MIN 3 ) 8 ]") == [TOKEN_ID["[MIN"], 4, 9, TOKEN_ID["]"]]


def test_listops_full_profile_lengths_reach_2k():
    tokens, labels, lengths = generate_listops(20, 0, min_len=500, max_len=2000, seq_len=2048)
    assert tokens.shape == (20, 2048) and lengths.min() >= 500 and lengths.max() <= 2000
    assert all(evaluate_listops(t) == y for t, y in zip(tokens, labels))


def test_listops_task_caches_atomically(tmp_path):
    t1 = get_task("listops", profile="smoke", seed=1, root=tmp_path)
    files = list((tmp_path / "generated").glob("listops-*.npz"))
    assert len(files) == 3 and not list((tmp_path / "generated").glob("*.tmp"))
    t2 = get_task("listops", profile="smoke", seed=1, root=tmp_path)  # from the cache
    assert torch.equal(t1.train.tokens, t2.train.tokens)
    assert t1.vocab_size == len(VOCAB) == 16 and t1.seq_len == 128
    x, y = t1.val[0]
    assert evaluate_listops(x.tolist()) == int(y)


# --------------------------------------------------------------------------------------------------- Pathfinder
N_PF = 800


@pytest.fixture(scope="module")
def pf32():
    return generate_pathfinder(N_PF, 32, seed=0, workers=1)


def test_pathfinder_same_seed_same_data(monkeypatch):
    import lconv.data.pathfinder as pf

    monkeypatch.setattr(pf, "CHUNK", 4)  # several chunks: the data must not depend on the number of workers
    a = generate_pathfinder(10, 32, seed=5, workers=1)
    b = generate_pathfinder(10, 32, seed=5, workers=2)
    c = generate_pathfinder(10, 32, seed=6, workers=1)
    assert all(np.array_equal(u, v) for u, v in zip(a, b))
    assert not np.array_equal(a[0], c[0])


def test_pathfinder_balanced_and_labels_agree_with_the_record(pf32):
    images, labels, endpoints, endpoint_curve = pf32
    assert images.shape == (N_PF, 32, 32) and images.dtype == np.uint8
    assert labels.sum() == N_PF // 2
    assert np.array_equal(labels, (endpoint_curve[:, 0] == endpoint_curve[:, 1]).astype(np.int64))
    rows = np.arange(N_PF)
    for m in (0, 1):  # a full marker square around each recorded endpoint
        for dy in (-1, 0, 1):
            for dx in (-1, 0, 1):
                assert (images[rows, endpoints[:, m, 0] + dy, endpoints[:, m, 1] + dx] == 255).all()


def test_pathfinder_markers_connected_exactly_when_positive(pf32):
    ndimage = pytest.importorskip("scipy.ndimage")
    images, labels, endpoints, _ = pf32
    b = bridge_radius(1)  # 32×32 dashes have 1-pixel gaps
    for img, y, e in zip(images[:300], labels[:300], endpoints[:300]):
        ink = ndimage.binary_dilation(img > 0, np.ones((2 * b + 1, 2 * b + 1)))  # join the dashes
        comp, n = ndimage.label(ink, np.ones((3, 3)))
        assert n == 3  # the three curves stay apart
        assert (comp[tuple(e[0])] == comp[tuple(e[1])]) == bool(y)


def test_pathfinder_record_matches_the_drawn_curves():
    rng = np.random.default_rng(0)
    for positive in (True, False, True, False):
        img, rec = draw_pathfinder(rng, 32, positive, target=marker_stats([5, 5], [25, 20], 32))
        for m, c in zip(rec["endpoints"], rec["endpoint_curve"]):
            ends = np.rint(rec["curves"][c][[0, -1]]).astype(int)
            assert (ends == m).all(1).any()  # each marker sits on an end of its recorded curve
        # distinct curves keep their distance (Chebyshev) so they never merge
        pix = [np.rint(c).astype(int) for c in rec["curves"]]
        for i in range(len(pix)):
            for j in range(i + 1, len(pix)):
                d = np.abs(pix[i][:, None] - pix[j][None]).max(-1).min()
                assert d > clearance(1)
        assert (rec["endpoint_curve"][0] == rec["endpoint_curve"][1]) == positive


@pytest.mark.parametrize("S", [64, 128, 256])
def test_pathfinder_larger_sizes(S):
    images, labels, endpoints, endpoint_curve = generate_pathfinder(2, S, seed=0)
    assert images.shape == (2, S, S) and sorted(labels.tolist()) == [0, 1]
    assert np.array_equal(labels, (endpoint_curve[:, 0] == endpoint_curve[:, 1]).astype(np.int64))


def test_pathfinder_has_no_ink_or_marker_geometry_shortcut(pf32):
    sklearn = pytest.importorskip("sklearn")  # noqa: F841
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import cross_val_score

    images, labels, endpoints, _ = pf32
    ink = images.reshape(N_PF, -1) / 255.0
    e = endpoints.astype(float)
    centre = np.abs(e - 15.5).max(2)  # (N, 2) Chebyshev distance of each marker from the centre
    features = {
        "ink": ink.sum(1, keepdims=True),
        "row/col ink": np.concatenate([images.sum(1), images.sum(2)], 1) / 255.0,
        "marker geometry": np.stack([np.hypot(*(e[:, 0] - e[:, 1]).T), centre.min(1), centre.max(1)], 1),
    }
    for name, f in features.items():
        f = (f - f.mean(0)) / (f.std(0) + 1e-9)
        acc = cross_val_score(LogisticRegression(C=0.1, max_iter=2000), f, labels, cv=4).mean()
        assert acc < 0.58, f"{name} features predict the label ({acc:.3f}): a shortcut"


def test_pathfinder_task_shapes(tmp_path):
    task = get_task("pathfinder32", profile="smoke", root=tmp_path, n_train=40, n_val=10, n_test=10)
    assert task.seq_len == 1024 and task.d_input == 1 and task.n_classes == 2
    x, y = task.train[0]
    assert x.shape == (1024, 1) and x.dtype == torch.float32
    rec = task.train.record
    assert np.array_equal(task.train.labels.numpy(), rec["endpoint_curve"][:, 0] == rec["endpoint_curve"][:, 1])


# ------------------------------------------------------------------------------------------------------- Recall
def test_associative_recall_answers_and_balance():
    seqs, answers = associative_recall(400, 0, n_pairs=12, n_keys=8, n_values=8)
    assert seqs.shape == (400, 25) and np.bincount(answers, minlength=8).tolist() == [50] * 8
    for s, a in zip(seqs, answers):
        keys, values, q = s[0:-1:2], s[1:-1:2] - 8, s[-1]
        assert (keys < 8).all() and (values >= 0).all() and q in keys
        assert set(values[keys == q]) == {a}  # the query's value, the same wherever it appears
        for k in set(keys.tolist()):
            assert len(set(values[keys == k].tolist())) == 1  # one value per key
    again = associative_recall(400, 0, n_pairs=12, n_keys=8, n_values=8)
    assert np.array_equal(seqs, again[0])


def test_induction_head_answers_and_balance():
    seqs, answers = induction_head(300, 0, seq_len=40, n_tokens=6)
    assert seqs.shape == (300, 40) and np.bincount(answers, minlength=6).tolist() == [50] * 6
    for s, a in zip(seqs, answers):
        where = np.flatnonzero(s == 6)
        assert len(where) == 2 and where[1] == 39  # once inside, once at the end
        assert s[where[0] + 1] == a
    assert np.array_equal(seqs, induction_head(300, 0, seq_len=40, n_tokens=6)[0])


@pytest.mark.parametrize("name", ["assoc_recall", "induction"])
def test_recall_tasks_lm_and_classify_modes(name, tmp_path):
    lm = get_task(name, profile="smoke", root=tmp_path, mode="lm")
    cl = get_task(name, profile="smoke", root=tmp_path, mode="classify")
    x, y = lm.train[0]
    xc, yc = cl.train[0]
    assert torch.equal(x, xc) and x.shape == y.shape == (lm.seq_len,)
    assert torch.equal(y[:-1], torch.full_like(y[:-1], IGNORE_INDEX))  # only the answer is scored
    assert int(y[-1]) == int(yc) + lm.info["answer_offset"]
    assert cl.kind == "classify" and lm.kind == "lm" and lm.n_classes is None
