"""What the package claims about itself matches what exists and what is tested."""

from __future__ import annotations

import ast
import re
import tomllib
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())
README = (ROOT / "README.md").read_text()


def _noxfile_constant(name: str) -> object:
    tree = ast.parse((ROOT / "noxfile.py").read_text())
    for node in tree.body:
        if isinstance(node, ast.Assign) and any(
            isinstance(t, ast.Name) and t.id == name for t in node.targets
        ):
            return ast.literal_eval(node.value)
    raise AssertionError(f"noxfile.py has no {name}")


def test_python_versions_claimed_are_the_ones_tested() -> None:
    tested = _noxfile_constant("PYTHONS")
    assert isinstance(tested, list)
    assert PYPROJECT["project"]["requires-python"] == f">={tested[0]}"
    classified = [
        c.rpartition(" :: ")[2]
        for c in PYPROJECT["project"]["classifiers"]
        if re.fullmatch(r"Programming Language :: Python :: 3\.\d+", c)
    ]
    assert classified == tested
    assert re.findall(r"Python ≥ ?(3\.\d+)", README) == [tested[0]]
    assert PYPROJECT["tool"]["mypy"]["python_version"] == tested[0]
    assert PYPROJECT["tool"]["ruff"]["target-version"] == "py" + tested[0].replace(".", "")


def test_missing_interpreter_fails_the_run() -> None:
    source = (ROOT / "noxfile.py").read_text()
    assert "nox.options.error_on_missing_interpreters = True" in source


def test_description_names_only_backends_that_exist() -> None:
    text = PYPROJECT["project"]["description"] + README.split("\n## ", 1)[0]
    for name, module in [
        ("MongoDB", "mongodb"),
        ("Cassandra", "cassandra"),
        ("AstraDB", "astradb"),
        ("Redis", "redis"),
        ("SQL", "sql"),
    ]:
        exists = (ROOT / "kvstores" / f"{module}.py").exists() or (
            ROOT / "kvstores" / module
        ).is_dir()
        assert (name in text) == exists, name


def _requirement_name(line: str) -> str:
    return re.split(r"[\[<>=!~; ]", line.strip(), maxsplit=1)[0].lower().replace("_", "-")


def test_constraints_pin_every_dependency_exactly() -> None:
    """CI installs from constraints.txt: every package of every extra and of
    requirements-dev.txt is pinned there to one exact version."""
    pins = {}
    for line in (ROOT / "constraints.txt").read_text().splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        name, sep, version = line.partition("==")
        assert sep, f"not an exact pin: {line}"
        assert re.fullmatch(r"[\w.+!]+", version), f"not an exact pin: {line}"
        pins[name.lower().replace("_", "-")] = version
    wanted = {
        _requirement_name(r)
        for extra in PYPROJECT["project"]["optional-dependencies"].values()
        for r in extra
        if not r.startswith("kvstores")
    }
    wanted |= {
        _requirement_name(line)
        for line in (ROOT / "requirements-dev.txt").read_text().splitlines()
        if line.strip() and not line.startswith("#")
    }
    assert wanted - set(pins) == set()


@pytest.mark.parametrize("session", ["lint", "typecheck", "tests", "integration", "ci"])
def test_nox_sessions_install_from_the_constraints(session: str) -> None:
    tree = ast.parse((ROOT / "noxfile.py").read_text())
    functions = {node.name: node for node in tree.body if isinstance(node, ast.FunctionDef)}
    calls = ast.unparse(functions[session])
    if "_install(session)" in calls:
        calls = ast.unparse(functions["_install"])
    assert "'-c', CONSTRAINTS" in calls, session
