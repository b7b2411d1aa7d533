"""Icons and desktop integration files, found the same way from a checkout or a wheel."""

from __future__ import annotations

from importlib import resources
from importlib.abc import Traversable

APP_ID = "io.github.extension_manager.ExtensionManager"
ICON_SIZES = (16, 24, 32, 48, 64, 128, 256, 512)


def asset(name: str) -> Traversable:
    return resources.files(__name__) / name


def icon_png(size: int) -> Traversable:
    return asset(f"icons/extension-manager-{size}.png")
