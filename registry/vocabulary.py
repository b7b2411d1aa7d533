"""The words of the registry: what kinds of operation there are, what state each can be in, and
how each is said to a person. The window and the command line both use these; the database
stores the enum values (which are plain strings, so rows and members compare equal)."""

from __future__ import annotations

from enum import StrEnum


class OperationKind(StrEnum):
    INSTALL = "INSTALL"
    UPGRADE = "UPGRADE"
    REINSTALL = "REINSTALL"
    DOWNGRADE = "DOWNGRADE"
    UNINSTALL = "UNINSTALL"
    # Back to a kept version, its files and its settings.
    ROLLBACK = "ROLLBACK"
    # Turned off because it does not fit the running app, and turned on again by the person
    # although it does not: both recorded so the history says why an extension stopped.
    DISABLE = "DISABLE"
    ENABLE = "ENABLE"

    @property
    def verb(self) -> str:
        """The button or question: "Upgrade"."""
        return _VERBS[self]

    @property
    def done(self) -> str:
        """What a finished one is called: "Upgraded"."""
        return _DONE[self]

    @property
    def noun(self) -> str:
        """The operation in a sentence: "an upgrade"."""
        return _NOUNS[self]


class OperationStatus(StrEnum):
    INSTALLING = "INSTALLING"
    COMPLETED = "COMPLETED"
    FAILED = "FAILED"
    # The person said no, or pressed Cancel: nothing was changed, and nothing went wrong.
    CANCELLED = "CANCELLED"
    UNINSTALLING = "UNINSTALLING"

    @property
    def active(self) -> bool:
        return self in ACTIVE_STATUSES

    @property
    def words(self) -> str:
        return _STATUS_WORDS[self]


ACTIVE_STATUSES = frozenset({OperationStatus.INSTALLING, OperationStatus.UNINSTALLING})

_VERBS = {
    OperationKind.INSTALL: "Install",
    OperationKind.UPGRADE: "Upgrade",
    OperationKind.REINSTALL: "Reinstall",
    OperationKind.DOWNGRADE: "Downgrade",
    OperationKind.UNINSTALL: "Uninstall",
    OperationKind.ROLLBACK: "Roll back",
    OperationKind.DISABLE: "Turn off",
    OperationKind.ENABLE: "Turn on",
}
_DONE = {
    OperationKind.INSTALL: "Installed",
    OperationKind.UPGRADE: "Upgraded",
    OperationKind.REINSTALL: "Reinstalled",
    OperationKind.DOWNGRADE: "Downgraded",
    OperationKind.UNINSTALL: "Uninstalled",
    OperationKind.ROLLBACK: "Rolled back",
    OperationKind.DISABLE: "Turned off",
    OperationKind.ENABLE: "Turned on",
}
_NOUNS = {
    OperationKind.INSTALL: "an install",
    OperationKind.UPGRADE: "an upgrade",
    OperationKind.REINSTALL: "a reinstall",
    OperationKind.DOWNGRADE: "a downgrade",
    OperationKind.UNINSTALL: "an uninstall",
    OperationKind.ROLLBACK: "a rollback",
    OperationKind.DISABLE: "turning off",
    OperationKind.ENABLE: "turning on",
}
_STATUS_WORDS = {
    OperationStatus.INSTALLING: "Installing",
    OperationStatus.UNINSTALLING: "Uninstalling",
    OperationStatus.COMPLETED: "Completed",
    OperationStatus.FAILED: "Failed",
    OperationStatus.CANCELLED: "Cancelled",
}


def kind_of(value: str) -> OperationKind:
    """A stored kind; an unknown one (a newer app's) reads as a plain install."""
    try:
        return OperationKind(value)
    except ValueError:
        return OperationKind.INSTALL


def change_text(kind: str, from_version: str | None, to_version: str | None) -> str:
    """'Upgrade 1.0.0 → 1.1.0' and friends, from what is known so far."""
    verb = kind_of(kind).verb
    if from_version and to_version:
        return f"{verb} {from_version} → {to_version}"
    if to_version or from_version:
        return f"{verb} {to_version or from_version}"
    return verb


def status_words(value: str) -> str:
    """A stored status for people; an unknown one (a newer app's) is shown as it is."""
    try:
        return OperationStatus(value).words
    except ValueError:
        return value
