"""The app's version, from one source: this constant. The build reads it for the package's
metadata (``pyproject.toml`` names it as the dynamic version), so a checkout and an installed
wheel show the same number, and no launch pays for reading package metadata to learn it."""

from __future__ import annotations

DISTRIBUTION = "extension-manager"
APP_VERSION = "0.1.0"
