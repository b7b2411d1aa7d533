"""Build step: the checkout's top-level folders become one installed package.

A checkout keeps the app's parts at the top (``main.py``, ``cli/``, ``gui/``, ``registry/``,
``migrations/``, ``assets/``), where ``python main.py`` and the tests import them by those names.
Installed, names that generic would collide with other distributions (``registry`` and
``migrations`` exist on the package index), so the wheel holds them under one package instead:
``extension_manager.registry`` and so on, with ``extension_manager.main`` as the entry point.

Before setuptools reads the project (``setup.py`` calls :func:`stage_package`), this copies
the parts into ``build/package/extension_manager/`` and rewrites their imports of each other
to the package's names. Only import statements are rewritten, found with the tokenizer rather
than by searching text, and a form this step does not know how to rewrite stops the build.
"""

from __future__ import annotations

import io
import shutil
import tokenize
from pathlib import Path

PACKAGE = "extension_manager"
PARTS = ("cli", "gui", "registry", "migrations", "assets")
ENTRY_MODULE = "main"
ROOT = Path(__file__).resolve().parent
STAGED = ROOT / "build" / "package"

PACKAGE_INIT = '''"""Extension Manager: install, track and manage extensions from .zip files."""
'''
PACKAGE_MAIN = '''"""``python -m extension_manager``, the same as ``extension-manager``."""

import sys

from extension_manager.main import main

sys.exit(main())
'''


class UnsupportedImportError(RuntimeError):
    pass


def rewrite_imports(source: str, where: str) -> str:
    """``source`` with every import of one of the app's parts made absolute under the package:
    ``from registry.store import X`` -> ``from extension_manager.registry.store import X``,
    ``import assets`` -> ``from extension_manager import assets``."""
    own = {*PARTS, ENTRY_MODULE}
    tokens = list(tokenize.generate_tokens(io.StringIO(source).readline))
    lines = source.splitlines(keepends=True)
    edits: list[tuple[int, int, int, str]] = []  # line, start column, end column, new text
    for index, token in enumerate(tokens):
        if token.type != tokenize.NAME or token.string not in ("from", "import"):
            continue
        if not _starts_statement(tokens, index):
            continue
        name_token = tokens[index + 1]
        if name_token.type != tokenize.NAME or name_token.string not in own:
            continue
        (row, start), (_, end) = name_token.start, name_token.end
        if token.string == "from":
            edits.append((row, start, end, f"{PACKAGE}.{name_token.string}"))
            continue
        following = tokens[index + 2]
        if following.type in (tokenize.NEWLINE, tokenize.COMMENT) or following.string == ";":
            # ``import assets`` binds ``assets``: the package's own form binds the same name.
            edits.append((row, token.start[1], end, f"from {PACKAGE} import {name_token.string}"))
        elif following.string == ".":
            edits.append((row, start, end, f"{PACKAGE}.{name_token.string}"))
            _require_alias(tokens, index + 2, where, row)
        else:
            raise UnsupportedImportError(f"{where}:{row}: cannot rewrite this import")
    for row, start, end, text in sorted(edits, reverse=True):
        line = lines[row - 1]
        lines[row - 1] = line[:start] + text + line[end:]
    return "".join(lines)


def _starts_statement(tokens: list[tokenize.TokenInfo], index: int) -> bool:
    previous = next(
        (
            token
            for token in reversed(tokens[:index])
            if token.type not in (tokenize.INDENT, tokenize.DEDENT, tokenize.NL, tokenize.COMMENT)
        ),
        None,
    )
    return (
        previous is None
        or previous.type in (tokenize.NEWLINE, tokenize.ENCODING)
        or (previous.type == tokenize.OP and previous.string == ";")
        or (previous.type == tokenize.OP and previous.string == ":")
    )


def _require_alias(tokens: list[tokenize.TokenInfo], index: int, where: str, row: int) -> None:
    """``import registry.store`` would bind ``extension_manager``, not ``registry``: only the
    aliased form (``import registry.store as store``) keeps its meaning once rewritten."""
    for token in tokens[index:]:
        if token.type == tokenize.NEWLINE:
            break
        if token.type == tokenize.NAME and token.string == "as":
            return
    raise UnsupportedImportError(f"{where}:{row}: a dotted import needs 'as NAME' here")


def stage_package(target: Path = STAGED) -> Path:
    """Write the package tree under ``target`` and return the package folder."""
    package = target / PACKAGE
    if package.exists():
        shutil.rmtree(package)
    package.mkdir(parents=True)
    (package / "__init__.py").write_text(PACKAGE_INIT, encoding="utf-8")
    (package / "__main__.py").write_text(PACKAGE_MAIN, encoding="utf-8")
    _stage_module(ROOT / f"{ENTRY_MODULE}.py", package / f"{ENTRY_MODULE}.py")
    for part in PARTS:
        for path in sorted((ROOT / part).rglob("*")):
            relative = path.relative_to(ROOT)
            if "__pycache__" in relative.parts or path.is_dir():
                continue
            destination = package / relative
            destination.parent.mkdir(parents=True, exist_ok=True)
            if path.suffix == ".py":
                _stage_module(path, destination)
            else:
                shutil.copy2(path, destination)
    return package


def _stage_module(source: Path, destination: Path) -> None:
    text = source.read_text(encoding="utf-8")
    destination.write_text(rewrite_imports(text, str(source.relative_to(ROOT))), encoding="utf-8")
