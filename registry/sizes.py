"""Sizes in messages: one way of writing them everywhere a person reads one."""

from __future__ import annotations


def format_size(size: int) -> str:
    """ "812 bytes", "1.0 MiB": binary units, as file managers on Linux and the limits use."""
    if size < 1024:
        return exact_size(size)
    value = float(size)
    for unit in ("KiB", "MiB", "GiB", "TiB"):
        value /= 1024
        if value < 1024 or unit == "TiB":
            return f"{value:.1f} {unit}"
    raise AssertionError("unreachable")


def exact_size(size: int) -> str:
    return f"{size:,} bytes" if size != 1 else "1 byte"


def sizes_apart(size: int, limit: int) -> tuple[str, str]:
    """``size`` and ``limit`` for a message saying one exceeds the other: rounded, unless the
    rounding makes them look equal ("256.0 KiB, more than the 256.0 KiB"), then exact."""
    shown_size, shown_limit = format_size(size), format_size(limit)
    if shown_size == shown_limit:
        return exact_size(size), exact_size(limit)
    return shown_size, shown_limit
