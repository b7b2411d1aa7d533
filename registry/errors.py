"""Errors a person can act on.

Expected failures (a bad archive, an invalid manifest, a registry that is newer than the app)
are raised as subclasses of :class:`UserFacingError`; their ``str()`` is one or more plain
sentences saying what went wrong and what to do. Anything else is a bug and is logged with a
traceback.
"""

from __future__ import annotations


class UserFacingError(Exception):
    """A failure whose message is meant to be shown to the user as it is."""


class RegistryError(UserFacingError):
    """The registry database cannot be used (not migrated, newer, corrupt, foreign, busy)."""


class RegistryNotMigratedError(RegistryError):
    """The registry exists but its schema is not the one this app expects."""


class ArchiveError(UserFacingError):
    """The file is not an archive we can install safely."""


class ManifestError(UserFacingError):
    """The manifest is missing or invalid; ``problems`` lists every problem found."""

    def __init__(self, problems: list[str]) -> None:
        self.problems = list(problems)
        if len(self.problems) == 1:
            text = f"The extension's manifest.json is invalid: {self.problems[0]}"
        else:
            listed = "\n".join(f"  - {problem}" for problem in self.problems)
            text = f"The extension's manifest.json has {len(self.problems)} problems:\n{listed}"
        super().__init__(text)


class InstallCancelledError(UserFacingError):
    """The user cancelled an operation before it finished."""

    def __init__(self) -> None:
        super().__init__("Cancelled: nothing was changed.")


class RegistryBusyError(RegistryError):
    """Another process of the app holds the registry while this one needs it exclusively."""


class RegistryNeedsRescueError(RegistryError):
    """The registry file is missing, damaged or not a database, while there is something to
    recover: ``registry.rescue`` can restore a backup or rebuild it from the extensions on disk.
    """


class MigrationError(RegistryError):
    """A pending step failed; the database was rolled back to the version it had before."""


class OperationNotFoundError(RegistryError):
    def __init__(self, install_id: int) -> None:
        super().__init__(f"There is no install operation number {install_id} in the registry.")


class ConfigError(UserFacingError):
    """A settings value does not fit the extension's declared defaults."""


class InstallRefusedError(UserFacingError):
    """The archive is fine, but installing it now is not (version, compatibility, busy)."""
