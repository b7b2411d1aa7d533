"""The fixed vocabulary of permissions an extension may ask for.

Each name maps to the plain words shown to the user before they agree to an install. The
manifest schema (``manifest.schema.json``) lists the same names in its ``enum``; a test keeps the
two in step, so add a permission in both places.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from types import MappingProxyType

PERMISSIONS: Mapping[str, str] = MappingProxyType(
    {
        "network": "Connect to the internet and other computers",
        "filesystem-read": "Read files on your computer",
        "filesystem-write": "Create, change and delete files on your computer",
        "clipboard": "Read and change what you copy and paste",
        "notifications": "Show desktop notifications",
        "run-programs": "Start other programs on your computer",
        "camera": "Use your camera",
        "microphone": "Use your microphone",
        "location": "Find out where you are",
    }
)


def describe(names: Iterable[str]) -> list[str]:
    """Return the plain-words explanation of each permission, in the order given.

    An unknown name (which a validated manifest never contains) is described as such rather than
    dropped, so that the user is never shown a shorter list than the extension asked for.
    """
    return [PERMISSIONS.get(name, f"Unknown permission '{name}'") for name in names]
