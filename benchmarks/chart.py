"""Turn benchmark runs (``--json`` files) into an SVG bar chart of ratios to the raw driver.

python benchmarks/chart.py results.jsonl [more.jsonl ...] [--out docs/speed.svg]
                           [--batch 100] [--title TEXT] [--clip 3]
python benchmarks/chart.py results.jsonl --markdown   # the same ratios as a table

For every backend and phase (op and batch) it draws one bar for kvstores ÷ raw and, where
the run had a LangChain side, one for LangChain ÷ raw, with reference lines at 1.0 (the
raw driver) and 0.9. The scale is linear from 0 to ``--clip`` (3 by default): a longer bar
is cut at the edge, drawn with a jagged end, and labelled with its value. Results without a
raw baseline are left out. When the same (backend, op, batch) is in several runs, the last
one read wins (files in the order given, lines in file order). ``--batch N`` keeps batch N
and the unbatched listings (``yield_keys``, ``ayield_keys``).

Only the standard library: no plotting package is needed.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from xml.sax.saxutils import escape, quoteattr

WIDTH = 1000
LABEL_WIDTH = 200  # left: phase labels
VALUE_ROOM = 60  # right: the value of a clipped bar
BAR = 11  # height of one bar
GAP = 7  # between phases
BACKEND_HEAD = 26  # a backend's title row
FONTS = "Helvetica, Arial, DejaVu Sans, sans-serif"
COLORS = {"kvstores": "#2f6db5", "langchain": "#e08a1e"}
NAMES = {"kvstores": "kvstores ÷ raw", "langchain": "LangChain ÷ raw"}


@dataclass(frozen=True)
class Row:
    """One phase of one backend: its ratios to raw (None: no such side)."""

    backend: str
    op: str
    batch: int | None
    kvstores: float | None
    langchain: float | None

    @property
    def phase(self) -> str:
        return self.op if self.batch is None else f"{self.op} ×{self.batch:,}"


def load(paths: Iterable[str | Path]) -> tuple[list[dict[str, Any]], list[Row]]:
    """The run headers and the rows (in first-seen order, last values win) of JSON Lines
    files written by the benchmarks' ``--json``."""
    runs: list[dict[str, Any]] = []
    rows: dict[tuple[str, str, int | None], Row] = {}
    for path in paths:
        for number, line in enumerate(Path(path).read_text(encoding="utf-8").splitlines(), 1):
            if not line.strip():
                continue
            try:
                item = json.loads(line)
            except json.JSONDecodeError as exc:
                raise SystemExit(f"{path}:{number}: not JSON: {exc}") from None
            if item.get("kind") == "run":
                runs.append(item)
            elif item.get("kind") == "result" and item.get("ratio") is not None:
                key = (item["backend"], item["op"], item["batch"])
                rows[key] = Row(*key, item["ratio"], item.get("langchain_ratio"))
    return runs, list(rows.values())


def keep_batch(rows: Iterable[Row], batch: int | None) -> list[Row]:
    """Rows of batch `batch` and the unbatched ones (all rows if `batch` is None)."""
    return [r for r in rows if batch is None or r.batch in (batch, None)]


def _ticks(clip: float) -> list[float]:
    step = 0.25 if clip <= 2 else 0.5 if clip <= 5 else 1.0
    count = int(clip / step + 1e-9)
    return [round(i * step, 2) for i in range(count + 1)]


def _fmt(value: float) -> str:
    return f"{value:,.2f}" if value < 10 else f"{value:,.1f}"


def _subtitle(runs: Sequence[dict[str, Any]]) -> str:
    if not runs:
        return ""
    dates = sorted({str(r.get("date", ""))[:10] for r in runs} - {""})
    machines = sorted({f"{r.get('system', '')} {r.get('machine', '')}".strip() for r in runs})
    pythons = sorted({str(r.get("python", "")) for r in runs} - {""})
    stats = sorted({f"{r['config']['stat']} of {r['config']['rounds']}" for r in runs})
    parts = [
        (dates[0] if len(dates) == 1 else f"{dates[0]} to {dates[-1]}") if dates else "",
        ", ".join(machines),
        "Python " + ", ".join(pythons) if pythons else "",
        ", ".join(stats) + " interleaved rounds",
    ]
    return "; ".join(p for p in parts if p)


def render(
    rows: Sequence[Row],
    *,
    title: str = "kvstores and LangChain's stores against the raw driver",
    clip: float = 3.0,
    runs: Sequence[dict[str, Any]] = (),
) -> str:
    """The SVG text of the chart of `rows`, grouped by backend, in the order given."""
    if clip <= 1:
        raise ValueError("clip must be above 1 (the raw driver's line)")
    plot_left = LABEL_WIDTH
    plot_width = WIDTH - LABEL_WIDTH - VALUE_ROOM - 20
    top = 100  # title, subtitle, legend

    def x(value: float) -> float:
        return plot_left + plot_width * min(value, clip) / clip

    sides = [s for s in ("kvstores", "langchain") if any(getattr(r, s) is not None for r in rows)]
    body: list[str] = []
    y = top
    backend = None
    for row in rows:
        if row.backend != backend:
            backend = row.backend
            y += 6
            body.append(
                f'<text class="backend" x="10" y="{y + 15}" font-weight="bold" '
                f'font-size="14">{escape(backend)}</text>'
            )
            if "langchain" in sides and all(
                r.langchain is None for r in rows if r.backend == backend
            ):
                body.append(
                    f'<text class="note" x="{plot_left}" y="{y + 15}" font-size="11" '
                    f'fill="#777">no LangChain side</text>'
                )
            y += BACKEND_HEAD
        bars = [(s, getattr(row, s)) for s in sides]
        height = BAR * len(bars)
        body.append(
            f'<text class="phase" x="{plot_left - 8}" y="{y + height / 2 + 4:.1f}" '
            f'text-anchor="end" font-size="12">{escape(row.phase)}</text>'
        )
        for side, value in bars:
            if value is not None:
                body.append(_bar(side, value, row, y, x, clip, plot_left))
            y += BAR
        y += GAP
    bottom = y + 4
    height = bottom + 50

    grid = []
    for tick in _ticks(clip):
        tx = x(tick)
        grid.append(
            f'<line x1="{tx:.1f}" y1="{top}" x2="{tx:.1f}" y2="{bottom}" stroke="#e4e4e4"/>'
            f'<text class="tick" x="{tx:.1f}" y="{bottom + 16}" text-anchor="middle" '
            f'font-size="11">{tick:g}</text>'
        )
    references = [
        f'<line class="reference" data-ratio="1.0" x1="{x(1):.1f}" y1="{top - 6}" '
        f'x2="{x(1):.1f}" y2="{bottom}" stroke="#222" stroke-width="1.5"/>',
        f'<text x="{x(1) + 4:.1f}" y="{top - 8}" font-size="11">1.0 = raw driver</text>',
        f'<line class="reference" data-ratio="0.9" x1="{x(0.9):.1f}" y1="{top - 6}" '
        f'x2="{x(0.9):.1f}" y2="{bottom}" stroke="#b22" stroke-width="1" '
        f'stroke-dasharray="4,3"/>',
        f'<text x="{x(0.9) - 4:.1f}" y="{top - 8}" font-size="11" text-anchor="end" '
        f'fill="#b22">0.9</text>',
    ]
    legend = []
    lx = plot_left
    for side in sides:
        legend.append(
            f'<rect class="legend {side}" x="{lx}" y="52" width="14" height="10" '
            f'fill="{COLORS[side]}"/>'
            f'<text x="{lx + 20}" y="61" font-size="12">{escape(NAMES[side])}</text>'
        )
        lx += 170
    legend.append(
        f'<text x="{lx}" y="61" font-size="12" fill="#555">bars past {clip:g} are cut '
        f"(jagged end) and labelled with their value</text>"
    )
    axis = (
        f'<text class="axis" x="{plot_left + plot_width / 2:.1f}" y="{bottom + 36}" '
        f'text-anchor="middle" font-size="12">keys per second ÷ the raw driver\'s '
        f"(above 1: faster than the raw driver; linear scale, cut at {clip:g})</text>"
    )
    head = [
        f'<text class="title" x="10" y="24" font-size="18" font-weight="bold">'
        f"{escape(title)}</text>",
        f'<text class="subtitle" x="10" y="42" font-size="12" fill="#555">'
        f"{escape(_subtitle(runs))}</text>",
    ]
    return "\n".join(
        [
            f'<svg xmlns="http://www.w3.org/2000/svg" width="{WIDTH}" height="{height:.0f}" '
            f'viewBox="0 0 {WIDTH} {height:.0f}" font-family="{FONTS}">',
            f"<title>{escape(title)}</title>",
            f'<rect width="{WIDTH}" height="{height:.0f}" fill="white"/>',
            *head,
            *legend,
            *grid,
            *references,
            *body,
            axis,
            "</svg>",
            "",
        ]
    )


def _bar(side: str, value: float, row: Row, y: float, x: Any, clip: float, left: float) -> str:
    clipped = value > clip
    end = x(value)
    label = f"{row.backend} {row.phase}: {NAMES[side]} = {_fmt(value)}"
    attrs = (
        f'class="bar {side}{" clipped" if clipped else ""}" '
        f"data-backend={quoteattr(row.backend)} data-phase={quoteattr(row.phase)} "
        f'data-ratio="{value:.4f}"'
    )
    if clipped:  # a jagged right end, then the value past the edge
        h = BAR - 2
        points = (
            f"{left},{y + 1} {end - 6:.1f},{y + 1} {end:.1f},{y + 1 + h / 4:.1f} "
            f"{end - 4:.1f},{y + 1 + h / 2:.1f} {end:.1f},{y + 1 + 3 * h / 4:.1f} "
            f"{end - 6:.1f},{y + 1 + h} {left},{y + 1 + h}"
        )
        shape = f'<polygon {attrs} points="{points}" fill="{COLORS[side]}">'
        text = (
            f'<text class="value clipped" x="{end + 4:.1f}" y="{y + BAR - 2}" font-size="11" '
            f'font-weight="bold">{_fmt(value)}</text>'
        )
    else:
        shape = (
            f'<rect {attrs} x="{left}" y="{y + 1}" width="{end - left:.1f}" height="{BAR - 2}" '
            f'fill="{COLORS[side]}">'
        )
        text = (
            f'<text class="value" x="{end + 4:.1f}" y="{y + BAR - 2}" font-size="9" '
            f'fill="#444">{_fmt(value)}</text>'
        )
    tag = "polygon" if clipped else "rect"
    return f"{shape}<title>{escape(label)}</title></{tag}>{text}"


_OPS = (
    ("mset", "mset"),
    ("mget hits", "mget_hits"),
    ("mget misses", "mget_misses"),
    ("yield_keys", "yield_keys"),
    ("mdelete", "mdelete"),
)


def markdown(rows: Sequence[Row], batches: Sequence[int] = (1, 100)) -> str:
    """A markdown table of kvstores ÷ raw: a row per phase, sync and async, a column per
    backend; a cell is ``batch 1 / batch 100`` (the listings are not batched), and
    LangChain ÷ raw in brackets at the last batch where the run had that side."""
    by_key = {(r.backend, r.op, r.batch): r for r in rows}
    backends = list(dict.fromkeys(r.backend for r in rows))

    def cell(backend: str, op: str) -> str:
        listing = op.endswith("yield_keys")
        found = [by_key.get((backend, op, None if listing else b)) for b in batches]
        found = found[:1] if listing else found
        if all(r is None for r in found):
            return "–"
        text = " / ".join("–" if r is None else f"{r.kvstores:.2f}" for r in found)
        last = found[-1]
        if last is not None and last.langchain is not None:
            text += f" ({last.langchain:.2f})"
        return text

    lines = [  # backends by their first word: "mongodb bytes (ferretdb …)" is "mongodb bytes"
        "| phase | " + " | ".join(b.split(" (")[0] for b in backends) + " |",
        "|---|" + "--:|" * len(backends),
    ]
    for prefix in ("", "a"):
        for label, op in _OPS:
            name = prefix + op
            cells = [cell(b, name) for b in backends]
            if any(c != "–" for c in cells):
                lines.append(f"| {prefix + label} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("files", nargs="+", help="JSON Lines files written by --json")
    p.add_argument("--out", default="speed.svg", help="the SVG to write (default speed.svg)")
    p.add_argument("--batch", type=int, help="keep this batch size (and the listings)")
    p.add_argument("--title", default="kvstores and LangChain's stores against the raw driver")
    p.add_argument("--clip", type=float, default=3.0, help="cut bars longer than this ratio")
    p.add_argument(
        "--markdown",
        action="store_true",
        help="print a markdown table (batch 1 / batch 100 per cell) instead of writing the SVG",
    )
    return p


def main(argv: Sequence[str] | None = None) -> Path:
    args = build_parser().parse_args(argv)
    if args.clip <= 1:
        raise SystemExit("--clip must be above 1")
    runs, rows = load(args.files)
    if args.markdown:
        print(markdown(rows), end="")
        return Path(args.out)
    rows = keep_batch(rows, args.batch)
    if not rows:
        raise SystemExit("no results with a raw baseline in " + ", ".join(args.files))
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(render(rows, title=args.title, clip=args.clip, runs=runs), encoding="utf-8")
    print(f"{out}: {len(rows)} phases", file=sys.stderr)
    return out


if __name__ == "__main__":
    main()
