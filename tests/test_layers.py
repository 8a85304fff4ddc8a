"""Imports point one way: ops and data at the bottom, then gan / decompose / encode, then directions,
the bundle, export, augment, the test fixtures (testing), and the recipe, pipeline and CLI on top. Walks every module's imports (lazy ones in
functions too) and fails on an edge that points up or sideways, and on an import cycle."""
from __future__ import annotations

import ast
from pathlib import Path

PKG = Path(__file__).resolve().parents[1] / "facedis_aug"
# a package may import only packages of a lower rank (equal rank: not each other)
RANK = {"_lazy": -1, "_version": 0, "ops": 0, "data": 1, "gan": 2, "decompose": 2, "encode": 3, "directions": 4, "bundle": 5,
        "export": 6, "augment": 7, "testing": 8, "recipe": 8, "pipeline": 9, "cli": 10, "__init__": 11}


def _module(path: Path, pkg: Path = PKG) -> str:
    parts = path.relative_to(pkg.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _imports(path: Path, pkg: Path = PKG) -> list[tuple[str, bool]]:
    """(imported facedis_aug module, at module level?) for every import in the file."""
    mod = _module(path, pkg)
    package = mod.split(".") if path.name == "__init__.py" else mod.split(".")[:-1]
    tree = ast.parse(path.read_text())
    top_level = {id(n) for n in tree.body}
    out = []
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom):
            base = package[: len(package) - node.level + 1] if node.level else []
            target = ".".join(base + ([node.module] if node.module else [])) if node.level else (node.module or "")
            names = [f"{target}.{a.name}" for a in node.names]  # the name may be a module ("from . import b")
        elif isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        else:
            continue
        out += [(n, id(node) in top_level) for n in names if n.startswith("facedis_aug")]
    return out


def _layer(module: str) -> str:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else "__init__"


def upward_edges(pkg: Path = PKG) -> list[str]:
    wrong = []
    for path in sorted(pkg.rglob("*.py")):
        src = _layer(_module(path, pkg))
        assert src in RANK, f"{path}: package {src!r} has no layer in this test's RANK table"
        for target, _ in _imports(path, pkg):
            dst = _layer(target)
            if dst != src and RANK[dst] >= RANK[src]:
                wrong.append(f"{path.relative_to(pkg.parent)} ({src}) imports {target} ({dst})")
    return wrong


def find_cycle(pkg: Path = PKG) -> list[str] | None:
    graph = {_module(p, pkg): {t for t, top in _imports(p, pkg) if top} for p in pkg.rglob("*.py")}
    state: dict[str, int] = {}

    def visit(m: str, trail: list[str]) -> list[str] | None:
        state[m] = 1
        for t in sorted(graph.get(m, ())):
            t = t if t in graph else t.rsplit(".", 1)[0]  # "from pkg.mod import name"
            if t not in graph or t == m:
                continue
            if state.get(t) == 1:
                return trail[trail.index(t):] + [t]
            if t not in state and (found := visit(t, trail + [t])):
                return found
        state[m] = 2
        return None

    for m in sorted(graph):
        if m not in state and (found := visit(m, [m])):
            return found
    return None


def test_imports_point_down_the_layers():
    wrong = upward_edges()
    assert not wrong, "\n".join(wrong)


def test_no_import_cycle_at_module_level():
    assert find_cycle() is None, " -> ".join(find_cycle() or [])


def test_the_checks_catch_an_upward_edge_and_a_cycle(tmp_path):
    pkg = tmp_path / "facedis_aug"
    (pkg / "gan").mkdir(parents=True)
    (pkg / "__init__.py").write_text("")
    (pkg / "gan" / "__init__.py").write_text("")
    (pkg / "gan" / "train.py").write_text("def f():\n    from ..pipeline import run_pipeline\n")
    (pkg / "gan" / "a.py").write_text("from . import b\n")
    (pkg / "gan" / "b.py").write_text("from .a import x\n")
    (pkg / "pipeline.py").write_text("from .gan import train\n")
    assert upward_edges(pkg) == ["facedis_aug/gan/train.py (gan) imports facedis_aug.pipeline.run_pipeline (pipeline)"]
    assert find_cycle(pkg) in (["facedis_aug.gan.a", "facedis_aug.gan", "facedis_aug.gan.a"],
                               ["facedis_aug.gan.a", "facedis_aug.gan.b", "facedis_aug.gan.a"])
