"""What every command shares: exit codes, printing results (text or ``--json``), one-line
failures, and asking on the terminal."""

from __future__ import annotations

import argparse
import json
import sys
from enum import IntEnum
from typing import Any

from cli.invocation import command_prefix, runnable
from registry.store import OperationRecord


class ExitCode(IntEnum):
    OK = 0
    FAILURE = 1  # with one plain sentence on stderr
    USAGE = 2


def emit(args: argparse.Namespace, payload: Any, text: str) -> None:
    print(json.dumps(payload, indent=2, default=str) if args.json else runnable(text))


def fail(message: str) -> ExitCode:
    print(f"extension-manager: {runnable(message)}", file=sys.stderr)
    return ExitCode.FAILURE


def on_terminal() -> bool:
    return sys.stdin is not None and sys.stdin.isatty()


def ask(question: str) -> bool:
    """A yes/no question on the terminal; anything but yes (or end of input) is no."""
    try:
        answer = input(f"{question} [y/N] ")
    except EOFError:
        return False
    return answer.strip().lower() in ("y", "yes")


def unconfirmed(example: str) -> ExitCode:
    print(
        "extension-manager: nothing was changed. Confirm with --yes when not running on a "
        f"terminal (for example: {command_prefix()} {example}).",
        file=sys.stderr,
    )
    return ExitCode.USAGE


def operation_payload(record: OperationRecord) -> dict[str, Any]:
    return {name: getattr(record, name) for name in OperationRecord.__slots__}
