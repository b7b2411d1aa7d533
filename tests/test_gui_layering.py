"""The GUI talks to the registry only through its API: no SQL, no peewee, no models."""

from __future__ import annotations

import re

from tests.conftest import REPO_ROOT

FORBIDDEN = (
    re.compile(r"^\s*(import|from)\s+peewee\b", re.MULTILINE),
    re.compile(r"^\s*(import|from)\s+playhouse\b", re.MULTILINE),
    re.compile(r"\bregistry\.models\b"),
    re.compile(r"\bexecute_sql\b|\bfetch_all\b|\bscalar\("),
    re.compile(r"\b(SELECT|INSERT|UPDATE|DELETE)\b\s+(\*|INTO|FROM|\w+\s+SET)"),
    re.compile(r"\.atomic\("),
)


def test_gui_never_writes_sql_nor_imports_the_models() -> None:
    offenders: list[str] = []
    for path in sorted((REPO_ROOT / "gui").glob("*.py")):
        text = path.read_text(encoding="utf-8")
        offenders.extend(
            f"{path.name}: {match.group(0)!r}"
            for pattern in FORBIDDEN
            for match in pattern.finditer(text)
        )
    assert offenders == []
