"""Every notebook executes in the smoke profile, and every stored notebook is clean and parametrised."""
import json
from pathlib import Path

import pytest

NOTEBOOKS = sorted((Path(__file__).resolve().parent.parent / "notebooks").glob("[0-9]*.ipynb"))


def _cells(path):
    return json.loads(path.read_text())["cells"]


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_stored_without_outputs_and_with_parameters_cell(path):
    code = [c for c in _cells(path) if c["cell_type"] == "code"]
    assert all(not c.get("outputs") and c.get("execution_count") is None for c in code), \
        f"{path.name} is stored with outputs: clear them (jupyter nbconvert --clear-output --inplace)"
    tagged = [c for c in code if "parameters" in c.get("metadata", {}).get("tags", [])]
    assert len(tagged) == 1, f"{path.name} needs exactly one cell tagged 'parameters'"
    source = "".join(tagged[0]["source"])
    for name in ("profile", "device", "seed", "results_dir"):
        assert f"{name} =" in source, f"{path.name}'s parameters cell lacks `{name}`"


@pytest.mark.notebook
@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_notebook_runs_in_smoke_profile(path, smoke_build):
    run = smoke_build.run(path)  # into one folder per session, which tests/test_book.py builds its book from
    assert run.status == "ok", f"{path.name} failed in the smoke profile at {run.error}"
