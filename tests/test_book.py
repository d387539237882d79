"""The HTML book in a real browser (headless Chromium): the checks fail on a broken image, raw math, a broken link
and a console error (tiny fixture pages), pass on a clean page, and pass on every page of a book built from the
notebooks executed in the smoke profile (shared with tests/test_notebooks.py), whose first page is the ledger."""
import base64
import os
import shutil
from pathlib import Path

import pytest

from lconv.book import MATHJAX_DIR, MATHJAX_URL, build_book, copy_mathjax
from lconv.browser import check_site

REPO = Path(__file__).resolve().parent.parent
NOTEBOOKS = sorted((REPO / "notebooks").glob("[0-9]*.ipynb"))
# Skipped only outside CI when the Debian packages are missing (a plain `pytest` without `make setup`); in CI the
# test runs and fails with the message that names env/install-browser.sh.
needs_browser = pytest.mark.skipif(
    not (shutil.which("chromium") and (MATHJAX_DIR / "MathJax.js").exists()) and not os.environ.get("CI"),
    reason="chromium / libjs-mathjax missing: `make setup` installs them (env/install-browser.sh)")

PNG = base64.b64encode(bytes.fromhex(  # a 1×1 PNG
    "89504e470d0a1a0a0000000d4948445200000001000000010806000000"
    "1f15c4890000000d49444154789c6360f8cfc0f01f0005000201d2d1ce0d0000000049454e44ae426082")).decode()
HEAD = f'<html><head><link rel="icon" href="data:,"><script src="{MATHJAX_URL}"></script></head><body>'


def _site(tmp_path, pages: dict) -> Path:
    copy_mathjax(tmp_path / "_static" / "mathjax")
    for name, body in pages.items():
        (tmp_path / name).write_text(HEAD + body + "</body></html>")
    return tmp_path


@needs_browser
@pytest.mark.timeout(300)
def test_checks_fail_on_broken_pages_and_pass_on_a_clean_one(tmp_path):
    site = _site(tmp_path, {
        "index.html": (f'<p>Euler: $$e^{{i\\pi}} + 1 = 0$$ and inline \\(x^2\\).</p>'
                       f'<img src="data:image/png;base64,{PNG}"><a href="broken_image.html">next</a>'),
        "broken_image.html": '<p>a figure</p><img src="figures/missing.png">',
        "broken_link.html": '<a href="nowhere.html">a page that does not exist</a>',
        "console_error.html": '<script>console.error("deliberate"); undefined_function();</script>',
    })
    (site / "raw_math.html").write_text('<html><head><link rel="icon" href="data:,"></head><body>'  # no MathJax
                                        '<p>not typeset: $$\\sum_i x_i$$</p></body></html>')
    report = check_site(site)
    by_page = {p.page: p for p in report.pages}
    assert by_page["index.html"].problems == [] and by_page["index.html"].math == 2
    assert any("image did not load: figures/missing.png" in m for m in by_page["broken_image.html"].problems)
    assert any(m.startswith("unrendered math") for m in by_page["raw_math.html"].problems)
    assert any("broken link: nowhere.html" in m for m in by_page["broken_link.html"].problems)
    msgs = by_page["console_error.html"].problems
    assert any("deliberate" in m for m in msgs) and any("undefined_function" in m for m in msgs)


@needs_browser
@pytest.mark.notebook
@pytest.mark.timeout(1800)
def test_smoke_book_opens_cleanly_in_chromium(smoke_build):
    runs = [smoke_build.run(p) for p in NOTEBOOKS]  # run by tests/test_notebooks.py already, when it ran first
    from lconv.claims import write_ledger

    write_ledger(smoke_build.out)
    index = build_book(smoke_build.out)
    pages = sorted(p.name for p in index.parent.glob("*.html"))
    assert pages == sorted(["index.html"] + [f"{r.notebook}.html" for r in runs])
    shot = REPO / "build" / "book-smoke-first-page.png"
    report = check_site(index.parent, screenshot=shot)
    assert report.problems == [], "\n".join(report.problems)
    assert shot.stat().st_size > 10_000
    first = index.read_text()
    assert "Claims ledger" in first and "profile smoke" in (index.parent / f"{runs[0].notebook}.html").read_text()
    assert sum(p.math for p in report.pages) > 20 and sum(p.images for p in report.pages) > 5
