"""The house rules, read from the code (ast, nothing imported): imports run one way, and each idea is written once.

- No import circle among the modules of lconv/ and kernels/ (function-local imports count too).
- lconv reaches kernels through one door, lconv/backend.py; kernels imports only lconv's bottom floor.
- One definition each of: the profile list, the backend vocabulary, the FFT-size rule, the atomic file writer, the
  paper's numbers (lconv/paper.py).
- Notebooks only import: no verdict prose chosen by if/else, no pasted paper numbers, no stored outputs.
"""
from __future__ import annotations

import ast
import json
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
PACKAGES = ("lconv", "kernels")
DOOR = "lconv.backend"
# What kernels may import from lconv: the reference maths and the leaves below it (DESIGN.md). The benchmark script
# is an entry point at the top of the house and may also build the S4D layer it times against.
KERNELS_MAY_IMPORT = {"lconv", "lconv.butterfly", "lconv.conv", "lconv.results", "lconv.paper"}
ENTRY_POINTS = {"lconv.kernels.bench": {"lconv.layers"}}
KERNELS = "lconv.kernels"  # the folder kernels/, installed and imported under lconv (the symlink lconv/kernels)
NOTEBOOKS = sorted((REPO / "notebooks").glob("*.ipynb"))


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(REPO).with_suffix("").parts)
    parts = ["lconv", *parts] if parts[0] == "kernels" else parts  # kernels/x.py is lconv.kernels.x
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _files():
    """Every module file once: kernels/ itself, not again through the symlink lconv/kernels."""
    return [p for pkg in PACKAGES for p in sorted((REPO / pkg).rglob("*.py"))
            if not p.relative_to(REPO).parts[:2] == ("lconv", "kernels")]


def _modules() -> dict[str, Path]:
    return {_module_name(p): p for p in _files()}


def _imports(name: str, path: Path, modules: dict) -> set[str]:
    """Modules of the two packages that `name` imports anywhere in its file (top level or inside functions)."""
    is_pkg = path.name == "__init__.py"
    out = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            targets = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = name.split(".") if is_pkg else name.split(".")[:-1]
                base = base[:len(base) - node.level + 1]
                mod = ".".join(base + ([node.module] if node.module else []))
            else:
                mod = node.module
            # `from pkg import sub` imports the submodule sub when there is one
            targets = [f"{mod}.{a.name}" if f"{mod}.{a.name}" in modules else mod for a in node.names]
        else:
            continue
        for t in targets:
            while t and t not in modules:  # `import lconv.kernels.io_model.x` → the longest known module
                t = t.rpartition(".")[0]
            if t and t != name:
                out.add(t)
    return out


@pytest.fixture(scope="module")
def graph():
    modules = _modules()
    return {name: _imports(name, path, modules) for name, path in modules.items()}


def _cycles(graph):
    """Strongly connected components with more than one module (Tarjan)."""
    index, low, stack, on, out, counter = {}, {}, [], set(), [], [0]

    def visit(v):
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on.add(v)
        for w in graph.get(v, ()):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                out.append(sorted(comp))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return out


def test_no_import_circle(graph):
    assert _cycles(graph) == []


def test_the_graph_reader_sees_circles_and_relative_imports():
    assert _cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
    modules = _modules()
    assert f"{KERNELS}.launch" in _imports(f"{KERNELS}.three_pass", modules[f"{KERNELS}.three_pass"], modules)
    assert "lconv.backend" in _imports("lconv.layers", modules["lconv.layers"], modules)


def test_lconv_reaches_kernels_only_through_the_door(graph):
    doors = sorted(m for m, deps in graph.items()
                   if not m.startswith(KERNELS) and any(d == KERNELS or d.startswith(KERNELS + ".") for d in deps))
    assert doors == [DOOR], f"imports of kernels inside lconv outside {DOOR}: {sorted(set(doors) - {DOOR})}"


def test_kernels_import_only_the_bottom_floor_of_lconv(graph):
    for m, deps in graph.items():
        if m.startswith(KERNELS):
            upward = {d for d in deps if d.startswith("lconv") and not d.startswith(KERNELS)} - KERNELS_MAY_IMPORT - ENTRY_POINTS.get(m, set())
            assert not upward, f"{m} imports {sorted(upward)} from above the reference floor"


def test_kernel_files_import_their_siblings_relatively():
    for path in sorted((REPO / "kernels").glob("*.py")):
        absolute = [n.module for n in ast.walk(ast.parse(path.read_text()))
                    if isinstance(n, ast.ImportFrom) and not n.level and (n.module or "").startswith(("kernels", KERNELS))]
        absolute += [a.name for n in ast.walk(ast.parse(path.read_text())) if isinstance(n, ast.Import)
                     for a in n.names if a.name.startswith(("kernels", KERNELS))]
        assert not absolute, f"{path.name}: `from .x import ...` inside kernels/, not {absolute}"


# ---------------------------------------------------------------- one definition each

def _trees():
    return {p: ast.parse(p.read_text()) for p in _files()}


def _strings(node):
    return [n.value for n in ast.walk(node) if isinstance(n, ast.Constant) and isinstance(n.value, str)]


def test_one_profile_list():
    hits = [p.relative_to(REPO).as_posix() for p, tree in _trees().items() for n in ast.walk(tree)
            if isinstance(n, (ast.Tuple, ast.List, ast.Set)) and {"smoke", "quick", "full"} <= set(_strings(n))]
    assert hits == ["lconv/data/__init__.py"], hits


def test_one_backend_vocabulary():
    hits = [p.relative_to(REPO).as_posix() for p, tree in _trees().items() for n in ast.walk(tree)
            if isinstance(n, ast.Assign) and isinstance(n.value, (ast.Tuple, ast.List, ast.Set))
            and "triton" in _strings(n.value) and ({"torch", "reference", "auto"} & set(_strings(n.value)))]
    assert hits == ["lconv/conv.py"], hits


def test_one_fft_size_rule():
    defs = [(p.relative_to(REPO).as_posix(), n.name) for p, tree in _trees().items() for n in ast.walk(tree)
            if isinstance(n, ast.FunctionDef) and "fft_size" in n.name]
    assert defs == [("lconv/conv.py", "fft_size")], defs


def test_one_atomic_writer():
    hits = [p.relative_to(REPO).as_posix() for p, tree in _trees().items() for n in ast.walk(tree)
            if isinstance(n, ast.Call) and isinstance(n.func, ast.Attribute) and n.func.attr == "replace"
            and isinstance(n.func.value, ast.Name) and n.func.value.id == "os"]
    assert hits == ["lconv/results.py"], hits


PAPER_NAMES = {"PEER_MS", "PEER_SPEEDUP", "PILE_PPL", "PILE_TOKENS", "MONARCH_WIKITEXT", "MONARCH_FEWER_PARAMS",
               "LRA_AVERAGE", "SCIFAR", "SCIFAR_LEARNED_GAIN", "SCIFAR_INIT_GAIN", "TIME_SLOPE", "SPEED_CLAIMS",
               "TARGET_FWD_VS_RFFT", "TARGET_FWD_BWD_VS_RFFT", "TARGET_BW_FRACTION", "TARGET_S4D_128K",
               "TARGET_LEARNED_VS_FIXED", "TARGET_SPEEDUP_MAX_N", "TARGET_BW_MIN_N", "TARGET_THREE_PASS_VS_RFFT",
               "TARGET_MIN_B", "TARGET_HOST_US"}


def test_the_papers_numbers_are_defined_once_in_lconv_paper():
    hits = [(p.relative_to(REPO).as_posix(), t.id) for p, tree in _trees().items() for n in ast.walk(tree)
            if isinstance(n, ast.Assign) for t in n.targets if isinstance(t, ast.Name) and t.id in PAPER_NAMES]
    assert sorted({h[1] for h in hits}) == sorted(PAPER_NAMES)
    assert {h[0] for h in hits} == {"lconv/paper.py"}, hits


# ---------------------------------------------------------------- notebooks only import

def _code_cells(path):
    nb = json.loads(path.read_text())
    return [(i, c) for i, c in enumerate(nb["cells"]) if c["cell_type"] == "code"]


def _parse(source):
    return ast.parse("\n".join(line for line in source.splitlines() if not line.lstrip().startswith(("%", "!"))))


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_notebooks_are_stored_without_outputs(path):
    dirty = [i for i, c in _code_cells(path) if c.get("outputs") or c.get("execution_count") is not None]
    assert not dirty, f"{path.name}: clear the outputs of cells {dirty} before committing"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_notebooks_hold_no_verdict_logic_and_no_paper_numbers(path):
    for i, cell in _code_cells(path):
        tree = _parse("".join(cell["source"]))
        for node in ast.walk(tree):
            # verdict prose chosen by if/else belongs in a tested function of lconv.experiments.*
            if isinstance(node, (ast.If, ast.IfExp)):
                prose = [s for s in _strings(node) if len(s) > 40]
                assert not prose, f"{path.name} cell {i}: if/else choosing prose {prose[0][:60]!r}…"
            # the paper's numbers come from lconv.paper, by name
            if isinstance(node, ast.keyword) and node.arg == "paper":
                assert not isinstance(node.value, ast.Constant), f"{path.name} cell {i}: paper={node.value.value}"
            if isinstance(node, ast.Dict) and node.keys and all(isinstance(k, ast.Constant) and
                                                                isinstance(k.value, int) for k in node.keys) \
                    and all(isinstance(v, ast.Tuple) for v in node.values):
                raise AssertionError(f"{path.name} cell {i}: a table of numbers pasted in (lconv.paper holds them)")


def test_no_top_level_kernels_import():
    """`kernels` is another distribution's import name (Hugging Face's): ours is only ever lconv.kernels."""
    sources = {p: p.read_text() for p in [*_files(), *sorted((REPO / "tests").glob("*.py"))]}
    sources.update({nb: "\n".join("".join(c["source"]) for c in json.loads(nb.read_text())["cells"]
                                  if c["cell_type"] == "code") for nb in NOTEBOOKS})
    bad = []
    for path, text in sources.items():
        for node in ast.walk(ast.parse(text)):
            names = [a.name for a in node.names] if isinstance(node, ast.Import) else (
                [node.module] if isinstance(node, ast.ImportFrom) and not node.level and node.module else [])
            bad += [f"{path.name}: {n}" for n in names if n == "kernels" or n.startswith("kernels.")]
    assert not bad, f"import lconv.kernels instead: {bad}"
