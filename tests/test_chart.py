"""`benchmarks/chart.py`: an SVG chart from the benchmarks' ``--json`` files."""

from __future__ import annotations

import json
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Any

import pytest

from benchmarks import chart  # the repository root is on the path (pytest)

SVG = "{http://www.w3.org/2000/svg}"


def _result(backend: str, op: str, batch: int | None, ratio: Any, lc: Any = None) -> str:
    line = {
        "kind": "result",
        "run": "r1",
        "backend": backend,
        "op": op,
        "batch": batch,
        "stat": "best",
        "rounds": 3,
        "kvstores": 100.0,
        "raw": None if ratio is None else 100.0,
        "langchain": None if lc is None else 90.0,
        "ratio": ratio,
        "langchain_ratio": lc,
        "samples": {},
    }
    return json.dumps(line)


RUN = json.dumps(
    {
        "kind": "run",
        "run": "r1",
        "date": "2026-12-07T20:00:00+00:00",
        "python": "3.11.7",
        "machine": "x86_64",
        "system": "Linux",
        "cpus": 2,
        "command": ["bench_memory.py"],
        "config": {"stat": "best", "rounds": 3},
    }
)


def _bars(root: ET.Element) -> list[ET.Element]:
    return [
        e
        for e in root.iter()
        if e.tag in (SVG + "rect", SVG + "polygon") and "bar" in e.get("class", "").split()
    ]


def _texts(root: ET.Element, cls: str) -> list[str]:
    return [e.text or "" for e in root.iter(SVG + "text") if cls in e.get("class", "").split()]


def test_chart_from_json(tmp_path: Path) -> None:
    first = tmp_path / "memory.jsonl"
    first.write_text(
        "\n".join(
            [
                RUN,
                _result("memory", "mset", 100, 0.85, 0.5),
                _result("memory", "mset", 1, 0.7, 0.4),  # another batch
                _result("memory", "amget_hits", 100, 24.41, 30.0),  # clipped
                _result("memory", "yield_keys", None, 0.95),  # no LangChain side
                _result("memory", "mdelete", 100, None),  # no baseline: left out
            ]
        )
        + "\n"
    )
    second = tmp_path / "file.jsonl"
    second.write_text(_result("file", "mget_hits", 100, 1.08, 0.2) + "\n")
    out = tmp_path / "docs" / "speed.svg"
    argv = [str(first), str(second), "--out", str(out), "--batch", "100", "--title", "T & co"]
    assert chart.main(argv) == out

    root = ET.parse(out).getroot()
    assert root.tag == SVG + "svg"
    assert float(root.get("width", 0)) == 1000
    assert _texts(root, "title") == ["T & co"]
    assert _texts(root, "backend") == ["memory", "file"]
    assert _texts(root, "phase") == ["mset ×100", "amget_hits ×100", "yield_keys", "mget_hits ×100"]

    bars = _bars(root)
    described = [(b.get("data-backend"), b.get("data-phase"), b.get("class")) for b in bars]
    assert described == [
        ("memory", "mset ×100", "bar kvstores"),
        ("memory", "mset ×100", "bar langchain"),
        ("memory", "amget_hits ×100", "bar kvstores clipped"),
        ("memory", "amget_hits ×100", "bar langchain clipped"),
        ("memory", "yield_keys", "bar kvstores"),
        ("file", "mget_hits ×100", "bar kvstores"),
        ("file", "mget_hits ×100", "bar langchain"),
    ]
    ratios = [float(b.get("data-ratio", 0)) for b in bars]
    assert ratios == [0.85, 0.5, 24.41, 30.0, 0.95, 1.08, 0.2]
    # The clipped bars end at the plot's edge and their values are written.
    assert _texts(root, "clipped") == ["24.4", "30.0"]
    widths = {b.get("data-ratio"): float(b.get("width", 0)) for b in bars if b.get("width")}
    assert widths["0.5000"] < widths["0.8500"] < widths["1.0800"]
    # The reference lines at 1.0 (the raw driver) and 0.9, and a legend for both sides.
    references = [e.get("data-ratio") for e in root.iter(SVG + "line") if e.get("data-ratio")]
    assert references == ["1.0", "0.9"]
    legend = [e.get("class") for e in root.iter(SVG + "rect") if "legend" in e.get("class", "")]
    assert legend == ["legend kvstores", "legend langchain"]
    assert any("raw driver" in t for t in _texts(root, "axis"))
    assert _texts(root, "note") == []  # both backends have a LangChain side


def test_a_backend_without_langchain_side_says_so(tmp_path: Path) -> None:
    path = tmp_path / "r.jsonl"
    lines = [RUN, _result("sqlite", "mset", 100, 0.4, 0.03), _result("mysql", "mset", 100, 0.9)]
    path.write_text("\n".join(lines) + "\n")
    root = ET.fromstring(chart.render(chart.load([path])[1]))
    assert _texts(root, "note") == ["no LangChain side"]


def test_chart_without_langchain_sides_has_one_bar_per_phase(tmp_path: Path) -> None:
    path = tmp_path / "r.jsonl"
    path.write_text(RUN + "\n" + _result("redis", "mget_hits", 100, 1.2) + "\n")
    svg = chart.render(chart.load([path])[1], clip=2)
    root = ET.fromstring(svg)
    assert [b.get("class") for b in _bars(root)] == ["bar kvstores"]
    assert _texts(root, "clipped") == []


def test_chart_with_nothing_to_draw_says_so(tmp_path: Path) -> None:
    path = tmp_path / "r.jsonl"
    path.write_text(RUN + "\n" + _result("memory", "mset", 100, None) + "\n")
    with pytest.raises(SystemExit, match="no results with a raw baseline"):
        chart.main([str(path), "--out", str(tmp_path / "x.svg")])


def test_markdown_table_of_the_same_ratios(tmp_path: Path, capsys: Any) -> None:
    results = tmp_path / "r.jsonl"
    lines = [
        RUN,
        _result("sqlite", "mget_hits", 1, 0.61),
        _result("sqlite", "mget_hits", 100, 0.93, lc=0.05),
        _result("sqlite", "yield_keys", None, 0.88),
        _result("mongodb bytes (ferretdb 1.24.2)", "amdelete", 100, 1.2),
        _result("sqlite", "mset", 100, None),  # no baseline: left out
    ]
    results.write_text("\n".join(lines) + "\n", encoding="utf-8")
    chart.main([str(results), "--markdown"])
    table = capsys.readouterr().out.splitlines()
    assert table[0] == "| phase | sqlite | mongodb bytes |"
    assert "| mget hits | 0.61 / 0.93 (0.05) | – |" in table
    assert "| yield_keys | 0.88 | – |" in table
    assert "| amdelete | – | – / 1.20 |" in table
    assert not any(row.startswith("| mset ") for row in table)
