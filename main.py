"""Extension Manager's composition root.

Read top to bottom, this is the launch sequence: arguments -> logging -> data folder ->
(lock -> preflight -> migrations -> recovery, in ``registry.startup``) -> the window or a
command. The window's code is imported only when a window is wanted, so commands start fast and
never need a display.
"""

from __future__ import annotations

import argparse
import logging
import logging.handlers
import sys
import time
from pathlib import Path

from registry.paths import DataPaths, default_log_dir, resolve_data_dir

APP_VERSION = "0.1.0"
EXIT_OK, EXIT_FAILURE, EXIT_USAGE = 0, 1, 2

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
    from registry.commands import COMMANDS

    parser = argparse.ArgumentParser(
        prog="extension-manager",
        description="Install, track and manage extensions delivered as .zip files. "
        "Without a command, opens the window (installing any ZIP files given).",
        epilog="commands: " + ", ".join(COMMANDS) + " (see 'extension-manager COMMAND --help')",
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
    from registry.commands import add_commands

    parser = argparse.ArgumentParser(prog="extension-manager")
    _common_options(parser)
    add_commands(parser)
    return parser


def parse_arguments(argv: list[str]) -> argparse.Namespace:
    """A first word that names a command selects the command line; anything else the window."""
    from registry.commands import COMMANDS

    words = iter(argv)
    first_positional = None
    for word in words:
        if word == "--data-dir":
            next(words, None)
        elif not word.startswith("-"):
            first_positional = word
            break
    if first_positional in COMMANDS:
        return build_command_parser().parse_args(argv)
    return build_window_parser().parse_args(argv)


def setup_logging(verbose: bool, log_dir: Path | None = None) -> Path | None:
    """A rotating file in the user log dir plus stderr; a log dir we cannot write is not fatal."""
    root = logging.getLogger()
    root.setLevel(logging.DEBUG)
    stderr = logging.StreamHandler()
    stderr.setLevel(logging.DEBUG if verbose else logging.WARNING)
    stderr.setFormatter(logging.Formatter("%(levelname)s: %(message)s"))
    root.addHandler(stderr)
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
        from registry.commands import run_command

        return run_command(args, paths, APP_VERSION)

    # The registry opens (and migrates) on a thread while Qt loads; no view is built before
    # that has finished: the window waits for this result.
    from registry.startup import open_in_background

    opening = open_in_background(paths)
    from gui.app import run_gui

    files = [Path(name).absolute() for name in args.files]
    return run_gui(
        paths,
        files=files,
        smoke_test=args.smoke_test,
        started=started,
        app_version=APP_VERSION,
        opener=lambda _paths: opening.result(),
    )


if __name__ == "__main__":
    sys.exit(main())
