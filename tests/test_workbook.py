"""The notebook runner carries on past a failing notebook and names it (cell index of the source notebook), refuses
notebooks whose parameters it cannot inject, hides the kernel's TCP warning; the results files round-trip."""
import json

import nbformat
import pytest

from lconv import workbook
from lconv.results import Results, load_results, markdown_table

PARAMS = 'profile = "quick"\ndevice = "auto"\nseed = 0\nresults_dir = "."\nfigures_dir = "."'


def _notebook(path, *sources, params=PARAMS, tagged=True, before=()):
    """A notebook: markdown cells `before`, the parameters cell (tagged or not), then code cells `sources`."""
    nb = nbformat.v4.new_notebook()
    cell = nbformat.v4.new_code_cell(params)
    if tagged:
        cell.metadata["tags"] = ["parameters"]
    nb.cells = [nbformat.v4.new_markdown_cell(b) for b in before] + [cell]
    nb.cells += [nbformat.v4.new_code_cell(s) for s in sources]
    nbformat.write(nb, str(path))


def test_failing_notebook_is_reported_and_others_still_run(tmp_path, capsys):
    nbs = tmp_path / "nbs"
    nbs.mkdir()
    _notebook(nbs / "01_fails.ipynb", "x = 1", "raise ValueError('deliberate failure')")
    _notebook(nbs / "02_works.ipynb",
              "from lconv.results import Results\n"
              "Results('02_works', results_dir, profile=profile, device='cpu').add("
              "claim='a claim', metric='m', ours=1.5, paper=2.0, task='t')")
    code = workbook.main(["run", "--profile", "smoke", "--device", "cpu", "--notebooks", str(nbs),
                          "--out", str(tmp_path / "out")])
    captured = capsys.readouterr()
    assert code == 1
    assert "FAILED: 01_fails" in captured.err and "ValueError" in captured.err and "deliberate failure" in captured.err
    assert "cell" in captured.err
    runs = json.loads((tmp_path / "out" / "summary.json").read_text())
    assert [r["status"] for r in runs] == ["FAILED", "ok"]
    summary = (tmp_path / "out" / "summary.md").read_text()
    assert "| 02_works | a claim | t | m | 2 | 1.5 | smoke |" in summary
    assert summary.index("Claims ledger") < summary.index("Headline results")  # the ledger opens the summary
    assert (tmp_path / "out" / "claims.md").exists() and (tmp_path / "out" / "claims.json").exists()
    assert (tmp_path / "out" / "notebooks" / "01_fails.ipynb").exists()  # the failed notebook's output is kept


def test_notebooks_whose_parameters_cannot_be_injected_fail_and_cells_are_numbered_as_in_the_source(tmp_path, capfd):
    """Issue 14: a notebook with `profile = "quick"` in an untagged first cell, asked for smoke, used to run at quick
    and report ok. Now it, and one whose parameters cell lacks figures_dir, are FAILED with the fix and never run; a
    failure in the 4th cell (after a markdown cell and the parameters cell) is reported as cell 3, not as papermill's
    numbering with its injected cell; the runner's own values reach the notebook; no TCP warning is printed."""
    nbs = tmp_path / "nbs"
    nbs.mkdir()
    _notebook(nbs / "01_untagged.ipynb", "open('ran', 'w').write(profile)", tagged=False)
    _notebook(nbs / "02_missing.ipynb", "open('ran', 'w').write(profile)", params=PARAMS.replace('\nfigures_dir = "."', ""))
    _notebook(nbs / "03_fails.ipynb", "assert profile == 'smoke' and seed == 3, (profile, seed)",
              "raise RuntimeError('third code cell')", before=("# title",))
    _notebook(nbs / "04_works.ipynb", "assert (profile, device, seed) == ('smoke', 'cpu', 3)",
              "import pathlib; assert pathlib.Path(figures_dir).name == 'figures'")
    runs = workbook.run_all(nbs, tmp_path / "out", "smoke", device="cpu", seed=3)
    by_name = {r.notebook: r for r in runs}
    assert [r.status for r in runs] == ["FAILED", "FAILED", "FAILED", "ok"]
    assert "no cell is tagged `parameters`" in by_name["01_untagged"].error
    assert "tag the cell" in by_name["01_untagged"].error
    assert "does not define figures_dir" in by_name["02_missing"].error
    assert "cell 0" in by_name["02_missing"].error
    assert not (nbs / "ran").exists(), "a notebook whose parameters cannot be injected must not run"
    assert by_name["03_fails"].error == "cell 3: RuntimeError: third code cell"
    captured = capfd.readouterr()
    assert "without encryption" not in captured.out + captured.err


@pytest.mark.parametrize("source,problem", [
    (PARAMS, ""),
    (PARAMS.replace("seed = 0", "seed: int = 0"), ""),
    (PARAMS.replace("seed = 0", "# seed = 0"), "does not define seed"),
    (PARAMS.replace("device", "dev"), "does not define device"),
    ("profile = (", "is not valid Python"),
])
def test_check_parameters_cell(source, problem):
    nb = nbformat.v4.new_notebook()
    cell = nbformat.v4.new_code_cell(source)
    cell.metadata["tags"] = ["parameters"]
    nb.cells = [nbformat.v4.new_markdown_cell("x"), cell]
    index, message = workbook.check_parameters_cell(nb)
    assert index == 1 and (problem in message if problem else message == "")
    assert workbook._source_index(5, 1) == 4 and workbook._source_index(1, 1) == 1 and workbook._source_index(0, 1) == 0


def test_results_file_is_rewritten_after_every_row(tmp_path):
    res = Results("nb", tmp_path, profile="quick", device="cpu")
    res.add(claim="c1", metric="acc", ours=0.5)
    assert len(load_results(tmp_path)) == 1
    res.add(claim="c2", metric="acc", ours=0.7, paper=0.9)
    rows = load_results(tmp_path)
    assert [r["claim"] for r in rows] == ["c1", "c2"] and rows[1]["paper"] == 0.9
    assert rows[0]["device"].startswith("CPU") and rows[0]["profile"] == "quick"
    res.add(claim="c3", metric="acc", ours=0.8, profile="full", device="NVIDIA H100")  # a recorded number
    assert load_results(tmp_path)[2] | {"profile": "full", "device": "NVIDIA H100"} == load_results(tmp_path)[2]
    data = json.loads((tmp_path / "nb.json").read_text())
    assert {"device", "torch", "commit", "date"} <= set(data["provenance"])
    assert not list(tmp_path.glob(".*.tmp")), "temporary files must not be left behind"
    assert "| nb | c2 |" in markdown_table(rows)


def test_provenance_names_the_commit_or_the_one_given(monkeypatch):
    """LCONV_COMMIT names the code where the checkout's git does not (a copy sent to a GPU machine)."""
    from lconv.results import provenance

    prov = provenance("cpu")
    assert set(prov) >= {"device", "torch", "triton", "commit", "date"} and prov["commit"]
    monkeypatch.setenv("LCONV_COMMIT", "1234abc")
    assert provenance("cpu")["commit"] == "1234abc"
