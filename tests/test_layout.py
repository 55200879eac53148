"""The house rules that a reader of the tree relies on: imports run one way, no cycles, short functions.

Read from the source with `ast` (function-local imports included), so a violation fails here before review.
"""
from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
ROOMS = ("video", "model", "training", "precompute", "app")
#: What each room may import from the project (besides itself).
ALLOWED = {
    "video": set(),
    "model": set(),
    "training": {"model", "video"},
    "precompute": {"model", "video"},
    "app": {"model", "video", "precompute"},
}
MAX_FUNCTION_LINES = 80


def room_files(room: str) -> list[Path]:
    return sorted((ROOT / room).rglob("*.py"))


def module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts = parts[:-1]
    return ".".join(parts)


def imported_modules(path: Path) -> set[str]:
    """Every project module `path` imports, at any depth (function-local imports count)."""
    tree = ast.parse(path.read_text(), filename=str(path))
    package = module_name(path) if path.name == "__init__.py" else module_name(path).rpartition(".")[0]
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[: len(base) - (node.level - 1)]
                mod = ".".join(base + ([node.module] if node.module else []))
            else:
                mod = node.module or ""
            found.add(mod)
            found.update(f"{mod}.{alias.name}" for alias in node.names)  # `from pkg import module`
    return {m for m in found if m.split(".")[0] in ROOMS}


def project_modules() -> dict[str, Path]:
    return {module_name(p): p for room in ROOMS for p in room_files(room)}


@pytest.mark.parametrize("room", ROOMS)
def test_rooms_import_only_what_they_may(room):
    bad = []
    for path in room_files(room):
        for mod in imported_modules(path):
            other = mod.split(".")[0]
            if other != room and other not in ALLOWED[room]:
                bad.append(f"{path.relative_to(ROOT)} imports {mod}")
    assert not bad, "imports against the layout (README, How the pieces fit):\n" + "\n".join(sorted(set(bad)))


def test_no_two_files_import_each_other():
    modules = project_modules()
    edges = {name: {m for m in imported_modules(path) if m in modules and m != name}
             for name, path in modules.items()}
    pairs = sorted({tuple(sorted((a, b))) for a, targets in edges.items() for b in targets
                    if a in edges.get(b, set()) and not (a.startswith(b + ".") or b.startswith(a + "."))})
    assert not pairs, f"files that import each other: {pairs}"


def test_the_checker_sees_function_local_and_relative_imports(tmp_path, monkeypatch):
    """The rules above are only as good as this reader of imports."""
    pkg = tmp_path / "model"
    pkg.mkdir()
    (pkg / "__init__.py").write_text("")
    (pkg / "a.py").write_text("def f():\n    from .b import g\n    import training.train\n")
    monkeypatch.setattr(__import__(__name__), "ROOT", tmp_path)
    assert imported_modules(pkg / "a.py") >= {"model.b", "model.b.g", "training.train"}


def long_functions(path: Path) -> list[str]:
    tree = ast.parse(path.read_text(), filename=str(path))
    out = []
    for node in ast.walk(tree):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            length = node.end_lineno - node.lineno + 1
            if length > MAX_FUNCTION_LINES:
                out.append(f"{path.relative_to(ROOT)}:{node.lineno} {node.name} ({length} lines)")
    return out


@pytest.mark.parametrize("room", ROOMS)
def test_no_function_longer_than_80_lines(room):
    found = [f for path in room_files(room) for f in long_functions(path)]
    assert not found, "split these into named steps:\n" + "\n".join(found)


def test_no_helper_named_like_a_test():
    """pytest collects test_* names imported into test modules: project helpers must not use them."""
    bad = [f"{p.relative_to(ROOT)}: {node.name}" for room in ROOMS for p in room_files(room)
           for node in ast.walk(ast.parse(p.read_text()))
           if isinstance(node, (ast.FunctionDef, ast.ClassDef)) and node.name.lower().startswith("test")]
    assert not bad, bad
