"""The notebook runner carries on past a failing notebook and names it; the results files round-trip."""
import json

import nbformat

from lconv import workbook
from lconv.results import Results, load_results, markdown_table


def _notebook(path, *sources):
    nb = nbformat.v4.new_notebook()
    params = nbformat.v4.new_code_cell('profile = "quick"\ndevice = "auto"\nseed = 0\nresults_dir = "."')
    params.metadata["tags"] = ["parameters"]
    nb.cells = [params] + [nbformat.v4.new_code_cell(s) for s in sources]
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
    assert (tmp_path / "out" / "notebooks" / "01_fails.ipynb").exists()  # the failed notebook's output is kept


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
