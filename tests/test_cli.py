"""The command-line entry point trains a classifier and a language model and resumes from its checkpoint."""
import pytest

from lconv import cli


@pytest.mark.parametrize("task,mixer", [("digits", "longconv"), ("kjv", "h3conv")])
def test_cli_trains_and_resumes(task, mixer, tmp_path, capsys):
    ckpt = tmp_path / "run.pt"
    argv = ["--task", task, "--profile", "smoke", "--mixer", mixer, "--d-model", "16", "--n-layers", "1",
            "--steps", "4", "--batch-size", "8", "--device", "cpu", "--ckpt", str(ckpt), "--quiet"]
    first = cli.main(argv)
    assert ckpt.exists() and len(first["train_loss"]) == 4
    again = cli.main(argv)  # finished run: loaded, not retrained
    assert again["train_loss"] == first["train_loss"]
    assert f"{task} / {mixer}:" in capsys.readouterr().out


def test_cli_rejects_an_unknown_mixer():
    with pytest.raises(ValueError, match="mixer"):
        cli.main(["--task", "digits", "--profile", "smoke", "--mixer", "rnn", "--steps", "1", "--quiet"])
