"""Extension Manager's composition root. Read top to bottom, this is the launch sequence:

1. parse the arguments (a command word selects the command line, else the window);
2. set up logging;
3. resolve the data folder;
4. command line: ``cli`` opens the registry (lock, preflight, backup, migrations, recovery) and
   runs the command;
5. window: check for a display, hand the files to a window already running for this data
   folder if there is one, and only then open the registry on one background thread while Qt
   loads and the QApplication is created (``gui.launch``); the window is built from the opened
   registry (``gui.app``).

The window's code is imported only when a window is wanted, so commands start fast and never
need a display; the commands' code is imported only for a command, so the window starts fast.
"""

from __future__ import annotations

import argparse
import logging
import logging.handlers
import sys
import time
from pathlib import Path

from cli.names import COMMAND_NAMES
from registry.paths import DataPaths, default_log_dir, resolve_data_dir
from registry.version import APP_VERSION

log = logging.getLogger("extension_manager")


def _common_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--data-dir",
        metavar="DIR",
        help="where the registry and extensions live "
        "(default: $EXTENSION_MANAGER_DATA_DIR, else the user data folder)",
    )
    parser.add_argument("--verbose", "-v", action="store_true", help="log debug details to stderr")


def build_window_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="extension-manager",
        description="Install, track and manage extensions delivered as .zip files. "
        "Without a command, opens the window (installing any ZIP files given).",
        epilog=f"commands: {', '.join(COMMAND_NAMES)} (see 'extension-manager COMMAND --help')",
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {APP_VERSION}")
    _common_options(parser)
    parser.add_argument(
        "--smoke-test",
        action="store_true",
        help="launch fully (migrations, window painted once), print 'ready in N ms', exit",
    )
    parser.add_argument("files", nargs="*", metavar="ZIP", help="extension archives to install")
    return parser


def build_command_parser() -> argparse.ArgumentParser:
    from cli.commands import add_commands

    parser = argparse.ArgumentParser(prog="extension-manager")
    _common_options(parser)
    add_commands(parser)
    return parser


def _first_positional(argv: list[str]) -> str | None:
    words = iter(argv)
    for word in words:
        if word == "--data-dir":
            next(words, None)
        elif word == "--":
            return next(words, None)
        elif not word.startswith("-"):
            return word
    return None


def parse_arguments(argv: list[str]) -> argparse.Namespace:
    """A first word that names a command selects the command line; files select the window.
    A first word that is neither (a typo, or a command this version does not have) is a usage
    error, not a window trying to install a file of that name."""
    first = _first_positional(argv)
    if first in COMMAND_NAMES:
        return build_command_parser().parse_args(argv)
    parser = build_window_parser()
    if first is not None and not Path(first).exists():
        commands = ", ".join(COMMAND_NAMES)
        parser.error(f"'{first}' is neither a command nor a file. Commands: {commands}.")
    return parser.parse_args(argv)


def setup_logging(verbose: bool, log_dir: Path | None = None) -> Path | None:
    """A rotating file in the user log dir, plus stderr with ``--verbose``; a log dir we cannot
    write is not fatal. Without ``--verbose`` nothing from the log reaches the terminal: every
    outcome a person needs is printed by the command itself, in plain words, and the log's
    details (tracebacks included) stay in the file."""
    root = logging.getLogger()
    root.setLevel(logging.DEBUG)
    if verbose:
        stderr = logging.StreamHandler()
        stderr.setFormatter(logging.Formatter("%(levelname)s: %(message)s"))
        root.addHandler(stderr)
    else:
        # Stops logging's last-resort handler from printing warnings when the file is missing.
        root.addHandler(logging.NullHandler())
    log_dir = log_dir if log_dir is not None else default_log_dir()
    try:
        log_dir.mkdir(parents=True, exist_ok=True)
        log_file = log_dir / "extension-manager.log"
        handler = logging.handlers.RotatingFileHandler(
            log_file, maxBytes=1_000_000, backupCount=3, encoding="utf-8"
        )
    except OSError:
        return None
    handler.setLevel(logging.INFO)
    handler.setFormatter(
        logging.Formatter("%(asctime)s %(process)d %(name)s %(levelname)s %(message)s")
    )
    root.addHandler(handler)
    return log_file


def main(argv: list[str] | None = None) -> int:
    started = time.perf_counter()
    argv = list(sys.argv[1:] if argv is None else argv)
    try:
        args = parse_arguments(argv)
    except SystemExit as exit_request:
        return int(exit_request.code or 0)
    setup_logging(args.verbose)
    paths = DataPaths(resolve_data_dir(args.data_dir))

    if getattr(args, "command", None):
        from cli.commands import run_command

        return int(run_command(args, paths))

    from gui.launch import run_gui

    return run_gui(
        paths,
        files=[Path(name).absolute() for name in args.files],
        smoke_test=args.smoke_test,
        started=started,
    )


if __name__ == "__main__":
    sys.exit(main())
