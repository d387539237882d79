"""Offline real data: Fashion-MNIST from the Debian package, the KJV text from the `bible` program."""
import re
import shutil

import numpy as np
import pytest
import torch

import lconv.data.fashion_mnist as fm
import lconv.data.kjv as kjv
from lconv.data import get_task

HAVE_FASHION = (fm.DEBIAN_DIR / "train-images-idx3-ubyte.gz").exists()
HAVE_BIBLE = shutil.which("bible") is not None


@pytest.fixture(scope="module")
def root(tmp_path_factory):
    return tmp_path_factory.mktemp("lconv_data")


@pytest.mark.skipif(not HAVE_FASHION, reason="Debian package dataset-fashion-mnist not installed (make data)")
def test_fashion_mnist_full_sizes_and_permutation(root):
    s = get_task("smnist", profile="full", root=root)
    p = get_task("psmnist", profile="full", root=root, seed=1)
    assert len(s.train) + len(s.val) == 60000 and len(s.val) == 5000 and len(s.test) == 10000
    assert s.seq_len == 784 and s.d_input == 1 and s.n_classes == 10
    x, y = s.train[0]
    assert x.shape == (784, 1) and x.dtype == torch.float32
    assert set(s.train.labels.tolist()) == set(range(10)) and len(s.test.labels.unique()) == 10
    # train and val are disjoint parts of the 60000 training images
    assert len(s.train.images) + len(s.val.images) == 60000
    # psmnist is smnist with one fixed permutation of the pixels
    perm = torch.as_tensor(p.info["perm"])
    assert sorted(perm.tolist()) == list(range(784)) and not torch.equal(perm, torch.arange(784))
    for i in (0, 17):
        xs, ys = s.train[i]
        xp, yp = p.train[i]
        assert torch.allclose(xp, xs[perm]) and ys == yp
    assert not np.array_equal(p.info["perm"], get_task("psmnist", profile="smoke", root=root, seed=2).info["perm"])
    # normalised on the training split
    xs = torch.stack([s.train[i][0] for i in range(0, 55000, 55)])
    assert abs(xs.mean().item()) < 0.05 and abs(xs.std().item() - 1) < 0.05


@pytest.mark.skipif(not HAVE_FASHION, reason="Debian package dataset-fashion-mnist not installed (make data)")
def test_fashion_mnist_profiles_subsample(root):
    t = get_task("smnist", profile="smoke", root=root)
    assert (len(t.train), len(t.val), len(t.test)) == (256, 128, 128)
    t = get_task("smnist", profile="quick", root=root, n_train=1000)
    assert len(t.train) == 1000


def test_fashion_mnist_missing_names_the_fix(tmp_path, monkeypatch):
    monkeypatch.setattr(fm, "DEBIAN_DIR", tmp_path / "nowhere")
    monkeypatch.delenv("LCONV_FASHION_MNIST", raising=False)
    with pytest.raises(FileNotFoundError, match="dataset-fashion-mnist"):
        get_task("smnist", profile="smoke", root=tmp_path)


@pytest.mark.skipif(not HAVE_BIBLE, reason="Debian package bible-kjv not installed (make data)")
def test_kjv_corpus_size_and_no_verse_markers(root):
    books, verses = kjv.kjv_corpus(root)
    text = (root / "kjv" / "kjv.txt").read_text()
    assert 4.0e6 < len(text.encode()) < 4.5e6  # 4.14 MB without references (4.40 MB with them)
    assert len(verses) == 31102 and len(set(books)) == 66 and books[0] == "Ge" and books[-1] == "Rev"
    assert not re.search(r"\d", text)  # no "Ge1:1" style references (the KJV text itself has no digits)
    assert verses[0].startswith("In the beginning God created the heaven and the earth.")
    assert verses[-1].startswith("The grace of our Lord Jesus Christ be with you all. Amen.")


@pytest.mark.skipif(not HAVE_BIBLE, reason="Debian package bible-kjv not installed (make data)")
@pytest.mark.parametrize("tokens", ["byte", "char"])
def test_kjv_lm_task(root, tokens):
    t = get_task("kjv", profile="smoke", root=root, tokens=tokens)
    assert t.kind == "lm" and t.seq_len == 64 and (len(t.train), len(t.val), len(t.test)) == (512, 64, 64)
    assert t.vocab_size == (256 if tokens == "byte" else 63)
    x, y = t.train[5]
    x_next, _ = t.train[6]
    assert x.dtype == y.dtype == torch.int64 and x.shape == y.shape == (64,)
    assert torch.equal(y[:-1], x[1:]) and y[-1] == x_next[0]  # y = x shifted by one along the stream
    n = t.info["n_chars"]
    assert n["train"] + n["val"] + n["test"] == len((root / "kjv" / "kjv.txt").read_text())
    assert 0.03 < n["val"] / n["train"] < 0.06 and 0.03 < n["test"] / n["train"] < 0.06
    if tokens == "byte":
        ruth_1_1 = "Now it came to pass in the days when the judges ruled"  # the first validation book
        assert bytes(t.val[0][0].tolist()).decode().startswith(ruth_1_1)


def test_kjv_parser_strips_references():
    books, verses = kjv.parse_bible_output(["Ge1:1 In the beginning.", "1Sm3:10 And the LORD came.", "",
                                            "Rev22:21 Amen."])
    assert books == ["Ge", "1Sm", "Rev"] and verses == ["In the beginning.", "And the LORD came.", "Amen."]
    with pytest.raises(ValueError, match="no verse reference"):
        kjv.parse_bible_output(["no reference here"])


def test_kjv_missing_names_the_fix(tmp_path, monkeypatch):
    monkeypatch.setenv("PATH", str(tmp_path))  # no `bible` program
    with pytest.raises(FileNotFoundError, match="bible-kjv"):
        get_task("kjv", profile="smoke", root=tmp_path)
