"""Tests of what extensions need of each other: version ranges, and the questions asked of them."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from registry.errors import ManifestError
from registry.manifest import SemVer, parse_manifest
from registry.requirements import (
    Installed,
    Missing,
    VersionRange,
    broken_by,
    dependents_of,
    install_order,
    requires_of,
    unmet,
)

ROOT = Path(__file__).resolve().parent.parent
MINIMAL = {"id": "example.tool", "name": "Tool", "version": "1.0.0"}


def r(text: str) -> VersionRange:
    return VersionRange.parse(text)


ANY = r("*")


def contains(text: str, version: str) -> bool:
    return version in r(text)


# --- Parsing -------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "normalised"),
    [
        (">=1.2.0", ">=1.2.0"),
        (">1.2.0", ">1.2.0"),
        ("<=1.2.0", "<=1.2.0"),
        ("<1.2.0", "<1.2.0"),
        ("=1.2.0", "=1.2.0"),
        ("==1.2.0", "=1.2.0"),
        ("1.2.0", "=1.2.0"),
        ("!=1.2.0", "!=1.2.0"),
        ("^1.4", "^1.4"),
        ("~1.4", "~1.4"),
        ("*", "*"),
        ("  >= 1.2.0 ,<2.0.0  ", ">=1.2.0, <2.0.0"),
        (">=1.2.0,<2.0.0", ">=1.2.0, <2.0.0"),
        ("*, >=1", ">=1"),
        ("*, *", "*"),
        (">=1, >=1", ">=1"),
        ("^1.2.3-beta.2+build.5", "^1.2.3-beta.2+build.5"),
    ],
)
def test_ranges_parse_to_their_normalised_text(text: str, normalised: str) -> None:
    parsed = r(text)
    assert str(parsed) == parsed.text == normalised
    assert r(normalised) == parsed
    assert hash(r(normalised)) == hash(parsed)


@pytest.mark.parametrize(
    ("text", "inside", "outside"),
    [
        (">=1.2.0", ["1.2.0", "1.3.0", "9.0.0"], ["1.1.9", "1.2.0-rc.1"]),
        (">1.2.0", ["1.2.1", "1.3.0-alpha"], ["1.2.0", "1.0.0"]),
        ("<=1.2.0", ["1.2.0", "0.0.1", "1.2.0-rc.1"], ["1.2.1"]),
        ("<1.2.0", ["1.1.99", "1.2.0-rc.1"], ["1.2.0", "1.2.1"]),
        ("=1.2.0", ["1.2.0", "1.2.0+other-build"], ["1.2.1", "1.2.0-rc.1"]),
        ("!=1.2.0", ["1.2.1", "1.2.0-rc.1"], ["1.2.0"]),
        ("*", ["0.0.0", "1.0.0-alpha", "99.99.99"], []),
        (">=1.2.0, <2.0.0", ["1.2.0", "1.9.9"], ["1.1.0", "2.0.0"]),
        (">=1.0.0, !=1.3.0, <2.0.0", ["1.2.0", "1.4.0"], ["1.3.0"]),
    ],
)
def test_each_operator(text: str, inside: list[str], outside: list[str]) -> None:
    for version in inside:
        assert contains(text, version), version
    for version in outside:
        assert not contains(text, version), version


@pytest.mark.parametrize(
    ("text", "inside", "outside"),
    [
        # Left-out parts count as zero.
        (">=2", ["2.0.0", "2.0.1"], ["1.9.9"]),
        ("<2", ["1.9.9"], ["2.0.0"]),
        (">1.4", ["1.4.1"], ["1.4.0"]),
        ("<=1.4", ["1.4.0"], ["1.4.1"]),
        ("1.4", ["1.4.0"], ["1.4.1"]),
        ("=2", ["2.0.0"], ["2.1.0"]),
        ("!=2", ["2.0.1"], ["2.0.0"]),
    ],
)
def test_partial_versions_fill_with_zeros(text: str, inside: list[str], outside: list[str]) -> None:
    for version in inside:
        assert contains(text, version), version
    for version in outside:
        assert not contains(text, version), version


@pytest.mark.parametrize(
    ("text", "lowest", "first_outside"),
    [
        ("^1.2.3", "1.2.3", "2.0.0"),
        ("^1.4", "1.4.0", "2.0.0"),
        ("^1", "1.0.0", "2.0.0"),
        ("^0.2.3", "0.2.3", "0.3.0"),
        ("^0.2", "0.2.0", "0.3.0"),
        ("^0.0.3", "0.0.3", "0.0.4"),
        ("^0.0", "0.0.0", "0.1.0"),
        ("^0", "0.0.0", "1.0.0"),
        ("~1.2.3", "1.2.3", "1.3.0"),
        ("~1.4", "1.4.0", "1.5.0"),
        ("~1", "1.0.0", "2.0.0"),
        ("~0.2.3", "0.2.3", "0.3.0"),
        ("~0", "0.0.0", "1.0.0"),
    ],
)
def test_caret_and_tilde_follow_npm(text: str, lowest: str, first_outside: str) -> None:
    low, high = SemVer.parse(lowest), SemVer.parse(first_outside)
    assert low in r(text)
    assert SemVer(low.major, low.minor, low.patch, ("rc", 1)) not in r(text)
    below_high = (
        SemVer(high.major, high.minor, high.patch - 1)
        if high.patch
        else SemVer(high.major, high.minor - 1, 999)
        if high.minor
        else SemVer(high.major - 1, 999, 999)
    )
    assert below_high in r(text)
    assert high not in r(text)
    # A pre-release of the next line belongs to it, though it sorts before its release.
    assert SemVer(high.major, high.minor, high.patch, ("alpha",)) not in r(text)


def test_caret_keeps_a_pre_release_lower_end() -> None:
    assert contains("^1.2.3-beta.2", "1.2.3-beta.2")
    assert contains("^1.2.3-beta.2", "1.2.3-beta.10")
    assert contains("^1.2.3-beta.2", "1.2.3")
    assert not contains("^1.2.3-beta.2", "1.2.3-beta.1")
    assert not contains("^1.2.3-beta.2", "1.2.3-alpha")


def test_pre_releases_compare_by_semver_precedence() -> None:
    assert contains(">=1.0.0-alpha", "1.0.0-alpha.1")
    assert contains(">=1.0.0-alpha.1", "1.0.0-alpha.beta")
    assert contains(">=1.0.0-beta.2", "1.0.0-beta.11")
    assert not contains(">=1.0.0-beta.11", "1.0.0-beta.2")
    assert contains(">1.0.0-rc.1", "1.0.0")
    # An explicit upper end is compared as written: 2.0.0-beta sorts before 2.0.0.
    assert contains(">=1.4, <2", "2.0.0-beta")
    assert contains("^1.4", "1.5.0-beta")


def test_containment_takes_semver_or_text() -> None:
    assert SemVer(1, 5, 0) in r("^1.4")
    assert "1.5.0" in r("^1.4")
    with pytest.raises(ValueError, match="is not a semantic version"):
        _ = "1.5" in r("^1.4")


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("", "'' is not a version range; write * for any version"),
        ("   ", "'   ' is not a version range; write * for any version"),
        (
            ">=1.x",
            "'>=1.x' is not a version range: '1.x' is not a version like 1.2.3, 1.2 or 1",
        ),
        (
            "v1.2.0",
            "'v1.2.0' is not a version range: 'v1.2.0' is not a version like 1.2.3, 1.2 or 1",
        ),
        (
            "01.2.0",
            "'01.2.0' is not a version range: '01.2.0' is not a version like 1.2.3, 1.2 or 1",
        ),
        (
            "^1.4-beta",
            "'^1.4-beta' is not a version range: '1.4-beta' is not a version like 1.2.3, 1.2 or 1",
        ),
        (
            "=>1.0",
            "'=>1.0' is not a version range: '>1.0' is not a version like 1.2.3, 1.2 or 1",
        ),
        (">=", "'>=' is not a version range: '>=' has no version after it"),
        (">=1.0,", "'>=1.0,' is not a version range: it has an empty part between commas"),
        (">=1.0,,<2", "'>=1.0,,<2' is not a version range: it has an empty part between commas"),
        (
            ">=1.2 <2",
            "'>=1.2 <2' is not a version range: '>=1.2 <2' has a space inside; "
            "separate comparators with commas",
        ),
        (
            "^1 || ^2",
            "'^1 || ^2' is not a version range: alternatives (||) are not supported; "
            "write comparators separated by commas, all of which must hold",
        ),
        (">=2, <1", "'>=2, <1' cannot be met: no version is both >=2 and <1"),
        (">1, <=1", "'>1, <=1' cannot be met: no version is both >1 and <=1"),
        (">=1, <1", "'>=1, <1' cannot be met: no version is both >=1 and <1"),
        ("^1, >=2", "'^1, >=2' cannot be met: no version is both >=2 and ^1"),
        ("=1.0.0, !=1", "'=1.0.0, !=1' cannot be met: no version is both =1.0.0 and !=1"),
        ("=1.0.0, =1.0.1", "'=1.0.0, =1.0.1' cannot be met: no version is both =1.0.1 and =1.0.0"),
    ],
)
def test_bad_ranges_say_what_is_wrong(text: str, message: str) -> None:
    with pytest.raises(ValueError) as caught:
        VersionRange.parse(text)
    assert str(caught.value) == message


def test_touching_ends_are_a_range_of_one_version() -> None:
    assert contains(">=1.0.0, <=1", "1.0.0")
    assert not contains(">=1.0.0, <=1", "1.0.1")


def test_overlong_and_non_text_ranges_are_refused() -> None:
    with pytest.raises(ValueError, match="more than the 200 allowed"):
        VersionRange.parse(">=1.0.0, " * 30)
    with pytest.raises(ValueError, match="must be text, not int"):
        VersionRange.parse(5)  # type: ignore[arg-type]


def test_importing_the_module_does_not_import_qt_or_peewee() -> None:
    code = (
        "import sys, registry.requirements\n"
        "bad = [m for m in sys.modules if m.split('.')[0] in ('PySide6', 'peewee', 'jsonschema')]\n"
        "assert not bad, bad\n"
    )
    subprocess.run([sys.executable, "-c", code], cwd=ROOT, check=True)


# --- Stored manifests ----------------------------------------------------------------------------


def test_requires_of_reads_a_stored_manifest() -> None:
    raw = {**MINIMAL, "requires": {"other.id": ">=1.2.0, <2.0.0", "third.id": "^1.4"}}
    assert requires_of(raw) == {"other.id": r(">=1.2.0, <2.0.0"), "third.id": r("^1.4")}


@pytest.mark.parametrize(
    "requires",
    [None, [], ["other.id"], "other.id", 3, {}],
)
def test_requires_of_an_old_or_odd_manifest_is_empty(requires: object) -> None:
    assert requires_of(MINIMAL) == {}
    assert requires_of({**MINIMAL, "requires": requires}) == {}


def test_requires_of_skips_what_it_cannot_read() -> None:
    raw = {
        "requires": {
            "Not An Id": "*",
            "bad.range": ">=1.x",
            "not.text": 3,
            "good.one": "~2.1",
        }
    }
    assert requires_of(raw) == {"good.one": r("~2.1")}


# --- What is missing -----------------------------------------------------------------------------


def test_unmet_names_each_missing_requirement_in_order() -> None:
    requires = {"c.absent": r("*"), "a.old": r(">=1.2.0, <2.0.0"), "b.fine": r("^1.4")}
    available = {"a.old": "1.0.0", "b.fine": "1.9.0"}
    assert unmet(requires, available) == [
        Missing("c.absent", r("*"), None),
        Missing("a.old", r(">=1.2.0, <2.0.0"), "1.0.0"),
    ]
    assert unmet(requires, {**available, "a.old": "1.2.0", "c.absent": "0.1.0"}) == []
    assert unmet({}, available) == []


def test_an_unreadable_available_version_meets_nothing() -> None:
    assert unmet({"a.odd": ANY}, {"a.odd": "1.0"}) == [Missing("a.odd", ANY, "1.0")]


def test_missing_describes_itself() -> None:
    assert (
        str(Missing("other.id", r(">=1.2.0, <2.0.0"))) == "other.id >=1.2.0, <2.0.0 (not installed)"
    )
    assert (
        Missing("other.id", r(">=1.2.0,<2.0.0"), "1.0.0").describe()
        == "other.id >=1.2.0, <2.0.0 (1.0.0 is installed)"
    )
    assert str(Missing("other.id", ANY)) == "other.id (not installed)"


# --- Install order -------------------------------------------------------------------------------


def test_install_order_puts_a_chain_requirements_first() -> None:
    wanted = {"a.top": {"b.mid": ANY}, "b.mid": {"c.base": ANY}, "c.base": {}}
    assert install_order(wanted) == ["c.base", "b.mid", "a.top"]


def test_install_order_of_a_diamond() -> None:
    wanted = {
        "a.top": {"b.left": ANY, "c.right": ANY},
        "b.left": {"d.base": ANY},
        "c.right": {"d.base": ANY},
        "d.base": {},
    }
    assert install_order(wanted) == ["d.base", "b.left", "c.right", "a.top"]


def test_install_order_keeps_the_given_order_where_free() -> None:
    assert install_order({"z.one": {}, "a.two": {}, "m.three": {}}) == ["z.one", "a.two", "m.three"]
    # Only what has to move does: x.free stays first.
    wanted = {"x.free": {}, "a.needs": {"c.needed": ANY}, "b.free": {}, "c.needed": {}}
    assert install_order(wanted) == ["x.free", "b.free", "c.needed", "a.needs"]


def test_install_order_ignores_requirements_outside_the_batch() -> None:
    assert install_order({"a.one": {"already.installed": ANY}, "b.two": {}}) == ["a.one", "b.two"]
    assert install_order({}) == []


def test_install_order_names_a_cycle() -> None:
    with pytest.raises(ValueError) as caught:
        install_order({"a.x": {"b.y": ANY}, "b.y": {"a.x": ANY}})
    assert str(caught.value) == (
        "These extensions cannot be installed in any order: a.x needs b.y, which needs a.x."
    )


def test_install_order_names_a_longer_cycle_and_not_what_waits_on_it() -> None:
    wanted = {
        "first.free": {},
        "waits.on-cycle": {"b.y": ANY},
        "a.x": {"b.y": ANY},
        "b.y": {"c.z": ANY},
        "c.z": {"a.x": ANY, "first.free": ANY},
    }
    with pytest.raises(ValueError) as caught:
        install_order(wanted)
    assert str(caught.value).endswith(": a.x needs b.y, which needs c.z, which needs a.x.")


def test_install_order_names_an_extension_that_needs_itself() -> None:
    with pytest.raises(ValueError, match=r": a\.x needs itself\.$"):
        install_order({"a.x": {"a.x": ANY}})


# --- What is installed ---------------------------------------------------------------------------


def ext(extension_id: str, version: str = "1.0.0", **requires: str) -> Installed:
    """An installed extension; ``requires`` keys use '_' for '.' (``base_lib="^1"``)."""
    return Installed(
        extension_id,
        extension_id.title(),
        version,
        {key.replace("_", "."): r(text) for key, text in requires.items()},
    )


def ids(items: list[Installed]) -> list[str]:
    return [item.id for item in items]


def test_dependents_of_are_transitive_and_come_before_what_they_need() -> None:
    installed = [
        ext("base.lib", "1.2.0"),
        ext("mid.lib", base_lib="^1"),
        ext("unrelated.tool"),
        ext("top.app", mid_lib="*"),
        ext("other.app", base_lib=">=1.0"),
    ]
    assert ids(dependents_of("base.lib", installed)) == ["top.app", "mid.lib", "other.app"]
    assert ids(dependents_of("mid.lib", installed)) == ["top.app"]
    assert dependents_of("top.app", installed) == []
    assert dependents_of("not.installed", installed) == []


def test_dependents_of_a_diamond_each_once() -> None:
    installed = [
        ext("d.base"),
        ext("b.left", d_base="*"),
        ext("c.right", d_base="*"),
        ext("a.top", b_left="*", c_right="*"),
    ]
    assert ids(dependents_of("d.base", installed)) == ["a.top", "b.left", "c.right"]


def test_dependents_of_tolerate_a_stored_cycle() -> None:
    installed = [
        ext("base.lib"),
        ext("a.x", b_y="*", base_lib="*"),
        ext("b.y", a_x="*"),
        ext("top.app", a_x="*"),
        ext("self.ish", self_ish="*", base_lib="*"),
    ]
    found = ids(dependents_of("base.lib", installed))
    assert sorted(found) == ["a.x", "b.y", "self.ish", "top.app"]
    assert found.index("top.app") < found.index("a.x")


def test_dependents_of_an_extension_its_dependents_also_need_back() -> None:
    installed = [ext("a.x", b_y="*"), ext("b.y", a_x="*")]
    assert ids(dependents_of("a.x", installed)) == ["b.y"]


def test_broken_by_lists_dependents_whose_range_misses_the_new_version() -> None:
    installed = [
        ext("base.lib", "1.2.0"),
        ext("strict.app", base_lib=">=1.2.0, <1.3.0"),
        ext("loose.app", base_lib="^1"),
        ext("indirect.app", strict_app="*"),
        ext("unrelated.tool"),
    ]
    upgrade = broken_by("base.lib", "1.3.0", installed)
    assert [(item.id, str(wanted)) for item, wanted in upgrade] == [
        ("strict.app", ">=1.2.0, <1.3.0")
    ]
    major = broken_by("base.lib", SemVer(2, 0, 0), installed)
    assert ids([item for item, _ in major]) == ["strict.app", "loose.app"]
    downgrade = broken_by("base.lib", "1.1.0", installed)
    assert ids([item for item, _ in downgrade]) == ["strict.app"]
    assert broken_by("base.lib", "1.2.5", installed) == []
    with pytest.raises(ValueError, match="is not a semantic version"):
        broken_by("base.lib", "2", installed)


# --- Manifests -----------------------------------------------------------------------------------


def manifest_problems(**fields: object) -> list[str]:
    with pytest.raises(ManifestError) as caught:
        parse_manifest(json.dumps({**MINIMAL, **fields}).encode("utf-8"))
    return caught.value.problems


def test_manifest_reads_requires_and_keeps_it_raw() -> None:
    requires = {"other.id": ">=1.2.0, <2.0.0", "third.id": "^1.4"}
    manifest = parse_manifest(json.dumps({**MINIMAL, "requires": requires}).encode())
    assert manifest.requires == {"other.id": r(">=1.2.0, <2.0.0"), "third.id": r("^1.4")}
    assert manifest.raw["requires"] == requires
    assert manifest.ignored_keys == ()
    assert requires_of(manifest.raw) == manifest.requires
    hash(manifest)


def test_manifest_without_requires_requires_nothing() -> None:
    assert parse_manifest(json.dumps(MINIMAL).encode()).requires == {}


def test_format_1_knows_requires() -> None:
    document = {**MINIMAL, "manifest_version": 1, "requires": {"other.id": "*"}}
    assert parse_manifest(json.dumps(document).encode()).requires == {"other.id": ANY}


@pytest.mark.parametrize(
    ("requires", "problem"),
    [
        (["other.id"], "requires: must be an object (got a list)"),
        ({"other.id": 1}, "requires['other.id']: must be text (got a whole number)"),
        (
            {"other.id": ">=1.x"},
            "requires['other.id']: '>=1.x' is not a version range: "
            "'1.x' is not a version like 1.2.3, 1.2 or 1",
        ),
        (
            {"other.id": ""},
            "requires['other.id']: '' is not a version range; write * for any version",
        ),
        (
            {"Other": "*"},
            "requires.Other: is not an extension id: ids are lowercase reverse-DNS like "
            "'example.my-tool', at most 128 characters",
        ),
        (
            {"example." + "a" * 121: "*"},
            f"requires['example.{'a' * 121}']: is not an extension id",
        ),
        (
            {"example.tool": "^1"},
            "requires['example.tool']: is this extension's own id; an extension cannot need itself",
        ),
    ],
)
def test_manifest_refuses_bad_requires(requires: object, problem: str) -> None:
    problems = manifest_problems(requires=requires)
    assert len(problems) == 1, problems
    assert problems[0].startswith(problem)


def test_schema_agrees_on_requires() -> None:
    from jsonschema import Draft202012Validator

    from registry.manifest import schema_path

    schema = json.loads(schema_path().read_text(encoding="utf-8"))
    validator = Draft202012Validator(schema)
    prop = schema["properties"]["requires"]
    assert prop["propertyNames"]["pattern"] == schema["properties"]["id"]["pattern"]
    assert validator.is_valid({**MINIMAL, "manifest_version": 1, "requires": {"a.b": "^1"}})
    for bad in ({"Bad": "*"}, {"a.b": 1}, {"a.b": ""}, ["a.b"]):
        assert not validator.is_valid({**MINIMAL, "requires": bad}), bad
