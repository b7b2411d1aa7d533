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


_UNITS = {
    "": 1,
    "b": 1,
    "k": 1024,
    "kib": 1024,
    "kb": 1000,
    "m": 1024**2,
    "mib": 1024**2,
    "mb": 1000**2,
    "g": 1024**3,
    "gib": 1024**3,
    "gb": 1000**3,
    "t": 1024**4,
    "tib": 1024**4,
    "tb": 1000**4,
}


def parse_size(text: str) -> int:
    """ "500MiB", "1.5 GiB", "2G", "300000": a size as a person types it (binary units unless
    the unit says kB/MB/GB). ValueError with the accepted forms otherwise."""
    cleaned = text.strip().replace(",", "").replace("_", "")
    number = cleaned.rstrip("bBkKmMgGtTiI ")
    unit = cleaned[len(number) :].strip().lower()
    try:
        value = float(number)
    except ValueError:
        value = -1.0
    if unit not in _UNITS or value < 0:
        raise ValueError("must be a size such as 500MiB, 2GiB or 300000 (bytes)")
    return int(value * _UNITS[unit])
