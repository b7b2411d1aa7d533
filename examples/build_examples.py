"""Build the example extensions into installable ``.zip`` archives.

Each folder next to this script that holds a ``manifest.json`` is one extension. The archives
are reproducible: entries are sorted, timestamps and permissions fixed, and the compression level
pinned, so building twice gives the same bytes.

Usage: ``python examples/build_examples.py OUTDIR``
"""

from __future__ import annotations

import argparse
import struct
import sys
import zipfile
import zlib
from pathlib import Path

EXAMPLES_DIR = Path(__file__).resolve().parent
# The earliest timestamp a zip entry can hold; any fixed value makes the output reproducible.
FIXED_DATE_TIME = (1980, 1, 1, 0, 0, 0)
COMPRESS_LEVEL = 9
# Editor and OS leftovers that must never end up in an extension.
SKIPPED_NAMES = frozenset({".DS_Store", "Thumbs.db", "__pycache__"})


def example_names() -> list[str]:
    """The folder names of all examples, sorted."""
    return sorted(
        path.name
        for path in EXAMPLES_DIR.iterdir()
        if path.is_dir() and (path / "manifest.json").is_file()
    )


def _files(folder: Path) -> list[tuple[str, Path]]:
    found = []
    for path in folder.rglob("*"):
        relative = path.relative_to(folder)
        if any(part in SKIPPED_NAMES or part.startswith(".") for part in relative.parts):
            continue
        if path.is_file():
            found.append((relative.as_posix(), path))
    return sorted(found)


def build_example(name: str, dest_dir: Path) -> Path:
    """Zip ``examples/<name>/`` into ``dest_dir/<name>.zip`` and return the archive's path."""
    folder = EXAMPLES_DIR / name
    if name not in example_names():
        raise ValueError(f"no example named {name!r}; known: {', '.join(example_names())}")
    dest_dir.mkdir(parents=True, exist_ok=True)
    target = dest_dir / f"{folder.name}.zip"
    with zipfile.ZipFile(target, "w") as archive:
        for arcname, path in _files(folder):
            info = zipfile.ZipInfo(arcname, date_time=FIXED_DATE_TIME)
            info.compress_type = zipfile.ZIP_DEFLATED
            # Unix, regular file, rw-r--r--, whatever the platform building it.
            info.create_system = 3
            info.external_attr = (0o100644 & 0xFFFF) << 16
            archive.writestr(info, path.read_bytes(), compresslevel=COMPRESS_LEVEL)
    return target


def build_all(dest_dir: Path) -> list[Path]:
    """Build every example into ``dest_dir``; return the archives' paths in name order."""
    return [build_example(name, dest_dir) for name in example_names()]


def png_bytes(width: int, height: int, pixel: tuple[int, int, int, int] | None = None) -> bytes:
    """A valid RGBA PNG: a solid colour if ``pixel`` is given, else the examples' icon pattern.

    Written out by hand so the examples' icon can be regenerated without an imaging library.
    """

    def chunk(kind: bytes, payload: bytes) -> bytes:
        crc = zlib.crc32(kind + payload) & 0xFFFFFFFF
        return struct.pack(">I", len(payload)) + kind + payload + struct.pack(">I", crc)

    rows = bytearray()
    for y in range(height):
        rows.append(0)  # filter type "None" for this scanline
        for x in range(width):
            if pixel is not None:
                rows.extend(pixel)
            else:
                rows.extend(_icon_pixel(x, y, width, height))
    header = struct.pack(">IIBBBBB", width, height, 8, 6, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", header)
        + chunk(b"IDAT", zlib.compress(bytes(rows), 9))
        + chunk(b"IEND", b"")
    )


def _icon_pixel(x: int, y: int, width: int, height: int) -> tuple[int, int, int, int]:
    # A blue rounded square with a white disc, so the icon is recognisable in the UI.
    cx, cy = (width - 1) / 2, (height - 1) / 2
    radius = min(width, height) / 2
    dx, dy = abs(x - cx), abs(y - cy)
    corner = radius * 0.25
    inside_square = not (
        dx > radius - corner
        and dy > radius - corner
        and (dx - (radius - corner)) ** 2 + (dy - (radius - corner)) ** 2 > corner**2
    )
    if not inside_square:
        return (0, 0, 0, 0)
    if dx * dx + dy * dy <= (radius * 0.45) ** 2:
        return (255, 255, 255, 255)
    return (37, 99, 235, 255)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Build the example extensions as .zip files.")
    parser.add_argument("outdir", type=Path, help="folder to write the archives to")
    parser.add_argument(
        "--write-icons",
        action="store_true",
        help="regenerate the examples' icon.png files before building",
    )
    args = parser.parse_args(argv)
    if args.write_icons:
        for name in example_names():
            icon = EXAMPLES_DIR / name / "icon.png"
            if icon.exists():
                icon.write_bytes(png_bytes(64, 64))
    for path in build_all(args.outdir):
        print(path)
    return 0


if __name__ == "__main__":
    sys.exit(main())
