"""The code's shape, checked: modules depend one way, none reaches into another's private parts, tests
and benchmarks use qa's public API only, and only the web app imports Gradio."""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent

LAYERS: list[set[str]] = [
    {"errors", "version", "passage", "rows", "splitting", "dense"},
    {
        "storage",
        "documents",
        "embedding",
        "onnx_export",
        "lexical",
        "pdf",
        "docx",
        "cache",
        "worker",
    },  # qa/readers/ sits with documents
    {"milvus", "vectorstore"},
    {"manifest"},
    {"contents"},
    {"build", "index_files", "fusion", "distributed"},
    {"ranking"},
    {"retrieval"},
    {"index"},
    {"api", "evaluation"},
    {"cli", "__init__", "__main__"},
]
"""qa's modules from the bottom up, as README's layout describes them: a module imports only modules of
its own layer or below (documents and texts, then encoders and stores, then what an index holds, how it
is built, saved and searched, then the ``Index``, then what keeps it fresh, then the command line)."""


def _modules(folder: str) -> list[Path]:
    return sorted((ROOT / folder).rglob("*.py"))


def _imports(tree: ast.AST) -> Iterator[tuple[int, str]]:
    """``(line, module)`` of every import in ``tree``, at any depth (lazy imports count too)."""
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            yield from ((node.lineno, alias.name) for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            yield node.lineno, node.module
            yield from ((node.lineno, f"{node.module}.{alias.name}") for alias in node.names)


def test_every_qa_module_has_a_layer() -> None:
    named = set().union(*LAYERS)
    assert {path.stem for path in _modules("qa")} == named


def test_qa_modules_import_only_their_own_layer_or_below() -> None:
    layer_of = {name: number for number, names in enumerate(LAYERS) for name in names}
    wrong = []
    for path in _modules("qa"):
        for line, module in _imports(ast.parse(path.read_text(encoding="utf-8"))):
            parts = module.split(".")
            above = parts[0] == "qa" and len(parts) > 1 and layer_of.get(parts[1], -1) > layer_of[path.stem]
            if above:
                wrong.append(f"qa/{path.name}:{line} imports qa.{parts[1]}, a layer above it")
    assert wrong == []


def test_only_the_web_app_imports_gradio() -> None:
    found = [
        f"{path.relative_to(ROOT)}:{line}"
        for folder in ("qa", "bench")
        for path in _modules(folder)
        for line, module in _imports(ast.parse(path.read_text(encoding="utf-8")))
        if module.split(".")[0] in ("gradio", "gradio_client") and not (folder == "bench" and path.stem == "load")
    ]
    assert found == []  # bench/load.py is a client of the web app, over HTTP


def _private(name: str) -> bool:
    return name.startswith("_") and not name.startswith("__")


def test_no_module_reaches_into_another_objects_private_members() -> None:
    found = []
    for path in [*_modules("qa"), *_modules("ui")]:
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            own = (
                isinstance(node, ast.Attribute)
                and isinstance(node.value, ast.Name)
                and node.value.id in ("self", "cls")
            )
            if isinstance(node, ast.Attribute) and _private(node.attr) and not own:
                found.append(f"{path.relative_to(ROOT)}:{node.lineno}: {ast.unparse(node)}")
    assert found == []


def _qa_names(tree: ast.AST) -> set[str]:
    """Names a module binds to qa's modules, classes and functions."""
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name.split(".")[0] == "qa":
                    names.add(alias.asname or alias.name.split(".")[0])
        elif isinstance(node, ast.ImportFrom) and node.module and node.module.split(".")[0] == "qa":
            names.update(alias.asname or alias.name for alias in node.names)
    return names


def _root(node: ast.expr) -> str | None:
    while isinstance(node, (ast.Attribute, ast.Subscript, ast.Call)):
        node = node.func if isinstance(node, ast.Call) else node.value
    return node.id if isinstance(node, ast.Name) else None


def _uses_of_qa_internals(path: Path) -> Iterator[str]:
    tree = ast.parse(path.read_text(encoding="utf-8"))
    qa_names = _qa_names(tree)
    where = path.relative_to(ROOT) if path.is_relative_to(ROOT) else path.name
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module and node.module.split(".")[0] == "qa":
            if any(_private(part) for part in node.module.split(".")):
                yield f"{where}:{node.lineno} imports the private module {node.module}"
            for alias in node.names:
                if _private(alias.name):
                    yield f"{where}:{node.lineno} imports {alias.name} from {node.module}"
        elif isinstance(node, ast.Attribute) and _private(node.attr) and _root(node) in qa_names:
            yield f"{where}:{node.lineno} uses {ast.unparse(node)}"
        elif isinstance(node, ast.Call):
            function = ast.unparse(node.func)
            patching = function.endswith(("setattr", "delattr", "patch.object", "patch.dict"))
            if patching and node.args and _root(node.args[0]) in qa_names:
                yield f"{where}:{node.lineno} patches {ast.unparse(node.args[0])}: {function}"
            target = node.args[0] if node.args else None
            if (
                function.endswith(("setattr", "patch"))
                and isinstance(target, ast.Constant)
                and str(target.value).startswith("qa.")
            ):
                yield f"{where}:{node.lineno} patches {target.value}"
        elif isinstance(node, (ast.Assign, ast.AugAssign, ast.AnnAssign, ast.Delete)):
            targets = node.targets if isinstance(node, (ast.Assign, ast.Delete)) else [node.target]
            for target in targets:
                if isinstance(target, ast.Attribute) and _root(target) in qa_names:
                    yield f"{where}:{node.lineno} sets {ast.unparse(target)}"


@pytest.mark.parametrize("folder", ["tests", "bench"])
def test_tests_and_benchmarks_use_only_the_public_api(folder: str) -> None:
    assert [use for path in _modules(folder) for use in _uses_of_qa_internals(path)] == []


def test_the_check_finds_what_it_is_for(tmp_path: Path) -> None:
    """The check itself, on code that does each forbidden thing once."""
    bad = tmp_path / "sample.py"
    bad.write_text(
        "import qa.index as index_module\n"
        "from qa.index import _private_helper\n"
        "from qa.lexical import LexicalIndex\n"
        "import qa.embedding\n"
        "def test(monkeypatch):\n"
        "    monkeypatch.setattr(index_module, 'Encoder', None)\n"
        "    monkeypatch.setattr('qa.index.Encoder', None)\n"
        "    setattr(LexicalIndex, 'build', None)\n"
        "    qa.embedding.QUERY_CACHE_SIZE = 0\n"
        "    index_module._cache.clear()\n",
        encoding="utf-8",
    )
    found = list(_uses_of_qa_internals(bad))
    assert len(found) == 6, found
