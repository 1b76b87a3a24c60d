"""Nothing a store reads is ever unpickled or evaluated: values are bytes or JSON-like
documents, and a server (or whoever can write to it) must never get to run code in the
reader's process. Every module of the package is parsed, not grepped (a comment or a
docstring naming `pickle` is no use of it), and refused if it imports a module that runs
code while loading data (`pickle`, `marshal`, `shelve`, `dill`, `cloudpickle`, `joblib`),
imports one by name (``importlib.import_module("pickle")``, ``__import__``, kvstores'
``require``), calls `eval` or `exec`, or loads YAML with a loader that builds objects."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

import kvstores

PACKAGE = Path(kvstores.__file__).resolve().parent
#: Modules whose loading runs code chosen by the data.
UNSAFE_MODULES = frozenset({"pickle", "_pickle", "cPickle", "marshal", "shelve", "dill"})
UNSAFE_MODULES |= {"cloudpickle", "joblib"}
#: Calls that run code given as text.
UNSAFE_CALLS = frozenset({"eval", "exec"})
#: Calls that import a module named by their first argument.
IMPORTERS = frozenset({"import_module", "__import__", "require"})
#: YAML loaders that build arbitrary objects (``yaml.safe_load`` does not).
UNSAFE_YAML = frozenset({"load", "load_all", "unsafe_load", "unsafe_load_all", "full_load"})


def _unsafe(module: str) -> bool:
    return module.partition(".")[0] in UNSAFE_MODULES


def _name_of(node: ast.expr) -> str | None:
    """``f`` of ``f(...)``, ``m.f`` of ``m.f(...)`` (the attribute only)."""
    if isinstance(node, ast.Name):
        return node.id
    if isinstance(node, ast.Attribute):
        return node.attr
    return None


def unsafe_uses(source: str, filename: str) -> list[str]:
    """Each unsafe use in `source`, as ``file:line: what``."""
    found: list[tuple[int, str]] = []
    for node in ast.walk(ast.parse(source, filename)):
        what = None
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names if _unsafe(alias.name)]
            what = f"import {', '.join(names)}" if names else None
        elif isinstance(node, ast.ImportFrom):
            if node.module is not None and _unsafe(node.module):
                what = f"from {node.module} import …"
            elif node.module is None or node.level:  # from . import pickle
                names = [alias.name for alias in node.names if _unsafe(alias.name)]
                what = f"from … import {', '.join(names)}" if names else None
        elif isinstance(node, ast.Call):
            called = _name_of(node.func)
            first = node.args[0] if node.args else None
            if called in UNSAFE_CALLS:
                what = f"{called}(…)"
            elif (
                called in IMPORTERS
                and isinstance(first, ast.Constant)
                and isinstance(first.value, str)
                and _unsafe(first.value)
            ):
                what = f"{called}({first.value!r})"
            elif (
                called in UNSAFE_YAML
                and isinstance(node.func, ast.Attribute)
                and _name_of(node.func.value) == "yaml"
            ):
                what = f"yaml.{called}(…)"
        if what is not None:
            found.append((getattr(node, "lineno", 0), what))
    return [f"{filename}:{line}: {what}" for line, what in sorted(found)]


def _modules() -> list[Path]:
    return sorted(PACKAGE.rglob("*.py"))


def test_the_package_has_modules_to_check() -> None:
    names = {path.relative_to(PACKAGE).as_posix() for path in _modules()}
    assert {"__init__.py", "backend.py", "sql/store.py", "redis/store.py"} <= names
    assert len(names) > 40


@pytest.mark.parametrize("path", _modules(), ids=lambda path: path.relative_to(PACKAGE).as_posix())
def test_no_module_unpickles_or_evaluates(path: Path) -> None:
    assert unsafe_uses(path.read_text(encoding="utf-8"), path.name) == []


def test_the_check_finds_every_kind_of_unsafe_use(tmp_path: Path) -> None:
    """The check can fail: on a module doing each of the things it refuses."""
    bad = tmp_path / "bad.py"
    bad.write_text(
        "import json, pickle\n"
        "import cloudpickle as cp\n"
        "from marshal import loads\n"
        "from dill.source import getsource\n"
        "from . import shelve\n"
        "import importlib\n"
        "codec = importlib.import_module('joblib')\n"
        "also = __import__('_pickle')\n"
        "value = eval('1 + 1')\n"
        "exec('x = 1')\n"
        "import yaml\n"
        "yaml.load('a: 1', Loader=yaml.Loader)\n"
        "yaml.safe_load('a: 1')\n"  # fine
        "'''import pickle in a docstring is no use of it'''\n"
        "# nor is eval() in a comment\n",
        encoding="utf-8",
    )
    assert unsafe_uses(bad.read_text(encoding="utf-8"), bad.name) == [
        "bad.py:1: import pickle",
        "bad.py:2: import cloudpickle",
        "bad.py:3: from marshal import …",
        "bad.py:4: from dill.source import …",
        "bad.py:5: from … import shelve",
        "bad.py:7: import_module('joblib')",
        "bad.py:8: __import__('_pickle')",
        "bad.py:9: eval(…)",
        "bad.py:10: exec(…)",
        "bad.py:12: yaml.load(…)",
    ]
