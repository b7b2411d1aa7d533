"""Archive limits, in one place so that every check and every message uses the same numbers."""

from __future__ import annotations

from dataclasses import dataclass

MiB = 1024 * 1024
GiB = 1024 * MiB


@dataclass(frozen=True, slots=True)
class Limits:
    """What an extension archive may contain. Override any field to configure."""

    max_entries: int = 65_535
    max_file_bytes: int = 256 * MiB
    max_total_bytes: int = 1 * GiB
    # Entries larger than this must not compress better than ``max_compression_ratio``:1.
    ratio_checked_above_bytes: int = 1 * MiB
    max_compression_ratio: int = 200
    max_manifest_bytes: int = 256 * 1024
    max_icon_bytes: int = 1 * MiB
    max_icon_pixels_per_side: int = 1024
    # Windows' classic MAX_PATH minus room for the extensions folder prefix.
    max_path_chars: int = 200
    max_component_chars: int = 100
    # Linux file systems store at most 255 bytes of UTF-8 per file or folder name; Windows and
    # macOS count 255 UTF-16 units, never more than the UTF-8 bytes, so this one limit fits all
    # three. 86 CJK characters already exceed it, well within ``max_component_chars``.
    max_component_bytes: int = 255


DEFAULT_LIMITS = Limits()
