"""Reading and validating an extension's ``manifest.json``.

The shape of a manifest is described by ``manifest.schema.json`` (JSON Schema draft 2020-12),
which authors can point their editor at. :func:`parse_manifest` validates against that schema
and adds the checks a schema cannot express exactly (duplicate keys, non-finite numbers, full
matches without a trailing newline, semantic-version parsing and ordering, the permission
vocabulary with the list of known names). Every problem found is collected and raised once as a
:class:`~registry.errors.ManifestError`, each message starting with the field it is about.

``manifest_version`` says which manifest format a file is written in. Without it (the legacy
form) unknown top-level keys are ignored and listed in :attr:`Manifest.ignored_keys`; with
format :data:`MANIFEST_FORMAT` every top-level key must be one the format defines; a newer format
is refused with one sentence (:class:`NewerManifestFormatError`) rather than read by guesswork.

``jsonschema`` is imported only when a manifest is validated: importing it is slow and the app's
start-up time is measured.
"""

from __future__ import annotations

import functools
import json
import math
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from importlib.resources import files
from typing import TYPE_CHECKING, Any, Final
from urllib.parse import urlsplit

from registry.errors import ManifestError
from registry.permissions import PERMISSIONS

if TYPE_CHECKING:
    from importlib.resources.abc import Traversable

    from jsonschema import Draft202012Validator
    from jsonschema.exceptions import ValidationError

    from registry.requirements import VersionRange

__all__ = [
    "BROWSER_ADD_ON",
    "MANIFEST_FORMAT",
    "Manifest",
    "NewerManifestFormatError",
    "NotAnExtensionError",
    "SemVer",
    "app_version_fits",
    "check_compatibility",
    "compatibility_requirement",
    "is_extension_id",
    "parse_manifest",
    "schema_path",
]

ConfigValue = bool | int | float | str

MANIFEST_NAME: Final = "manifest.json"
BROWSER_ADD_ON: Final = (
    "This is a browser add-on (a WebExtension), not an Extension Manager extension: install it "
    "in your web browser instead."
)
REQUIRED_FIELDS: Final = ("id", "name", "version")
# The manifest format this app reads: the highest ``manifest_version`` it accepts.
MANIFEST_FORMAT: Final = 1
_APP_NAME: Final = "Extension Manager"
ID_MAX_CHARS: Final = 128
# A real manifest nests two levels; the cap keeps deep junk from exhausting the recursion of
# the schema validator (which compares list items recursively for uniqueItems).
MAX_NESTING: Final = 20

# [0-9] rather than \d: Python's \d also matches non-ASCII digits such as '١'.
_NUMBER = r"0|[1-9][0-9]*"
_PRE_ID = r"0|[1-9][0-9]*|[0-9]*[a-zA-Z-][0-9a-zA-Z-]*"
_BUILD_ID = r"[0-9a-zA-Z-]+"
_SEMVER_RE: Final = re.compile(
    rf"(?P<major>{_NUMBER})\.(?P<minor>{_NUMBER})\.(?P<patch>{_NUMBER})"
    rf"(?:-(?P<pre>(?:{_PRE_ID})(?:\.(?:{_PRE_ID}))*))?"
    rf"(?:\+(?P<build>{_BUILD_ID}(?:\.{_BUILD_ID})*))?"
)
_PRE_ID_RE: Final = re.compile(_PRE_ID)
_BUILD_RE: Final = re.compile(rf"{_BUILD_ID}(?:\.{_BUILD_ID})*")

# Always used with fullmatch: with re.search, '$' would also accept a trailing newline.
_ID_RE: Final = re.compile(r"[a-z0-9_-]+(?:\.[a-z0-9_-]+)+")
_HOMEPAGE_RE: Final = re.compile(r"https?://[^\s/?#\x00-\x1f\x7f]+(?:[/?#][^\s\x00-\x1f\x7f]*)?")
_ICON_PART_RE: Final = re.compile(r"[^/\\:\x00-\x1f\x7f]+")

# Characters that reorder how the text around them is displayed, which lets a name such as
# "Safe\u202etxt.exe" read as "Safeexe.txt": forbidden in every plain-text field.
_BIDI_CHARS: Final = frozenset(
    "\u200e\u200f"
    + "".join(map(chr, range(0x202A, 0x202F)))
    + "".join(map(chr, range(0x2066, 0x206A)))
)

# The plain-text fields, each with the control characters it may contain (lengths are the schema's).
_TEXT_FIELDS: Final[dict[str, frozenset[str]]] = {
    "name": frozenset(),
    "description": frozenset("\n"),
    "author": frozenset(),
    "license": frozenset(),
}

# Fields whose every rule apart from the JSON type is checked in Python (the schema's patterns
# are for editors; Python's `re.search` would let a trailing newline through them), so the
# schema's own message for those rules is dropped rather than reported twice.
_PYTHON_CHECKED_FIELDS: Final = frozenset(
    {"id", "version", "min_app_version", "max_app_version", "homepage", "icon", "requires"}
)
# Fields checked entirely in Python, JSON type included: the schema calls 1.0 an integer, and
# its minimum/maximum would repeat the sentence Python gives.
_PYTHON_TYPED_FIELDS: Final = frozenset({"manifest_version"})

_TYPE_WORDS: Final = {
    "string": "text",
    "array": "a list",
    "object": "an object",
    "integer": "a whole number",
    "number": "a number",
    "boolean": "true or false",
    "null": "null",
}
_CONFIG_VALUE_TYPES: Final = frozenset({"boolean", "integer", "number", "string"})


# --- Semantic versions ------------------------------------------------------------------------


@functools.total_ordering
@dataclass(frozen=True, slots=True, eq=False)
class SemVer:
    """A semantic version (https://semver.org/spec/v2.0.0.html).

    Ordering and equality follow semver precedence: a pre-release sorts before its release,
    numeric pre-release identifiers compare numerically and before alphanumeric ones, and the
    build metadata is ignored (so ``1.0.0+a == 1.0.0+b``, although ``str()`` keeps it).
    """

    major: int
    minor: int
    patch: int
    prerelease: tuple[str | int, ...] = ()
    build: str = ""

    def __post_init__(self) -> None:
        # Constructing directly must give a value that parse(str(v)) reproduces exactly.
        for part in (self.major, self.minor, self.patch):
            if type(part) is not int or part < 0:
                raise ValueError(f"version numbers must be non-negative integers, not {part!r}")
        for ident in self.prerelease:
            if type(ident) is int:
                if ident < 0:
                    raise ValueError(f"invalid pre-release identifier {ident!r}")
            elif not (
                isinstance(ident, str) and _PRE_ID_RE.fullmatch(ident) and not ident.isdigit()
            ):
                raise ValueError(f"invalid pre-release identifier {ident!r}")
        if self.build and not _BUILD_RE.fullmatch(self.build):
            raise ValueError(f"invalid build metadata {self.build!r}")

    @classmethod
    def parse(cls, text: str) -> SemVer:
        """Parse ``MAJOR.MINOR.PATCH[-PRERELEASE][+BUILD]``; raise ValueError if it is not one."""
        match = _SEMVER_RE.fullmatch(text) if isinstance(text, str) else None
        if match is None:
            raise ValueError(f"{_show(text)} is not a semantic version like 1.2.3")
        pre = match["pre"]
        try:
            return cls(
                int(match["major"]),
                int(match["minor"]),
                int(match["patch"]),
                tuple(int(p) if p.isdigit() else p for p in pre.split(".")) if pre else (),
                match["build"] or "",
            )
        except ValueError as exc:  # a number too long for int() to convert
            raise ValueError(f"{_show(text)} is not a semantic version like 1.2.3") from exc

    def __str__(self) -> str:
        text = f"{self.major}.{self.minor}.{self.patch}"
        if self.prerelease:
            text += "-" + ".".join(str(ident) for ident in self.prerelease)
        if self.build:
            text += "+" + self.build
        return text

    def _precedence(self) -> tuple[int, int, int, int, tuple[tuple[int, int, str], ...]]:
        return (
            self.major,
            self.minor,
            self.patch,
            0 if self.prerelease else 1,
            tuple(
                (0, ident, "") if isinstance(ident, int) else (1, 0, ident)
                for ident in self.prerelease
            ),
        )

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, SemVer):
            return NotImplemented
        return self._precedence() == other._precedence()

    def __lt__(self, other: object) -> bool:
        if not isinstance(other, SemVer):
            return NotImplemented
        return self._precedence() < other._precedence()

    def __hash__(self) -> int:
        return hash(self._precedence())


# --- The manifest -------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Manifest:
    """A validated manifest. Optional text fields are ``""`` when absent."""

    id: str
    name: str
    version: SemVer
    description: str = ""
    author: str = ""
    license: str = ""
    homepage: str = ""
    min_app_version: SemVer | None = None
    # Exclusive: the extension runs on app versions before this one only.
    max_app_version: SemVer | None = None
    capabilities: tuple[str, ...] = ()
    permissions: tuple[str, ...] = ()
    icon: str | None = None
    config: dict[str, ConfigValue] = field(default_factory=dict, hash=False)
    # Other extensions this one needs, by id, with the versions it works with.
    requires: dict[str, VersionRange] = field(default_factory=dict, hash=False)
    # The manifest format the file declares; None for a legacy manifest without one.
    manifest_version: int | None = None
    # Top-level keys this app does not know, in file order; kept so the UI can mention them.
    ignored_keys: tuple[str, ...] = ()
    # The whole parsed document, for storing alongside the install.
    raw: dict[str, object] = field(default_factory=dict, hash=False, repr=False)


def is_extension_id(text: object) -> bool:
    """Whether ``text`` is a valid extension id: lowercase reverse-DNS, at most
    :data:`ID_MAX_CHARS` characters."""
    return isinstance(text, str) and len(text) <= ID_MAX_CHARS and bool(_ID_RE.fullmatch(text))


def schema_path() -> Traversable:
    """Where the manifest JSON Schema is; works from a source tree and from an installed wheel."""
    return files(__name__.rpartition(".")[0]) / "manifest.schema.json"


@functools.cache
def _schema() -> dict[str, Any]:
    schema: dict[str, Any] = json.loads(schema_path().read_text(encoding="utf-8"))
    return schema


@functools.cache
def _validator() -> Draft202012Validator:
    from jsonschema import Draft202012Validator

    return Draft202012Validator(_schema())


def compatibility_requirement(min_app: str | SemVer | None, max_app: str | SemVer | None) -> str:
    """The app versions an extension needs, as a short phrase for summaries:
    ``Extension Manager ≥ 1.0.0 and < 2.0.0``; ``""`` when neither bound is given.

    The bounds are shown as given, not checked (``""`` counts as absent).
    """
    parts = []
    if min_app is not None and str(min_app):
        parts.append(f"≥ {min_app}")
    if max_app is not None and str(max_app):
        parts.append(f"< {max_app}")
    return f"{_APP_NAME} {' and '.join(parts)}" if parts else ""


def app_version_fits(
    app_version: str, min_app: str | SemVer | None, max_app: str | SemVer | None
) -> str | None:
    """Return ``None`` if ``app_version`` is within ``min_app`` (inclusive) and ``max_app``
    (exclusive), else a sentence saying why not and what to do.

    For callers holding the bounds as text, such as an update index entry; a bound that is
    ``None`` or ``""`` is absent. Every version given must be a semantic version (ValueError
    otherwise, naming it).
    """
    low = _bound(min_app)
    high = _bound(max_app)
    current = SemVer.parse(app_version)
    if low is not None and current < low:
        return (
            f"This extension needs {_APP_NAME} {low} or newer; you have {current}. "
            "Update the app, or ask the author for an older version."
        )
    if high is not None and current >= high:
        return (
            f"This extension works with {_APP_NAME} before {high} only; you have {current}. "
            "Look for a newer version of the extension."
        )
    return None


def _bound(value: str | SemVer | None) -> SemVer | None:
    if value is None or isinstance(value, SemVer):
        return value
    return SemVer.parse(value) if value != "" else None


def check_compatibility(manifest: Manifest, app_version: str) -> str | None:
    """Return ``None`` if the app can run this extension, else a sentence saying why not.

    ``app_version`` must be a semantic version (ValueError otherwise): it is the app's own.
    """
    if manifest.min_app_version is None and manifest.max_app_version is None:
        return None
    return app_version_fits(app_version, manifest.min_app_version, manifest.max_app_version)


# --- Parsing ------------------------------------------------------------------------------------


class NotAnExtensionError(ManifestError):
    """The manifest.json belongs to another kind of software. One sentence saying which helps
    its owner more than a list of the fields our manifest would need."""

    def __init__(self, message: str) -> None:
        super().__init__([message])
        self.args = (message,)


class NewerManifestFormatError(ManifestError):
    """The manifest declares a format newer than :data:`MANIFEST_FORMAT`. Its other fields may
    mean something this app does not know, so they are not checked: the one sentence says to
    update the app. ``manifest_format`` is the format the file declares."""

    def __init__(self, manifest_format: int) -> None:
        shown = str(manifest_format)
        if len(shown) > 20:
            shown = f"{shown[:8]}… ({len(shown):,} digits)"
        message = (
            f"This extension uses manifest format {shown}, which needs a newer {_APP_NAME} "
            f"(this one reads format {MANIFEST_FORMAT}). Update the app."
        )
        super().__init__([message])
        self.args = (message,)
        self.manifest_format = manifest_format


class _UnreadableNumber:
    """Stands in for NaN, Infinity, a number too large for a float or an integer with more
    digits than Python converts, so that it can be reported with the field it is in rather than
    as a bare JSON error. ``problem`` is that report, without the field."""

    __slots__ = ("problem",)

    def __init__(self, problem: str) -> None:
        self.problem = problem

    @classmethod
    def not_finite(cls, text: str) -> _UnreadableNumber:
        shown = text if len(text) <= 24 else f"{text[:12]}… ({len(text):,} characters)"
        return cls(f"{shown} is not allowed; numbers must be finite")

    @classmethod
    def too_long(cls, text: str) -> _UnreadableNumber:
        digits = len(text.lstrip("-"))
        return cls(f"is a number with {digits:,} digits, too long to read; use a shorter number")


class _Decoder:
    """Hooks for json.loads that record what strict JSON forbids instead of failing at once."""

    def __init__(self) -> None:
        # The dict objects themselves are held, so their id() cannot be reused by a later one.
        self.duplicates: list[tuple[dict[str, Any], list[str]]] = []

    def object_pairs(self, pairs: list[tuple[str, Any]]) -> dict[str, Any]:
        result: dict[str, Any] = {}
        repeated: list[str] = []
        for key, value in pairs:
            if key in result and key not in repeated:
                repeated.append(key)
            result[key] = value
        if repeated:
            self.duplicates.append((result, repeated))
        return result

    @staticmethod
    def constant(text: str) -> _UnreadableNumber:
        return _UnreadableNumber.not_finite(text)

    @staticmethod
    def number(text: str) -> float | _UnreadableNumber:
        value = float(text)
        return value if math.isfinite(value) else _UnreadableNumber.not_finite(text)

    @staticmethod
    def integer(text: str) -> int | _UnreadableNumber:
        try:
            return int(text)
        except ValueError:  # more digits than sys.get_int_max_str_digits() allows
            return _UnreadableNumber.too_long(text)


Path = tuple[str | int, ...]
Problem = tuple[Path, str]


def _where(path: Path) -> str:
    """``permissions[1]``, ``config.theme``; odd keys are quoted so the message stays readable
    (and encodable: a key may hold an unpaired surrogate)."""
    if not path:
        return MANIFEST_NAME
    text = ""
    for part in path:
        if isinstance(part, int):
            text += f"[{part}]"
        elif part and part.isprintable() and not any(char in part for char in ".[]'\" "):
            text += f".{part}" if text else part
        else:
            text += f"[{part!r}]"
    return text


def _show(value: object, limit: int = 60) -> str:
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _kind(value: object) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if value is None:
        return "null"
    if isinstance(value, str):
        return "text"
    if isinstance(value, int):
        return "a whole number"
    if isinstance(value, float):
        return "a number"
    if isinstance(value, list):
        return "a list"
    if isinstance(value, dict):
        return "an object"
    return type(value).__name__


def _has_surrogate(text: str) -> str | None:
    for char in text:
        if "\ud800" <= char <= "\udfff":
            return char
    return None


def _scan(document: dict[str, Any], decoder: _Decoder) -> list[Problem]:
    """Find duplicate keys, non-finite numbers and unpaired surrogates anywhere in the document.

    Iterative, because json.loads accepts nesting deep enough to exhaust Python's recursion.
    """
    duplicates = {id(obj): keys for obj, keys in decoder.duplicates}
    problems: list[Problem] = []
    stack: list[tuple[Path, object]] = [((), document)]
    while stack:
        path, value = stack.pop()
        if isinstance(value, dict):
            for key in duplicates.get(id(value), []):
                problems.append(((*path, key), "appears more than once; each key may appear once"))
            for key, item in reversed(value.items()):
                if (char := _has_surrogate(key)) is not None:
                    problems.append(((*path, key), _surrogate_message(char)))
                stack.append(((*path, key), item))
        elif isinstance(value, list):
            stack.extend(((*path, index), item) for index, item in reversed(list(enumerate(value))))
        elif isinstance(value, _UnreadableNumber):
            problems.append((path, value.problem))
        elif isinstance(value, str) and (char := _has_surrogate(value)) is not None:
            problems.append((path, _surrogate_message(char)))
    return problems


def _surrogate_message(char: str) -> str:
    return f"contains an unpaired surrogate (\\u{ord(char):04x}), which is not valid text"


def _decode(data: bytes) -> tuple[dict[str, Any], _Decoder]:
    """Bytes to a JSON object, or ManifestError if nothing more can be checked."""
    raw = bytes(data)
    if raw.startswith(b"\xef\xbb\xbf"):
        raw = raw[3:]
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        bad = raw[exc.start]
        raise ManifestError(
            [
                f"{MANIFEST_NAME}: is not UTF-8 text (byte 0x{bad:02x} at offset {exc.start}); "
                "save it with UTF-8 encoding"
            ]
        ) from None
    decoder = _Decoder()
    try:
        document = json.loads(
            text,
            object_pairs_hook=decoder.object_pairs,
            parse_constant=decoder.constant,
            parse_float=decoder.number,
            parse_int=decoder.integer,
        )
    except json.JSONDecodeError as exc:
        raise ManifestError(
            [
                f"{MANIFEST_NAME}: is not valid JSON: {exc.msg} "
                f"(line {exc.lineno}, column {exc.colno})"
            ]
        ) from None
    except ValueError:  # nothing known raises it since numbers are parsed above; kept plain
        raise ManifestError(
            [f"{MANIFEST_NAME}: could not be read as JSON; check it with a JSON validator"]
        ) from None
    except RecursionError:
        raise ManifestError([f"{MANIFEST_NAME}: is nested too deeply to read"]) from None
    if not isinstance(document, dict):
        raise ManifestError(
            [
                f"{MANIFEST_NAME}: the top level must be a JSON object {{...}} "
                f"(got {_kind(document)})"
            ]
        )
    if (deep := _too_deep(document)) is not None:
        raise ManifestError([f"{_where(deep)}: is nested more than {MAX_NESTING} levels deep"])
    return document, decoder


def _too_deep(document: dict[str, Any]) -> Path | None:
    """The path of the first top-level field that nests too deeply, if any (iteratively)."""
    stack: list[tuple[Path, int, object]] = [((), 0, document)]
    while stack:
        path, depth, value = stack.pop()
        if depth > MAX_NESTING:
            return path[:1]
        if isinstance(value, dict):
            stack.extend(((*path, key), depth + 1, item) for key, item in value.items())
        elif isinstance(value, list):
            stack.extend(((*path, index), depth + 1, item) for index, item in enumerate(value))
    return None


def _schema_problems(document: dict[str, Any]) -> list[Problem]:
    problems: list[Problem] = []
    for error in _validator().iter_errors(document):
        problem = _translate(error)
        if problem is not None:
            problems.append(problem)
    return problems


def _translate(error: ValidationError) -> Problem | None:
    """A schema error as a plain message, or None if it is reported some other way."""
    path: Path = tuple(error.absolute_path)
    keyword = error.validator
    # Typed as possibly unset, but always set on errors from iter_errors.
    instance: Any = error.instance
    top = path[0] if path else ""
    if isinstance(instance, _UnreadableNumber) or keyword == "required":
        return None
    if top in _PYTHON_TYPED_FIELDS:
        return None
    if keyword == "additionalProperties" and not path:
        return None  # format 1's unknown top-level keys: _format_problems names each one
    if keyword != "type" and (
        top in _PYTHON_CHECKED_FIELDS
        or (top in _TEXT_FIELDS and keyword == "pattern")
        or (top in ("permissions", "capabilities") and keyword in ("enum", "uniqueItems"))
    ):
        return None
    expected: Any = error.validator_value
    if keyword == "type":
        types = {expected} if isinstance(expected, str) else set(expected)
        if types == _CONFIG_VALUE_TYPES:
            wanted = "true/false, a number or text"
        else:
            wanted = " or ".join(_TYPE_WORDS.get(name, name) for name in sorted(types))
        return path, f"must be {wanted} (got {_kind(instance)})"
    if "propertyNames" in error.relative_schema_path:
        return path, "setting names must not be empty"
    if keyword == "minLength":
        if expected == 1:
            return path, "must not be empty"
        return path, f"must be at least {expected} characters"
    if keyword == "maxLength":
        return path, f"must be at most {expected} characters (got {len(instance)})"
    return path, error.message


def _text_problem(value: str, allowed: frozenset[str]) -> str | None:
    for position, char in enumerate(value):
        if char in _BIDI_CHARS:
            what = "a bidirectional-override character"
        elif (char < " " or "\x7f" <= char <= "\x9f") and char not in allowed:
            what = "a control character"
        else:
            continue
        hint = "; only line breaks are allowed" if allowed else "; use plain text"
        return f"contains {what} (U+{ord(char):04X}) at position {position}{hint}"
    return None


def _icon_ok(value: str) -> bool:
    parts = value.split("/")
    return (
        value.lower().endswith(".png")
        and all(_ICON_PART_RE.fullmatch(part) for part in parts)
        and not any(part in (".", "..") for part in parts)
    )


def _homepage_ok(value: str) -> bool:
    if not _HOMEPAGE_RE.fullmatch(value):
        return False
    try:
        return bool(urlsplit(value).hostname)
    except ValueError:  # e.g. an unclosed IPv6 bracket
        return False


def _duplicates(items: list[Any]) -> Iterator[str]:
    seen: set[str] = set()
    reported: set[str] = set()
    for item in items:
        if isinstance(item, str):
            if item in seen and item not in reported:
                reported.add(item)
                yield item
            seen.add(item)


def _settings_problems(document: dict[str, Any]) -> list[Problem]:
    """Each described setting must exist in ``config``, and its default fit its description."""
    settings, config = document.get("settings"), document.get("config")
    if not isinstance(settings, dict):
        return []
    config = config if isinstance(config, dict) else {}
    problems: list[Problem] = []
    for key, info in settings.items():
        if not isinstance(info, dict):
            continue
        where = ("settings", key)
        if key not in config:
            problems.append((where, "describes a setting config does not have"))
            continue
        for field_name, allowed in (("title", frozenset[str]()), ("description", frozenset("\n"))):
            text = info.get(field_name)
            if isinstance(text, str) and (message := _text_problem(text, allowed)) is not None:
                problems.append(((*where, field_name), message))
        default = config[key]
        number = isinstance(default, int | float) and not isinstance(default, bool)
        low, high = info.get("minimum"), info.get("maximum")
        if (low is not None or high is not None) and not number:
            problems.append((where, "a range (minimum, maximum) is only for number settings"))
        elif number:
            if isinstance(low, int | float) and default < low:
                problems.append((where, f"the default {default} is below the minimum {low}"))
            if isinstance(high, int | float) and default > high:
                problems.append((where, f"the default {default} is above the maximum {high}"))
        choices = info.get("choices")
        if isinstance(choices, list):
            if isinstance(default, bool):
                problems.append((where, "choices are for number and text settings"))
            elif default not in choices:
                problems.append((where, f"the default {_show(default)} is not a choice"))
            elif any(type(choice) is not type(default) for choice in choices):
                problems.append((where, "every choice must have the default's type"))
    return problems


def _requires_problems(document: dict[str, Any]) -> list[Problem]:
    """Each key of ``requires`` must be another extension's id, and its value a version range."""
    from registry.requirements import VersionRange  # it imports this module

    requires = document.get("requires")
    if not isinstance(requires, dict):
        return []
    problems: list[Problem] = []
    for key, text in requires.items():
        where = ("requires", key)
        if not is_extension_id(key):
            problems.append(
                (
                    where,
                    "is not an extension id: ids are lowercase reverse-DNS like "
                    f"'example.my-tool', at most {ID_MAX_CHARS} characters",
                )
            )
        elif key == document.get("id"):
            problems.append((where, "is this extension's own id; an extension cannot need itself"))
        if isinstance(text, str):
            try:
                VersionRange.parse(text)
            except ValueError as exc:
                problems.append((where, str(exc)))
    return problems


def _field_problems(document: dict[str, Any]) -> list[Problem]:
    """The rules the schema does not (or, for Python's regex engine, cannot) express exactly."""
    problems: list[Problem] = [
        ((name,), "is required") for name in REQUIRED_FIELDS if name not in document
    ]

    ident = document.get("id")
    if isinstance(ident, str):
        if len(ident) > ID_MAX_CHARS:
            problems.append(
                (("id",), f"must be at most {ID_MAX_CHARS} characters (got {len(ident)})")
            )
        if not _ID_RE.fullmatch(ident):
            problems.append(
                (
                    ("id",),
                    f"must be lowercase reverse-DNS like 'example.my-tool' (got {_show(ident)})",
                )
            )

    versions: dict[str, SemVer] = {}
    for name in ("version", "min_app_version", "max_app_version"):
        value = document.get(name)
        if isinstance(value, str):
            try:
                versions[name] = SemVer.parse(value)
            except ValueError as exc:
                problems.append(((name,), str(exc)))
    low, high = versions.get("min_app_version"), versions.get("max_app_version")
    if low is not None and high is not None and high <= low:
        problems.append(
            (
                ("max_app_version",),
                f"must be greater than min_app_version ({low}): it is the first app version the "
                f"extension does not work with (got {high})",
            )
        )

    for name, allowed in _TEXT_FIELDS.items():
        value = document.get(name)
        if isinstance(value, str):
            if (message := _text_problem(value, allowed)) is not None:
                problems.append(((name,), message))
            elif name == "name" and value and not value.strip():
                problems.append(((name,), "must not be blank"))

    problems.extend(_settings_problems(document))
    problems.extend(_requires_problems(document))

    homepage = document.get("homepage")
    if isinstance(homepage, str) and not _homepage_ok(homepage):
        problems.append(
            (("homepage",), f"must be an http:// or https:// web address (got {_show(homepage)})")
        )

    icon = document.get("icon")
    if isinstance(icon, str) and not _icon_ok(icon):
        problems.append(
            (
                ("icon",),
                "must be the relative path of a .png file in the archive, with forward slashes "
                f"and no '..' (got {_show(icon)})",
            )
        )

    permissions = document.get("permissions")
    if isinstance(permissions, list):
        known = ", ".join(PERMISSIONS)
        for index, item in enumerate(permissions):
            if isinstance(item, str) and item not in PERMISSIONS:
                problems.append(
                    (("permissions", index), f"unknown permission {_show(item)}; known: {known}")
                )
    for name in ("permissions", "capabilities"):
        items = document.get(name)
        if isinstance(items, list):
            problems.extend(
                ((name,), f"{_show(item)} is listed more than once") for item in _duplicates(items)
            )
    return problems


def _declared_format(document: dict[str, Any]) -> int | None:
    """``manifest_version`` if it is a whole number (the value is checked elsewhere)."""
    value = document.get("manifest_version")
    return value if type(value) is int else None


def _format_problems(document: dict[str, Any]) -> list[Problem]:
    """``manifest_version`` must be a format number; format 1 allows only its own keys."""
    if "manifest_version" not in document:
        return []
    value = document["manifest_version"]
    if isinstance(value, _UnreadableNumber):
        return []  # reported by _scan
    if type(value) is not int:
        shown = _show(value) if isinstance(value, str | float) else _kind(value)
        return [
            (
                ("manifest_version",),
                f"must be a whole number such as {MANIFEST_FORMAT}, the manifest format "
                f"(got {shown})",
            )
        ]
    if value < 1:
        return [
            (("manifest_version",), f"must be 1 or more: formats are numbered from 1 (got {value})")
        ]
    known = _schema()["properties"]
    problems: list[Problem] = []
    for key in document:
        if key not in known:
            hint = ""
            if (close := _close_field(key, known)) is not None:
                hint = f"; did you mean {close!r}?"
            problems.append(((key,), f"is not a field of manifest format {value}{hint}"))
    return problems


def _close_field(key: str, known: dict[str, Any]) -> str | None:
    import difflib  # only for a misspelt key: keeps it out of start-up

    matches = difflib.get_close_matches(key, [name for name in known if name != "$schema"], n=1)
    return matches[0] if matches else None


def _is_browser_add_on(document: dict[str, Any]) -> bool:
    """A Firefox or Chrome WebExtension: ``manifest_version`` is its one required key, and it
    never has an ``id`` of ours (Firefox keeps its id under ``browser_specific_settings``)."""
    ident = document.get("id")
    ours = isinstance(ident, str) and _ID_RE.fullmatch(ident) is not None
    return "manifest_version" in document and not ours


def _ordered(problems: list[Problem]) -> list[str]:
    """Messages in the schema's field order (then file order), each once, prefixed by field."""
    order = {name: index for index, name in enumerate(_schema()["properties"])}

    def rank(problem: Problem) -> int:
        path = problem[0]
        if not path:
            return -1
        return order.get(str(path[0]), len(order))

    messages: list[str] = []
    for path, message in sorted(problems, key=rank):
        text = f"{_where(path)}: {message}"
        if text not in messages:
            messages.append(text)
    return messages


def parse_manifest(data: bytes) -> Manifest:
    """Validate the bytes of a ``manifest.json`` and return the manifest.

    Raises :class:`ManifestError` listing every problem found, each naming its field; its
    subclasses :class:`NotAnExtensionError` and :class:`NewerManifestFormatError` carry one
    sentence instead.
    """
    document, decoder = _decode(data)
    if _is_browser_add_on(document):
        raise NotAnExtensionError(BROWSER_ADD_ON)
    declared = _declared_format(document)
    if declared is not None and declared > MANIFEST_FORMAT:
        raise NewerManifestFormatError(declared)
    problems = (
        _scan(document, decoder)
        + _format_problems(document)
        + _field_problems(document)
        + _schema_problems(document)
    )
    if problems:
        raise ManifestError(_ordered(problems))

    from registry.requirements import VersionRange  # it imports this module

    known = _schema()["properties"]
    min_app = document.get("min_app_version")
    max_app = document.get("max_app_version")
    return Manifest(
        id=document["id"],
        name=document["name"],
        version=SemVer.parse(document["version"]),
        description=document.get("description", ""),
        author=document.get("author", ""),
        license=document.get("license", ""),
        homepage=document.get("homepage", ""),
        min_app_version=SemVer.parse(min_app) if min_app is not None else None,
        max_app_version=SemVer.parse(max_app) if max_app is not None else None,
        capabilities=tuple(document.get("capabilities", ())),
        permissions=tuple(document.get("permissions", ())),
        icon=document.get("icon"),
        config=dict(document.get("config", {})),
        requires={
            key: VersionRange.parse(text) for key, text in document.get("requires", {}).items()
        },
        manifest_version=declared,
        ignored_keys=tuple(key for key in document if key not in known),
        raw=document,
    )
