"""Stages the installed package before setuptools reads the project; everything else about the
project is in pyproject.toml."""

import sys
from pathlib import Path

from setuptools import setup

# setuptools runs this file without its folder on the import path.
sys.path.insert(0, str(Path(__file__).resolve().parent))

from build_package import stage_package

stage_package()
setup()
