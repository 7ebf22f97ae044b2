"""The package's shape: no import cycles, no private names borrowed across modules, and a
plugin entry point that imports nothing heavy."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "pytest_kvreuse"
HEAVY = ("numpy", "matplotlib", "jinja2", "transformers", "tokenizers", "tqdm")


def _module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _is_package(path: Path) -> bool:
    return path.name == "__init__.py"


def _type_checking_lines(tree: ast.AST) -> set[int]:
    lines: set[int] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            for child in ast.walk(node):
                if hasattr(child, "lineno"):
                    lines.add(child.lineno)
    return lines


def _imports(path: Path) -> list[tuple[str, list[str], int]]:
    """``(module imported, names, line)`` of every intra-package import, at module level or
    in a function, leaving out ``if TYPE_CHECKING:`` blocks."""
    tree = ast.parse(path.read_text())
    skip = _type_checking_lines(tree)
    me = _module_name(path)
    base = me.split(".") if _is_package(path) else me.split(".")[:-1]
    out = []
    for node in ast.walk(tree):
        if node.lineno in skip if hasattr(node, "lineno") else False:
            continue
        if isinstance(node, ast.ImportFrom):
            if node.level:
                anchor = base[:len(base) - node.level + 1]
                target = ".".join(anchor + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            if not target.startswith("pytest_kvreuse"):
                continue
            names = [a.name for a in node.names]
            # `from . import x`: x may be a module of that package.
            subs = [f"{target}.{n}" for n in names
                    if (PACKAGE.parent / f"{target}.{n}".replace(".", "/")).with_suffix(
                        ".py").is_file()]
            out.append((target, names, node.lineno))
            out += [(s, [], node.lineno) for s in subs]
        elif isinstance(node, ast.Import):
            out += [(a.name, [], node.lineno) for a in node.names
                    if a.name.startswith("pytest_kvreuse")]
    return out


def _modules() -> dict[str, Path]:
    return {_module_name(p): p for p in PACKAGE.rglob("*.py") if "templates" not in p.parts}


def test_the_package_has_no_import_cycle():
    modules = _modules()
    graph = {m: sorted({t for t, _, _ in _imports(p) if t in modules and t != m})
             for m, p in modules.items()}
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(m: str) -> None:
        state[m] = 1
        stack.append(m)
        for n in graph[m]:
            if state.get(n) == 1:
                cycle = stack[stack.index(n):] + [n]
                pytest.fail("import cycle: " + " -> ".join(cycle))
            if n not in state:
                visit(n)
        stack.pop()
        state[m] = 2

    for m in sorted(graph):
        if m not in state:
            visit(m)


def test_no_private_name_is_imported_from_another_module():
    borrowed = []
    for p in _modules().values():
        for target, names, line in _imports(p):
            borrowed += [f"{p.relative_to(PACKAGE.parent)}:{line}: {target}.{n}"
                         for n in names if n.startswith("_") and n != "__version__"]
    assert not borrowed, borrowed


def test_the_core_imports_no_pytest_matplotlib_or_jinja2():
    for m, p in _modules().items():
        if not m.startswith("pytest_kvreuse.core"):
            continue
        tree = ast.parse(p.read_text())
        for node in ast.walk(tree):
            names = [a.name for a in node.names] if isinstance(node, ast.Import) else \
                [node.module or ""] if isinstance(node, ast.ImportFrom) else []
            for n in names:
                assert n.split(".")[0] not in ("pytest", "matplotlib", "jinja2"), (m, n)


def test_loading_the_entry_point_imports_nothing_heavy():
    """What pytest does in every run of everyone who installs the package."""
    code = ("import sys, importlib.metadata as md\n"
            "[ep] = [e for e in md.entry_points(group='pytest11') if e.name == 'kvreuse']\n"
            "ep.load()\n"
            f"print(sorted(m for m in {HEAVY!r} if m in sys.modules))\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True).stdout.strip()
    assert out == "[]"
