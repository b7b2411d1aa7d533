"""The Performance table of README.md, made from the benchmarks' JSON rows.

    python benchmarks/run_all.py --write-readme          (measures, then writes the table)
    python benchmarks/run_all.py --json > rows.jsonl
    python benchmarks/readme_table.py rows.jsonl [--machine TEXT]

The table goes between the two marker comments in README.md's Performance section, under a line
naming the machine it was measured on; everything outside the markers stays as it is. Rows are
the JSON objects of ``run_all.py --json`` (keys ``name, app, floor, unit, ratio, target, met,
note``).
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import sys
from collections.abc import Iterable
from pathlib import Path
from typing import Any

README = Path(__file__).resolve().parent.parent / "README.md"
START = "<!-- benchmarks: start (made by benchmarks/run_all.py --write-readme) -->"
END = "<!-- benchmarks: end -->"


def machine_line(
    load_start: tuple[float, float, float] | None,
    load_end: tuple[float, float, float],
    started: datetime.datetime,
    *,
    quick: bool = False,
) -> str:
    """One sentence: cores, Python, load average (1 minute) at the start and end, the date."""
    python = sys.version.split()[0]
    if load_start is None:
        load = f"load average {load_end[0]:.2f} when written"
    else:
        load = f"load average {load_start[0]:.2f} at the start and {load_end[0]:.2f} at the end"
    kind = "quick run (`--quick`: fewer runs, 20 MiB zips)" if quick else "full run"
    return (
        f"Measured on {os.cpu_count()} cores, Python {python}, offscreen, {load} (1-minute), "
        f"{started:%Y-%m-%d %H:%M %Z}; {kind}."
    )


def _number(value: float, unit: str) -> str:
    if unit == "ms" and value < 100:
        return f"{value:.1f} {unit}"
    if abs(value) >= 100:
        return f"{value:,.0f} {unit}".strip()
    return f"{value:.2f} {unit}".strip()


def _target(row: dict[str, Any]) -> str:
    target, met, note = row.get("target"), row.get("met"), row.get("note") or ""
    verdict = {True: "met", False: "MISSED", None: ""}[met]
    if target is None:
        text = note or "no target; reported to watch"
    else:
        limit = f"≤ {target:.2f}x" if isinstance(target, int | float) else f"≤ {target}"
        text = f"{limit} ({verdict})" if verdict else limit
        if note:
            text += f"; {note}"
    return text.replace("|", "\\|")


def render(rows: Iterable[dict[str, Any]]) -> str:
    lines = ["| Measurement | App | Floor | Ratio | Target |", "|---|---:|---:|---:|---|"]
    for row in rows:
        unit = str(row.get("unit") or "")
        ratio = row.get("ratio")
        cells = [
            str(row["name"]).replace("|", "\\|"),
            _number(float(row["app"]), unit),
            _number(float(row["floor"]), unit),
            "—" if ratio is None else f"{float(ratio):.2f}x",
            _target(row),
        ]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def write(readme: Path, rows: Iterable[dict[str, Any]], machine: str) -> None:
    """Replace what is between the markers with ``machine`` and the table."""
    text = readme.read_text(encoding="utf-8")
    if START not in text or END not in text:
        raise SystemExit(f"{readme} has no benchmark markers ({START} … {END})")
    before, rest = text.split(START, 1)
    _old, after = rest.split(END, 1)
    table = f"{START}\n{machine}\n\n{render(rows)}\n{END}"
    readme.write_text(before + table + after, encoding="utf-8")


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("rows", nargs="?", type=Path, help="JSON lines (default: stdin)")
    parser.add_argument("--machine", help="the machine line (default: this machine, now)")
    parser.add_argument("--readme", type=Path, default=README)
    args = parser.parse_args()
    text = args.rows.read_text(encoding="utf-8") if args.rows else sys.stdin.read()
    stripped = text.strip()
    if stripped.startswith("["):
        rows = json.loads(stripped)
    else:
        rows = [json.loads(line) for line in text.splitlines() if line.startswith("{")]
    now = datetime.datetime.now().astimezone()
    write(args.readme, rows, args.machine or machine_line(None, os.getloadavg(), now))
    return 0


if __name__ == "__main__":
    sys.exit(main())
