"""`make book`: a static HTML book of the executed notebooks of the last `make reproduce`, readable offline.

    python -m lconv.book                     # build/notebooks/*.ipynb + build/claims.md -> build/book/index.html
    python -m lconv.book --build DIR --out DIR2

Pages: `index.html` is the claims ledger (build/claims.md, lconv.claims; written first if missing), then one page
per executed notebook in name order, each with a line saying its profile, device, run time and date (from
papermill's metadata in the executed notebook and the notebook's results file), and previous/next links.

Built with nbconvert's HTMLExporter (already pinned for papermill and JupyterLab: nothing new to install) and a small
template, `lconv/book_template/lconv_book`, that extends nbconvert's `lab` template and removes its CDN scripts
(require.js, mermaid, widgets). Figures are embedded in the pages as data URIs. Math is typeset in the browser by
MathJax 2.7 copied from Debian's `libjs-mathjax` (+ `fonts-mathjax`, installed by env/install-browser.sh) into
`_static/mathjax/` of the book, so nothing is fetched from the network at view time.
Errors: FileNotFoundError (no executed notebooks: run `make reproduce`; no MathJax: run env/install-browser.sh).
"""
from __future__ import annotations

import argparse
import datetime as _dt
import html
import json
import shutil
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
BUILD = REPO / "build"
TEMPLATE_DIR = Path(__file__).resolve().parent / "book_template"
TEMPLATE = "lconv_book"
MATHJAX_DIR = Path("/usr/share/javascript/mathjax")  # Debian's libjs-mathjax (MathJax 2.7)
# What the CommonHTML output with the TeX-AMS_CHTML-full config loads (about 1.5 MB of the package's 54 MB).
MATHJAX_PARTS = ("MathJax.js", "config/TeX-AMS_CHTML-full.js", "config/Safe.js", "extensions", "jax/input/TeX",
                 "jax/output/CommonHTML", "jax/element", "localization/en", "fonts/HTML-CSS/TeX/woff")
MATHJAX_URL = "_static/mathjax/MathJax.js?config=TeX-AMS_CHTML-full,Safe"


def copy_mathjax(dest: Path, source: Path = MATHJAX_DIR) -> Path:
    """Copy the parts of MathJax the book uses from `source` to `dest` (symlinks followed: Debian links the fonts
    from fonts-mathjax). Raises FileNotFoundError naming the packages to install."""
    if not (source / "MathJax.js").exists():
        raise FileNotFoundError(f"MathJax is not installed ({source}/MathJax.js is missing): run "
                                "`bash env/install-browser.sh` (Debian packages libjs-mathjax, fonts-mathjax)")
    if (dest / "MathJax.js").exists():
        return dest
    tmp = dest.with_name(dest.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    for part in MATHJAX_PARTS:
        src = source / part
        if src.is_dir():
            shutil.copytree(src, tmp / part, symlinks=False, dirs_exist_ok=True)
        elif src.exists():
            (tmp / part).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(src, tmp / part)
        else:
            raise FileNotFoundError(f"{src} is missing: reinstall libjs-mathjax and fonts-mathjax")
    tmp.replace(dest)
    return dest


def _title(nb, default: str) -> str:
    """The first markdown heading of a notebook, without its #s."""
    for cell in nb.cells:
        if cell.cell_type == "markdown":
            for line in cell.source.splitlines():
                if line.startswith("#"):
                    return line.lstrip("#").strip()
    return default


def run_line(nb, results_file: Path) -> str:
    """'profile quick · device CPU (2 cores, x86_64) · ran 52 s on 2026-11-30 18:50 UTC · commit abc123' from
    papermill's metadata and the notebook's results file (either may be missing)."""
    pm = nb.metadata.get("papermill", {})
    params = pm.get("parameters", {})
    prov = {}
    if results_file.exists():
        try:
            prov = json.loads(results_file.read_text()).get("provenance", {})
        except (OSError, json.JSONDecodeError):
            prov = {}
    parts = [f"profile {params.get('profile', '?')}", f"device {prov.get('device') or params.get('device', '?')}"]
    if pm.get("duration") is not None:
        when = str(pm.get("start_time", ""))[:16].replace("T", " ")
        parts.append(f"ran {pm['duration']:.0f} s" + (f" from {when} UTC" if when else ""))
    if pm.get("exception"):
        parts.append("FAILED: see the cell with the error")
    if prov.get("commit"):
        parts.append(f"commit {str(prov['commit'])[:12]}")
    return " · ".join(parts)


def _shown(path: Path) -> str:
    """`path` relative to the repository when inside it (build/claims.md), else as it is."""
    try:
        return str(path.resolve().relative_to(REPO))
    except ValueError:
        return str(path)


def build_book(build=BUILD, out=None, mathjax_source: Path = MATHJAX_DIR) -> Path:
    """Write the book of `build` (its notebooks/, results/, claims.md) to `out` (default build/book); return the
    path of index.html. Raises FileNotFoundError when `build` has no executed notebooks."""
    import nbformat
    from nbconvert import HTMLExporter

    build = Path(build)
    out = Path(out) if out else build / "book"
    notebooks = sorted((build / "notebooks").glob("[0-9]*.ipynb"))
    if not notebooks:
        raise FileNotFoundError(f"no executed notebooks in {build / 'notebooks'}: run `make reproduce` first")
    if not (build / "claims.md").exists():
        from lconv.claims import write_ledger

        write_ledger(build)
    out.mkdir(parents=True, exist_ok=True)
    copy_mathjax(out / "_static" / "mathjax", mathjax_source)

    ledger = nbformat.v4.new_notebook()
    ledger.cells = [nbformat.v4.new_markdown_cell((build / "claims.md").read_text())]
    ledger.metadata["title"] = "Claims ledger — lconv"
    pages = [{"href": "index.html", "title": "Claims ledger", "nb": ledger,
              "run_line": f"the ledger of this build ({_shown(build / 'claims.md')}), written by lconv.claims from "
                          f"{_shown(build / 'results')} and the recordings in results/"}]
    for path in notebooks:
        nb = nbformat.read(str(path), as_version=4)
        nb.metadata["title"] = f"{path.stem} — lconv"
        title = _title(nb, path.stem)
        title = title if title.startswith(path.stem[:2]) else f"{path.stem[:2]} {title}"
        pages.append({"href": f"{path.stem}.html", "title": title, "nb": nb,
                      "run_line": f"{path.name}: " + run_line(nb, build / "results" / f"{path.stem}.json")})

    exporter = HTMLExporter(template_name=TEMPLATE, extra_template_basedirs=[str(TEMPLATE_DIR)],
                            mathjax_url=MATHJAX_URL)
    nav = [{"href": p["href"], "title": p["title"]} for p in pages]
    for i, page in enumerate(pages):
        book = {"pages": nav, "current": page["href"], "run_line": page["run_line"],
                "prev": nav[i - 1] if i > 0 else None, "next": nav[i + 1] if i + 1 < len(nav) else None}
        body, _ = exporter.from_notebook_node(page["nb"], resources={"book": book})
        (out / page["href"]).write_text(body, encoding="utf-8")
    stamp = _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")
    (out / "book.json").write_text(json.dumps({"built": stamp, "from": str(build), "pages": nav}, indent=2) + "\n")
    return out / "index.html"


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--build", type=Path, default=BUILD, help="the run's folder (default build/)")
    parser.add_argument("--out", type=Path, default=None, help="where the book goes (default BUILD/book)")
    args = parser.parse_args(argv)
    start = time.perf_counter()
    try:
        index = build_book(args.build, args.out)
    except FileNotFoundError as err:
        print(f"lconv.book: {err}", file=sys.stderr)
        return 1
    n = len(list(index.parent.glob("*.html")))
    print(f"wrote {n} pages to {index.parent} in {time.perf_counter() - start:.0f} s; open {html.escape(str(index))}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
