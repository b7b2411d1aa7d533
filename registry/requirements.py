"""What an extension needs of other extensions: the ``requires`` of its manifest.

A manifest may say ``"requires": {"other.id": ">=1.2.0, <2.0.0", "third.id": "^1.4"}``. Each
value is a :class:`VersionRange`: comparators separated by commas, all of which must hold.

* ``>=X``, ``>X``, ``<=X``, ``<X``, ``=X`` (also ``==X`` or a bare ``X``) and ``!=X``;
* ``^X``: changes that keep the left-most non-zero part of X, as npm reads it (``^1.4`` is
  ``>=1.4.0, <2.0.0``, ``^0.2`` is ``>=0.2.0, <0.3.0``, ``^0.0.3`` is ``>=0.0.3, <0.0.4``);
* ``~X``: patch changes, or minor ones when X is a bare major (``~1.4`` is ``>=1.4.0, <1.5.0``,
  ``~1`` is ``>=1.0.0, <2.0.0``);
* ``*``: any version.

X may leave out its minor or patch (``2``, ``1.4``), which then count as zero: ``<2`` is
``<2.0.0`` and ``=1.4`` is exactly ``1.4.0`` (unlike npm, where ``1.4`` means any ``1.4.x``).
Versions compare by semantic-version precedence, pre-releases included: ``1.5.0-beta`` is
within ``>=1.4, <2``, and so is ``2.0.0-beta``, which sorts before ``2.0.0``. The upper end of
``^`` and ``~`` is the first pre-release of the next line instead, so ``^1.4`` does not take
``2.0.0-beta``: a pre-release of 2.0.0 belongs to the breaking line.

The rest of the module answers the questions an install, an update and an uninstall ask about
a set of extensions: which requirements are not met (:func:`unmet`), in which order a batch
installs (:func:`install_order`), what depends on an extension (:func:`dependents_of`), and
which extensions a new version would break (:func:`broken_by`). It is plain Python, with no
Qt and no database: callers pass what they read from the registry.
"""

from __future__ import annotations

import functools
import heapq
import operator
import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Final

from registry.manifest import SemVer, is_extension_id

__all__ = [
    "Installed",
    "Missing",
    "VersionRange",
    "broken_by",
    "dependents_of",
    "install_order",
    "requires_of",
    "unmet",
]

# The longest range text accepted: real ones are a few dozen characters.
RANGE_MAX_CHARS: Final = 200

_OPERATORS: Final = (">=", "<=", "==", "!=", ">", "<", "=", "^", "~")
_NUMBER = r"0|[1-9][0-9]*"
_PARTIAL_RE: Final = re.compile(rf"({_NUMBER})(?:\.({_NUMBER}))?")
_VERSION_EXAMPLES: Final = "like 1.2.3, 1.2 or 1"

# What every comparator of a range comes down to: an operator of _CHECKS, a full version, and
# the comparator as written (for messages).
_Comparison = tuple[str, SemVer, str]
_CHECKS: Final[dict[str, Callable[[SemVer, SemVer], bool]]] = {
    ">=": operator.ge,
    ">": operator.gt,
    "<=": operator.le,
    "<": operator.lt,
    "=": operator.eq,
    "!=": operator.ne,
}


@dataclass(frozen=True, slots=True)
class VersionRange:
    """The versions of another extension that an extension works with.

    Make one with :meth:`parse`; ``text`` is the range normalised (one space after each comma,
    none inside a comparator, ``==X`` and a bare ``X`` written ``=X``), which is also what
    ``str()`` gives. Two ranges are equal when their normalised texts are.
    """

    text: str

    def __post_init__(self) -> None:
        if not isinstance(self.text, str):
            raise ValueError(f"a version range must be text, not {type(self.text).__name__}")
        object.__setattr__(self, "text", _compile(self.text)[0])

    @classmethod
    def parse(cls, text: str) -> VersionRange:
        """Read a range; raise ValueError with a sentence saying what is wrong with it."""
        return cls(text)

    def __contains__(self, version: SemVer | str) -> bool:
        """Whether ``version`` (a :class:`SemVer` or its text) is in the range; text that is
        not a semantic version raises ValueError."""
        if not isinstance(version, SemVer):
            version = SemVer.parse(version)
        return all(_CHECKS[op](version, bound) for op, bound, _ in _compile(self.text)[1])

    def __str__(self) -> str:
        return self.text

    @property
    def is_any(self) -> bool:
        """Whether every version is in the range (``*``)."""
        return not _compile(self.text)[1]


@functools.lru_cache(maxsize=512)
def _compile(text: str) -> tuple[str, tuple[_Comparison, ...]]:
    """A range's normalised text and the comparisons it comes down to (none for ``*``)."""
    shown = _show(text)
    if len(text) > RANGE_MAX_CHARS:
        raise ValueError(
            f"{shown} is not a version range: it is {len(text):,} characters long, "
            f"more than the {RANGE_MAX_CHARS} allowed"
        )
    if not text.strip():
        raise ValueError(f"{shown} is not a version range; write * for any version")
    if "||" in text:
        raise ValueError(
            f"{shown} is not a version range: alternatives (||) are not supported; "
            "write comparators separated by commas, all of which must hold"
        )
    terms: list[str] = []
    comparisons: list[_Comparison] = []
    for part in text.split(","):
        term = part.strip()
        if not term:
            raise ValueError(f"{shown} is not a version range: it has an empty part between commas")
        if term == "*":
            terms.append(term)
            continue
        op = next((op for op in _OPERATORS if term.startswith(op)), "")
        version = term[len(op) :].strip()
        if not version:
            raise ValueError(f"{shown} is not a version range: {term!r} has no version after it")
        if any(char.isspace() for char in version):
            raise ValueError(
                f"{shown} is not a version range: {term!r} has a space inside; "
                "separate comparators with commas"
            )
        op = "=" if op in ("", "==") else op
        try:
            comparisons.extend(
                (check, bound, op + version) for check, bound in _comparisons(op, version)
            )
        except ValueError:
            raise ValueError(
                f"{shown} is not a version range: {version!r} is not a version {_VERSION_EXAMPLES}"
            ) from None
        terms.append(op + version)
    if comparisons:  # "*" adds nothing beside another comparator
        terms = [term for term in terms if term != "*"]
    normalised = ", ".join(dict.fromkeys(terms))
    if (conflict := _contradiction(comparisons)) is not None:
        raise ValueError(f"{shown} cannot be met: {conflict}")
    return normalised, tuple(comparisons)


def _comparisons(op: str, text: str) -> list[tuple[str, SemVer]]:
    """What one comparator means; ValueError if ``text`` is not a full or partial version."""
    match = _PARTIAL_RE.fullmatch(text)
    if match is None:
        full = SemVer.parse(text)
        parts = [full.major, full.minor, full.patch]
        given = 3
    else:
        # A partial version: the parts left out count as zero.
        given = 1 + sum(group is not None for group in match.groups()[1:])
        parts = [int(group) for group in match.groups() if group is not None] + [0] * (3 - given)
        full = SemVer(parts[0], parts[1], parts[2])
    if op == "^":
        major, minor, patch = parts
        if major > 0 or given == 1:
            upper = SemVer(major + 1, 0, 0, (0,))
        elif minor > 0 or given == 2:
            upper = SemVer(0, minor + 1, 0, (0,))
        else:
            upper = SemVer(0, 0, patch + 1, (0,))
        return [(">=", full), ("<", upper)]
    if op == "~":
        major, minor, _ = parts
        upper = SemVer(major + 1, 0, 0, (0,)) if given == 1 else SemVer(major, minor + 1, 0, (0,))
        return [(">=", full), ("<", upper)]
    return [(op, full)]


def _contradiction(comparisons: list[_Comparison]) -> str | None:
    """Why no version can meet all ``comparisons``, for the plain cases (a lower end above the
    upper one, an exact version that is also excluded); None otherwise."""
    lower: _Comparison | None = None
    upper: _Comparison | None = None
    excluded: dict[SemVer, str] = {}
    for comparison in comparisons:
        op, version, _ = comparison
        # At the same version, an exclusive end is the tighter one.
        if op in (">=", ">", "=") and (
            lower is None or (version, op == ">") > (lower[1], lower[0] == ">")
        ):
            lower = comparison
        if op in ("<=", "<", "=") and (
            upper is None or (version, op != "<") < (upper[1], upper[0] != "<")
        ):
            upper = comparison
        if op == "!=":
            excluded.setdefault(version, comparison[2])
    if lower is None or upper is None:
        return None
    (low_op, low, low_term), (high_op, high, high_term) = lower, upper
    if low > high or (low == high and (low_op == ">" or high_op == "<")):
        return f"no version is both {low_term} and {high_term}"
    if low == high and low in excluded:
        return f"no version is both {low_term} and {excluded[low]}"
    return None


def _show(value: str, limit: int = 60) -> str:
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 1] + "…"


def requires_of(raw_manifest: Mapping[str, object]) -> dict[str, VersionRange]:
    """The requirements in a stored manifest, read leniently.

    An extension installed before ``requires`` existed may have stored a legacy manifest with
    some other ``requires`` (legacy manifests ignored unknown keys): what cannot be read as an
    extension id and a range is skipped rather than raised, so the registry can still list,
    update and remove it.
    """
    requires = raw_manifest.get("requires") if isinstance(raw_manifest, Mapping) else None
    if not isinstance(requires, Mapping):
        return {}
    ranges: dict[str, VersionRange] = {}
    for extension_id, text in requires.items():
        if not is_extension_id(extension_id) or not isinstance(text, str):
            continue
        try:
            ranges[extension_id] = VersionRange.parse(text)
        except ValueError:
            continue
    return ranges


# --- What is missing -----------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Missing:
    """A requirement that is not met: ``extension_id`` in ``range`` is needed, and
    ``found_version`` is what is there instead (None when it is not installed at all)."""

    extension_id: str
    range: VersionRange
    found_version: str | None = None

    def describe(self) -> str:
        """``other.id >=1.2.0, <2.0.0 (1.0.0 is installed)``, or ``(not installed)``."""
        wanted = self.extension_id if self.range.is_any else f"{self.extension_id} {self.range}"
        if self.found_version is None:
            return f"{wanted} (not installed)"
        return f"{wanted} ({self.found_version} is installed)"

    def __str__(self) -> str:
        return self.describe()


def unmet(requires: Mapping[str, VersionRange], available: Mapping[str, str]) -> list[Missing]:
    """The requirements that ``available`` (extension id to the version that is, or will be,
    installed and enabled) does not meet, in the order of ``requires``.

    A version in ``available`` that is not a semantic version meets no range (not even ``*``:
    something is wrong with that install).
    """
    missing: list[Missing] = []
    for extension_id, wanted in requires.items():
        found = available.get(extension_id)
        if found is None or not _version_in(found, wanted):
            missing.append(Missing(extension_id, wanted, found))
    return missing


def _version_in(version: str | SemVer, wanted: VersionRange) -> bool:
    try:
        return version in wanted
    except ValueError:
        return False


# --- Order of a batch ----------------------------------------------------------------------------


def install_order(wanted: Mapping[str, Mapping[str, VersionRange]]) -> list[str]:
    """The ids of a batch to install (id to its requirements) with what each needs first.

    Only requirements within the batch order it; the others are for :func:`unmet` to check
    against what is installed. An id moves only if it has to: of the ids whose requirements are
    in place, the one given first comes next, so independent ids keep the given order. A cycle
    raises ValueError naming it.
    """
    ids = list(wanted)
    position = {extension_id: index for index, extension_id in enumerate(ids)}
    needs = {
        extension_id: {other for other in wanted[extension_id] if other in position}
        for extension_id in ids
    }
    order = _stable_topological(ids, needs)
    if len(order) < len(ids):
        placed = set(order)
        cycle = _find_cycle([other for other in ids if other not in placed], needs)
        raise ValueError(
            f"These extensions cannot be installed in any order: {_describe_cycle(cycle)}."
        )
    return order


def _stable_topological(ids: list[str], needs: Mapping[str, set[str]]) -> list[str]:
    """Kahn's algorithm taking, at each step, the earliest id whose needs are all placed; ids on
    or behind a cycle are left out."""
    position = {extension_id: index for index, extension_id in enumerate(ids)}
    waiting = {extension_id: len(needs[extension_id]) for extension_id in ids}
    needed_by: dict[str, list[str]] = {extension_id: [] for extension_id in ids}
    for extension_id in ids:
        for other in needs[extension_id]:
            needed_by[other].append(extension_id)
    ready = [position[extension_id] for extension_id in ids if not waiting[extension_id]]
    heapq.heapify(ready)
    order: list[str] = []
    while ready:
        extension_id = ids[heapq.heappop(ready)]
        order.append(extension_id)
        for dependent in needed_by[extension_id]:
            waiting[dependent] -= 1
            if not waiting[dependent]:
                heapq.heappush(ready, position[dependent])
    return order


def _find_cycle(left: list[str], needs: Mapping[str, set[str]]) -> list[str]:
    """A cycle among ``left`` (the ids a topological sort could not place), as the ids along it
    with the first one repeated at the end. Every id left needs another id left, so following
    needs from the first must come back to an id already seen."""
    remaining = set(left)
    order = {extension_id: index for index, extension_id in enumerate(left)}
    path = [left[0]]
    seen = {left[0]: 0}
    while True:
        # The earliest id left among the needs keeps the message the same from run to run.
        step = min((n for n in needs[path[-1]] if n in remaining), key=order.__getitem__)
        if step in seen:
            cycle = path[seen[step] :]
            # Told from the id given first, whichever id the walk came in by.
            start = cycle.index(min(cycle, key=order.__getitem__))
            cycle = cycle[start:] + cycle[:start]
            return [*cycle, cycle[0]]
        seen[step] = len(path)
        path.append(step)


def _describe_cycle(cycle: list[str]) -> str:
    if len(cycle) == 2:
        return f"{cycle[0]} needs itself"
    text = f"{cycle[0]} needs {cycle[1]}"
    for extension_id in cycle[2:]:
        text += f", which needs {extension_id}"
    return text


# --- What is installed ---------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Installed:
    """An installed extension as the dependency questions see it; ``requires`` is usually
    :func:`requires_of` its stored manifest."""

    id: str
    name: str
    version: str
    requires: Mapping[str, VersionRange] = field(default_factory=dict, hash=False)


def dependents_of(extension_id: str, installed: Iterable[Installed]) -> list[Installed]:
    """What needs ``extension_id``, directly or through others: what must also go if it is
    removed. Dependents come before what they need, so removing in this order never leaves
    an extension without something it needs; otherwise the order of ``installed`` is kept.

    Stored manifests that need each other in a cycle do not stop a removal: the ids on the
    cycle come in the order of ``installed``.
    """
    extensions = [item for item in installed if item.id != extension_id]
    by_id = {item.id: item for item in extensions}
    needed_by: dict[str, list[str]] = {}
    for item in extensions:
        for other in item.requires:
            if other != item.id:
                needed_by.setdefault(other, []).append(item.id)
    going: set[str] = set()
    stack = [extension_id]
    while stack:
        for dependent in needed_by.get(stack.pop(), []):
            if dependent not in going:
                going.add(dependent)
                stack.append(dependent)
    ids = [item.id for item in extensions if item.id in going]
    # Removal order is install order backwards: what is needed by another going one waits.
    blocks = {
        other: {dependent for dependent in needed_by.get(other, []) if dependent in going}
        for other in ids
    }
    order = _stable_topological(ids, blocks)
    placed = set(order)
    order += [other for other in ids if other not in placed]
    return [by_id[other] for other in order]


def broken_by(
    extension_id: str, new_version: SemVer | str, installed: Iterable[Installed]
) -> list[tuple[Installed, VersionRange]]:
    """The installed extensions that need ``extension_id`` in a range without ``new_version``,
    each with that range: what an update or a rollback to ``new_version`` would break.

    ``new_version`` must be a semantic version (ValueError otherwise): it is the new archive's.
    """
    version = new_version if isinstance(new_version, SemVer) else SemVer.parse(new_version)
    return [
        (item, item.requires[extension_id])
        for item in installed
        if item.id != extension_id
        and extension_id in item.requires
        and version not in item.requires[extension_id]
    ]
