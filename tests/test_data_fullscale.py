"""Full-scale loaders on tiny fixtures written in the real on-disk formats; missing data gives a clear error."""
import pickle

import numpy as np
import pytest
import torch

from lconv.data import get_task
from lconv.data.listops import VOCAB, decode_listops, evaluate_listops, generate_listops
from lconv.data.pathfinder import generate_pathfinder

# ----------------------------------------------------------------------------------------------------- CIFAR-10


def write_cifar10(folder, n_per_batch=6, seed=0):
    """cifar-10-batches-py: pickled dicts {'data': (N, 3072) uint8 rows R…G…B, 'labels': [...]} + batches.meta."""
    rng = np.random.default_rng(seed)
    d = folder / "cifar-10-batches-py"
    d.mkdir(parents=True)
    batches = {}
    for name in ["data_batch_1", "data_batch_2", "data_batch_3", "data_batch_4", "data_batch_5", "test_batch"]:
        data = rng.integers(0, 256, size=(n_per_batch, 3072), dtype=np.uint8)
        labels = [int(v) for v in rng.integers(0, 10, n_per_batch)]
        with open(d / name, "wb") as f:
            pickle.dump({"batch_label": name, "data": data, "labels": labels, "filenames": []}, f)
        batches[name] = (data, labels)
    with open(d / "batches.meta", "wb") as f:
        pickle.dump({"label_names": ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse",
                                     "ship", "truck"], "num_cases_per_batch": n_per_batch, "num_vis": 3072}, f)
    return batches


def test_cifar_reads_the_pickle_batches(tmp_path):
    batches = write_cifar10(tmp_path)
    task = get_task("cifar", profile="full", root=tmp_path, n_val=5)
    assert len(task.train) + len(task.val) == 30 and len(task.test) == 6
    assert task.seq_len == 1024 and task.d_input == 3 and task.n_classes == 10
    data, labels = batches["test_batch"]
    mean, std = np.array(task.info["mean"]), np.array(task.info["std"])
    x, y = task.test[2]
    assert x.shape == (1024, 3) and x.dtype == torch.float32 and int(y) == labels[2]
    pixels = (x.numpy() * std + mean) * 255  # undo the normalisation
    expect = data[2].reshape(3, 1024).T  # pixel t = (R[t], G[t], B[t])
    assert np.allclose(pixels, expect, atol=1e-3)
    gray = get_task("cifar_gray", profile="full", root=tmp_path, n_val=5)
    assert gray.d_input == 1 and gray.test[2][0].shape == (1024, 1)


def test_cifar_missing_names_the_fix(tmp_path):
    with pytest.raises(FileNotFoundError, match="cifar-10-python.tar.gz"):
        get_task("cifar", profile="full", root=tmp_path)


# -------------------------------------------------------------------------------------------------- LRA ListOps


def lra_source(tokens):
    """An LRA Source string: the expression with LRA's "(" ")" around partial applications (ignored)."""
    words = decode_listops(tokens).split()
    out = []
    for w in words:
        out += ["(", w] if w.startswith("[") else [w, ")"] if w != "]" else [w]
    return " ".join(out).replace(") ]", "]").replace("( (", "(")


def test_lra_listops_reads_the_tsv_files(tmp_path):
    d = tmp_path / "lra_release" / "listops-1000"
    d.mkdir(parents=True)
    expected = {}
    for i, split in enumerate(["train", "val", "test"]):
        tokens, labels, _ = generate_listops(12, i, min_len=5, max_len=60, seq_len=64, max_depth=4, max_args=4)
        lines = ["Source\tTarget"] + [f"{lra_source(t)}\t{y}" for t, y in zip(tokens, labels)]
        (d / f"basic_{split}.tsv").write_text("\n".join(lines) + "\n")
        expected[split] = (tokens, labels)
    task = get_task("lra_listops", profile="full", root=tmp_path, seq_len=64)
    assert (len(task.train), len(task.val), len(task.test)) == (12, 12, 12)
    assert task.vocab_size == len(VOCAB) and task.n_classes == 10 and task.info["n_truncated"] == 0
    for i in range(12):
        x, y = task.val[i]
        assert torch.equal(x, torch.as_tensor(expected["val"][0][i]).long())
        assert int(y) == expected["val"][1][i] == evaluate_listops(x.tolist())


# ----------------------------------------------------------------------------------------------------- LRA IMDB


def test_lra_imdb_reads_aclimdb(tmp_path):
    reviews = {}
    for split in ("train", "test"):
        for label, sub in ((1, "pos"), (0, "neg")):
            d = tmp_path / "aclImdb" / split / sub
            d.mkdir(parents=True)
            for i in range(5):
                text = f"{sub} review {i} of {split}: " + ("great " if label else "awful ") * (i + 1) + "é"
                (d / f"{i}_{7 if label else 2}.txt").write_text(text, encoding="utf-8")
                reviews[text.encode("utf-8")[:64]] = label
    task = get_task("lra_imdb", profile="full", root=tmp_path, seq_len=64, n_val=2)
    assert (len(task.train), len(task.val), len(task.test)) == (8, 2, 10)
    assert task.vocab_size == 256 and task.n_classes == 2
    for ds in (task.train, task.val, task.test):
        for i in range(len(ds)):
            x, y = ds[i]
            raw = bytes(x[x != 0].tolist())
            assert reviews[raw] == int(y)


# ------------------------------------------------------------------------------------------------------ LRA AAN


def test_lra_aan_reads_the_tsv_files(tmp_path):
    d = tmp_path / "lra_release" / "tsv_data"
    d.mkdir(parents=True)
    for split in ("train", "eval", "test"):
        rows = [f"{float(i % 2)}\tpaper{i}a\tpaper{i}b\tfirst text {i}\tsecond text {i} longer" for i in range(6)]
        (d / f"new_aan_pairs.{split}.tsv").write_text("\n".join(rows) + "\n")
    task = get_task("lra_aan", profile="full", root=tmp_path, doc_len=32)
    assert (len(task.train), len(task.val), len(task.test)) == (6, 6, 6) and task.seq_len == 64
    x, y = task.test[3]
    assert int(y) == 1 and task.info["doc_len"] == 32
    assert bytes(x[:32][x[:32] != 0].tolist()) == b"first text 3"
    assert bytes(x[32:][x[32:] != 0].tolist()) == b"second text 3 longer"


# ----------------------------------------------------------------------------------------------- LRA Pathfinder


def test_lra_pathfinder_reads_images_and_metadata(tmp_path):
    Image = pytest.importorskip("PIL.Image")
    d = tmp_path / "lra_release" / "pathfinder32" / "curv_contour_length_14"
    images, labels, _, _ = generate_pathfinder(20, 32, seed=0)
    (d / "metadata").mkdir(parents=True)
    lines = {0: [], 1: []}
    for i, (img, y) in enumerate(zip(images, labels)):
        sub = f"imgs/{i // 10}"
        (d / sub).mkdir(parents=True, exist_ok=True)
        Image.fromarray(img).save(d / sub / f"sample_{i % 10}.png")
        lines[i // 10].append(f"{sub} sample_{i % 10}.png {i % 10} {y} 1.5 2 7")
    for k, rows in lines.items():
        (d / "metadata" / f"{k}.npy").write_text("\n".join(rows) + "\n")
    task = get_task("lra_pathfinder", profile="full", root=tmp_path)
    assert (len(task.train), len(task.val), len(task.test)) == (16, 2, 2)
    assert task.seq_len == 1024 and task.d_input == 1 and task.n_classes == 2
    seen = 0
    for ds in (task.train, task.val, task.test):
        for i in range(len(ds)):
            x, y = ds[i]
            assert x.shape == (1024, 1)
            k = int(ds.files[i].parent.name) * 10 + int(ds.files[i].stem.split("_")[1])
            assert np.array_equal(ds.pixels(i), images[k]) and int(y) == labels[k]
            seen += 1
    assert seen == 20


# -------------------------------------------------------------------------------------------------- WikiText-103


def test_wikitext103_reads_the_raw_files(tmp_path):
    d = tmp_path / "wikitext-103-raw"
    d.mkdir()
    text = {"train": " = Valkyria Chronicles III = \n\n Senjō no Valkyria 3 : Unrecorded Chronicles \n" * 20,
            "valid": " = Robert Boulter = \n\n Robert Boulter is an English film actor . \n" * 5,
            "test": " = Tower Building of the Little Rock Arsenal = \n" * 5}
    for k, v in text.items():
        (d / f"wiki.{k}.raw").write_text(v, encoding="utf-8")
    task = get_task("wikitext103", profile="full", root=tmp_path, seq_len=32)
    assert task.kind == "lm" and task.vocab_size == 256
    stream = text["valid"].encode("utf-8")
    assert len(task.val) == (len(stream) - 1) // 32
    x, y = task.val[1]
    assert bytes(x.tolist()) == stream[32:64] and bytes(y.tolist()) == stream[33:65]
    with pytest.raises(ValueError, match="tokens"):
        get_task("wikitext103", profile="full", root=tmp_path, tokens="words")


@pytest.mark.parametrize("name, hint", [("lra_listops", "long-range-arena"), ("lra_imdb", "aclImdb_v1.tar.gz"),
                                        ("lra_aan", "long-range-arena"), ("lra_pathfinder", "long-range-arena"),
                                        ("lra_path128", "long-range-arena"), ("wikitext103", "wikitext-103")])
def test_missing_full_scale_data_names_the_fix(name, hint, tmp_path):
    with pytest.raises(FileNotFoundError, match=hint) as err:
        get_task(name, profile="full", root=tmp_path)
    assert "LCONV_DATA" in str(err.value)
