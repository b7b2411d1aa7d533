"""Tests of manifest parsing and validation: one test per rule."""

from __future__ import annotations

import itertools
import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from registry.errors import ManifestError
from registry.manifest import (
    MANIFEST_FORMAT,
    Manifest,
    NewerManifestFormatError,
    NotAnExtensionError,
    SemVer,
    app_version_fits,
    check_compatibility,
    compatibility_requirement,
    parse_manifest,
    schema_path,
)
from registry.permissions import PERMISSIONS, describe

ROOT = Path(__file__).resolve().parent.parent

MINIMAL: dict[str, Any] = {"id": "example.tool", "name": "Tool", "version": "1.0.0"}


def encode(document: object) -> bytes:
    return json.dumps(document).encode("utf-8")


def with_fields(**fields: object) -> bytes:
    return encode({**MINIMAL, **fields})


def problems_of(data: bytes) -> list[str]:
    with pytest.raises(ManifestError) as caught:
        parse_manifest(data)
    return caught.value.problems


def only_problem(data: bytes) -> str:
    problems = problems_of(data)
    assert len(problems) == 1, problems
    return problems[0]


# --- Valid manifests ---------------------------------------------------------------------------


def test_minimal_manifest_gets_defaults() -> None:
    manifest = parse_manifest(encode(MINIMAL))
    assert manifest == Manifest(
        id="example.tool", name="Tool", version=SemVer(1, 0, 0), raw=dict(MINIMAL)
    )
    assert manifest.description == manifest.author == manifest.homepage == ""
    assert manifest.min_app_version is None
    assert manifest.max_app_version is None
    assert manifest.manifest_version is None
    assert manifest.icon is None
    assert manifest.capabilities == manifest.permissions == manifest.ignored_keys == ()
    assert manifest.config == {}


def test_full_manifest_reads_every_field() -> None:
    document = {
        "$schema": "https://example.org/manifest.schema.json",
        "id": "org.example.word_count-2",
        "name": "Word Count ✓",
        "version": "2.1.0-beta.2+build.7",
        "description": "Counts words.\nAlso lines.",
        "author": "Ada Lovelace",
        "license": "MIT",
        "homepage": "https://example.org/word-count?from=manifest#top",
        "min_app_version": "0.1.0",
        "max_app_version": "2.0.0-alpha",
        "manifest_version": 1,
        "capabilities": ["command", "panel"],
        "permissions": ["filesystem-read", "network"],
        "icon": "images/icon.PNG",
        "config": {"enabled": True, "limit": 10, "ratio": 0.5, "label": "words"},
    }
    manifest = parse_manifest(encode(document))
    assert manifest.id == "org.example.word_count-2"
    assert manifest.name == "Word Count ✓"
    assert manifest.version == SemVer(2, 1, 0, ("beta", 2), "build.7")
    assert str(manifest.version) == "2.1.0-beta.2+build.7"
    assert manifest.description == "Counts words.\nAlso lines."
    assert manifest.author == "Ada Lovelace"
    assert manifest.license == "MIT"
    assert manifest.homepage == "https://example.org/word-count?from=manifest#top"
    assert manifest.min_app_version == SemVer(0, 1, 0)
    assert manifest.max_app_version == SemVer(2, 0, 0, ("alpha",))
    assert manifest.manifest_version == 1
    assert manifest.capabilities == ("command", "panel")
    assert manifest.permissions == ("filesystem-read", "network")
    assert manifest.icon == "images/icon.PNG"
    assert manifest.config == {"enabled": True, "limit": 10, "ratio": 0.5, "label": "words"}
    assert type(manifest.config["enabled"]) is bool
    assert type(manifest.config["limit"]) is int
    # "$schema" is for editors: neither an error nor an ignored key.
    assert manifest.ignored_keys == ()
    assert manifest.raw == document


def test_manifest_is_hashable_despite_dict_fields() -> None:
    manifest = parse_manifest(with_fields(config={"a": 1}))
    assert hash(manifest) == hash(parse_manifest(with_fields(config={"a": 1})))


def test_unknown_top_level_keys_are_ignored_and_reported() -> None:
    manifest = parse_manifest(with_fields(future_field={"x": [1]}, another=None))
    assert manifest.ignored_keys == ("future_field", "another")
    assert manifest.raw["future_field"] == {"x": [1]}


# --- Bytes and JSON ----------------------------------------------------------------------------


def test_utf8_bom_is_tolerated() -> None:
    manifest = parse_manifest(b"\xef\xbb\xbf" + with_fields(name="Caf\u00e9"))
    assert manifest.name == "Café"


def test_non_utf8_bytes_are_rejected() -> None:
    data = b'{"id": "example.tool", "name": "Caf\xe9", "version": "1.0.0"}'
    assert only_problem(data) == (
        "manifest.json: is not UTF-8 text (byte 0xe9 at offset 35); save it with UTF-8 encoding"
    )


def test_utf16_is_rejected_as_not_utf8() -> None:
    assert "is not UTF-8 text" in only_problem(encode(MINIMAL).decode().encode("utf-16"))


def test_not_json_is_rejected_with_position() -> None:
    assert only_problem(b'{"id": "example.tool",}') == (
        "manifest.json: is not valid JSON: Expecting property name enclosed in double quotes "
        "(line 1, column 23)"
    )


def test_empty_file_is_not_json() -> None:
    assert only_problem(b"").startswith("manifest.json: is not valid JSON:")


@pytest.mark.parametrize(
    ("document", "kind"),
    [([MINIMAL], "a list"), ("text", "text"), (None, "null"), (3, "a whole number")],
)
def test_top_level_must_be_an_object(document: object, kind: str) -> None:
    assert only_problem(encode(document)) == (
        f"manifest.json: the top level must be a JSON object {{...}} (got {kind})"
    )


def test_duplicate_top_level_key_is_rejected() -> None:
    data = b'{"id": "example.tool", "name": "A", "name": "B", "version": "1.0.0"}'
    assert only_problem(data) == "name: appears more than once; each key may appear once"


def test_duplicate_nested_key_names_its_path() -> None:
    data = b'{"id": "example.tool", "name": "A", "version": "1.0.0", "config": {"a": 1, "a": 2}}'
    assert only_problem(data) == "config.a: appears more than once; each key may appear once"


@pytest.mark.parametrize("constant", ["NaN", "Infinity", "-Infinity", "1e400"])
def test_non_finite_numbers_are_rejected(constant: str) -> None:
    data = with_fields(config={"ratio": "PLACEHOLDER"}).replace(b'"PLACEHOLDER"', constant.encode())
    assert only_problem(data) == f"config.ratio: {constant} is not allowed; numbers must be finite"


def test_non_finite_number_with_many_digits_is_shown_short() -> None:
    data = with_fields(config={"ratio": "PLACEHOLDER"}).replace(
        b'"PLACEHOLDER"', b"9" * 500 + b".5"
    )
    assert only_problem(data) == (
        "config.ratio: 999999999999… (502 characters) is not allowed; numbers must be finite"
    )


@pytest.mark.parametrize(
    ("field", "literal"),
    [(("config", "count"), b"1" * 5000), (("version",), b"-" + b"7" * 4301)],
    ids=["config", "version"],
)
def test_integer_too_long_for_python_names_its_field(
    field: tuple[str, ...], literal: bytes
) -> None:
    document: dict[str, Any] = dict(MINIMAL)
    if len(field) == 2:
        document[field[0]] = {field[1]: "PLACEHOLDER"}
    else:
        document[field[0]] = "PLACEHOLDER"
    problem = only_problem(encode(document).replace(b'"PLACEHOLDER"', literal))
    digits = len(literal.lstrip(b"-"))
    assert problem == (
        f"{'.'.join(field)}: is a number with {digits:,} digits, too long to read; "
        "use a shorter number"
    )
    assert "set_int_max_str_digits" not in problem


def test_unpaired_surrogate_is_rejected() -> None:
    data = with_fields(author="PLACEHOLDER").replace(b"PLACEHOLDER", b"\\ud800")
    assert only_problem(data) == (
        "author: contains an unpaired surrogate (\\ud800), which is not valid text"
    )


def test_deep_nesting_is_rejected_without_crashing() -> None:
    deep = b"[" * 900 + b"]" * 900
    data = with_fields(capabilities="PLACEHOLDER").replace(b'"PLACEHOLDER"', deep)
    assert only_problem(data) == "capabilities: is nested more than 20 levels deep"


def test_nesting_beyond_the_json_parser_is_rejected() -> None:
    data = with_fields(extra="PLACEHOLDER").replace(b'"PLACEHOLDER"', b"[" * 100_000)
    assert only_problem(data).startswith("manifest.json: ")


# --- Required fields and types -----------------------------------------------------------------


def test_required_fields_are_each_reported() -> None:
    assert problems_of(b"{}") == ["id: is required", "name: is required", "version: is required"]


def test_wrong_types_name_the_field_and_what_was_given() -> None:
    data = with_fields(id=5, name=["x"], capabilities="command", config=[], icon=None)
    assert problems_of(data) == [
        "id: must be text (got a whole number)",
        "name: must be text (got a list)",
        "capabilities: must be a list (got text)",
        "icon: must be text (got null)",
        "config: must be an object (got a list)",
    ]


# --- id ------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "ident", ["example.tool", "org.example.my-tool", "a.b", "x_1.y-2.z3", "1.2"]
)
def test_valid_ids(ident: str) -> None:
    assert parse_manifest(with_fields(id=ident)).id == ident


@pytest.mark.parametrize(
    "ident",
    [
        "Example.Tool",  # uppercase
        "Bad ID",  # space
        "tool",  # single label
        "example..tool",  # empty label
        ".example.tool",  # empty first label
        "example.tool.",  # empty last label
        "example.tool\n",  # trailing newline (would pass a '$'-anchored re.search)
        "example.tööl",  # non-ASCII letter
        "example/tool",
        "",
    ],
)
def test_invalid_ids(ident: str) -> None:
    assert only_problem(with_fields(id=ident)) == (
        f"id: must be lowercase reverse-DNS like 'example.my-tool' (got {ident!r})"
    )


def test_id_of_128_characters_is_allowed_and_129_is_not() -> None:
    ok = "example." + "a" * 120
    assert len(ok) == 128
    assert parse_manifest(with_fields(id=ok)).id == ok
    assert only_problem(with_fields(id=ok + "b")) == (
        "id: must be at most 128 characters (got 129)"
    )


# --- versions -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "text", ["0.0.0", "1.2.3", "10.20.30", "1.0.0-alpha", "1.0.0-0.3.7", "1.0.0-x-y.7+b.1-2"]
)
def test_valid_versions_round_trip(text: str) -> None:
    assert str(parse_manifest(with_fields(version=text)).version) == text


@pytest.mark.parametrize(
    "text",
    [
        "1.0",
        "1",
        "01.0.0",  # leading zero
        "1.02.0",
        "1.0.00",
        "1.0.0-01",  # numeric pre-release identifier with a leading zero
        "1.0.0-",
        "1.0.0+",
        "1.0.0-a..b",
        "v1.0.0",
        "1.0.0\n",
        " 1.0.0",
        "1.0.0.0",
        "١.0.0",  # a non-ASCII digit
    ],
)
def test_invalid_versions(text: str) -> None:
    assert only_problem(with_fields(version=text)) == (
        f"version: {text!r} is not a semantic version like 1.2.3"
    )
    with pytest.raises(ValueError, match="is not a semantic version"):
        SemVer.parse(text)


def test_invalid_min_app_version_names_its_field() -> None:
    assert only_problem(with_fields(min_app_version="2.0")) == (
        "min_app_version: '2.0' is not a semantic version like 1.2.3"
    )


def test_semver_precedence_follows_the_specification() -> None:
    # The example chain from semver.org section 11, plus numeric-vs-text and build metadata.
    chain = [
        "1.0.0-alpha",
        "1.0.0-alpha.1",
        "1.0.0-alpha.beta",
        "1.0.0-beta",
        "1.0.0-beta.2",
        "1.0.0-beta.11",
        "1.0.0-rc.1",
        "1.0.0",
        "1.0.1",
        "1.2.0",
        "1.10.0",
        "2.0.0",
    ]
    versions = [SemVer.parse(text) for text in chain]
    assert sorted(versions[1::2] + versions[::2]) == versions
    for lower, higher in itertools.pairwise(versions):
        assert lower < higher
        assert higher > lower
    assert SemVer.parse("1.0.0+a") == SemVer.parse("1.0.0+b")
    assert str(SemVer.parse("1.0.0+a")) == "1.0.0+a"
    assert SemVer.parse("1.0.0-2") < SemVer.parse("1.0.0-10")  # numeric, not text, order
    assert SemVer.parse("1.0.0-10") < SemVer.parse("1.0.0-1a")  # numbers before text


def test_semver_rejects_invalid_components() -> None:
    with pytest.raises(ValueError):
        SemVer(1, -1, 0)
    with pytest.raises(ValueError):
        SemVer(1, 0, 0, ("01",))
    with pytest.raises(ValueError):
        SemVer(1, 0, 0, ("7",))  # a numeric identifier must be an int
    with pytest.raises(ValueError):
        SemVer(1, 0, 0, build="a..b")


_numeric = st.integers(min_value=0, max_value=10**12)
_alnum = st.from_regex(r"[0-9a-zA-Z-]*[a-zA-Z-][0-9a-zA-Z-]*", fullmatch=True)
_semvers = st.builds(
    SemVer,
    _numeric,
    _numeric,
    _numeric,
    st.lists(st.one_of(_numeric, _alnum), max_size=4).map(tuple),
    st.lists(st.from_regex(r"[0-9a-zA-Z-]+", fullmatch=True), max_size=3).map(".".join),
)


def _oracle_compare(a: SemVer, b: SemVer) -> int:
    """semver.org section 11 written out step by step, independently of SemVer's own key."""

    def sign(x: int) -> int:
        return (x > 0) - (x < 0)

    for left, right in ((a.major, b.major), (a.minor, b.minor), (a.patch, b.patch)):
        if left != right:
            return sign(left - right)
    if not a.prerelease or not b.prerelease:
        return sign(len(b.prerelease) - len(a.prerelease)) if a.prerelease or b.prerelease else 0
    for x, y in zip(a.prerelease, b.prerelease, strict=False):
        if isinstance(x, int) and isinstance(y, int):
            if x != y:
                return sign(x - y)
        elif isinstance(x, int):
            return -1
        elif isinstance(y, int):
            return 1
        elif x != y:
            return -1 if x < y else 1
    return sign(len(a.prerelease) - len(b.prerelease))


@settings(database=None, deadline=None, max_examples=300)
@given(_semvers, _semvers)
def test_semver_round_trips_and_orders_like_the_oracle(a: SemVer, b: SemVer) -> None:
    assert SemVer.parse(str(a)) == a
    assert str(SemVer.parse(str(a))) == str(a)
    expected = _oracle_compare(a, b)
    assert (a < b, a == b, a > b) == (expected < 0, expected == 0, expected > 0)
    if a == b:
        assert hash(a) == hash(b)


# --- permissions and capabilities --------------------------------------------------------------


def test_unknown_permission_lists_the_known_ones() -> None:
    known = ", ".join(PERMISSIONS)
    assert only_problem(with_fields(permissions=["network", "rootkit"])) == (
        f"permissions[1]: unknown permission 'rootkit'; known: {known}"
    )
    assert known.startswith("network, filesystem-read, ")


def test_repeated_permission_is_rejected() -> None:
    assert only_problem(with_fields(permissions=["network", "network"])) == (
        "permissions: 'network' is listed more than once"
    )


def test_capabilities_must_be_unique_and_non_empty() -> None:
    assert problems_of(with_fields(capabilities=["command", "", "command"])) == [
        "capabilities: 'command' is listed more than once",
        "capabilities[1]: must not be empty",
    ]


def test_every_permission_has_plain_words() -> None:
    assert set(PERMISSIONS) >= {
        "network",
        "filesystem-read",
        "filesystem-write",
        "clipboard",
        "notifications",
        "run-programs",
    }
    for name, words in PERMISSIONS.items():
        assert words and words[0].isupper() and not words.endswith("."), name
    assert describe(["network", "clipboard"]) == [PERMISSIONS["network"], PERMISSIONS["clipboard"]]


def test_schema_enum_matches_the_permission_vocabulary() -> None:
    schema = json.loads(schema_path().read_text(encoding="utf-8"))
    assert schema["properties"]["permissions"]["items"]["enum"] == list(PERMISSIONS)


# --- text fields --------------------------------------------------------------------------------


@pytest.mark.parametrize("char", ["\u202e", "\u202a", "\u2066", "\u2069", "\u200e", "\u200f"])
def test_bidi_character_in_name_is_rejected(char: str) -> None:
    assert only_problem(with_fields(name=f"Safe{char}exe.txt")) == (
        f"name: contains a bidirectional-override character (U+{ord(char):04X}) at position 4; "
        "use plain text"
    )


@pytest.mark.parametrize("char", ["\n", "\t", "\x00", "\x7f", "\x85"])
def test_control_character_in_name_is_rejected(char: str) -> None:
    assert only_problem(with_fields(name=f"A{char}B")) == (
        f"name: contains a control character (U+{ord(char):04X}) at position 1; use plain text"
    )


def test_description_allows_line_breaks_only() -> None:
    assert parse_manifest(with_fields(description="One.\nTwo.")).description == "One.\nTwo."
    assert only_problem(with_fields(description="One.\r\nTwo.")) == (
        "description: contains a control character (U+000D) at position 4; "
        "only line breaks are allowed"
    )


def test_author_rejects_control_and_bidi_characters() -> None:
    assert problems_of(with_fields(author="A\nB")) == [
        "author: contains a control character (U+000A) at position 1; use plain text"
    ]
    assert problems_of(with_fields(author="A\u2067B")) == [
        "author: contains a bidirectional-override character (U+2067) at position 1; use plain text"
    ]


def test_name_length_limits() -> None:
    assert parse_manifest(with_fields(name="n" * 100)).name == "n" * 100
    assert only_problem(with_fields(name="n" * 101)) == (
        "name: must be at most 100 characters (got 101)"
    )
    assert only_problem(with_fields(name="")) == "name: must not be empty"
    assert only_problem(with_fields(name="   ")) == "name: must not be blank"


def test_description_length_limit() -> None:
    assert parse_manifest(with_fields(description="d" * 2000)).description == "d" * 2000
    assert only_problem(with_fields(description="d" * 2001)) == (
        "description: must be at most 2000 characters (got 2001)"
    )


# --- homepage and icon --------------------------------------------------------------------------


@pytest.mark.parametrize(
    "url", ["ftp://example.org", "example.org", "https://", "http:///path", "https://a b.org"]
)
def test_homepage_must_be_a_web_address(url: str) -> None:
    assert only_problem(with_fields(homepage=url)) == (
        f"homepage: must be an http:// or https:// web address (got {url!r})"
    )


@pytest.mark.parametrize("icon", ["icon.png", "assets/icons/app.png", "a..b.png"])
def test_valid_icon_paths(icon: str) -> None:
    assert parse_manifest(with_fields(icon=icon)).icon == icon


@pytest.mark.parametrize(
    "icon",
    [
        *("../icon.png", "a/../icon.png", "./icon.png", "/icon.png", "a\\icon.png"),
        *("C:icon.png", "icon.svg", "icon", "a//icon.png", ".png/", ""),
    ],
)
def test_invalid_icon_paths(icon: str) -> None:
    assert only_problem(with_fields(icon=icon)) == (
        "icon: must be the relative path of a .png file in the archive, with forward slashes "
        f"and no '..' (got {icon!r})"
    )


# --- config -------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "kind"), [({"x": 1}, "an object"), ([1], "a list"), (None, "null")]
)
def test_config_values_must_be_scalars(value: object, kind: str) -> None:
    assert only_problem(with_fields(config={"ok": "yes", "bad": value})) == (
        f"config.bad: must be true/false, a number or text (got {kind})"
    )


def test_config_setting_names_must_not_be_empty() -> None:
    assert only_problem(with_fields(config={"": 1})) == "config: setting names must not be empty"


def test_config_key_with_dots_is_quoted_in_messages() -> None:
    assert only_problem(with_fields(config={"a.b": None})) == (
        "config['a.b']: must be true/false, a number or text (got null)"
    )


# --- many problems at once ----------------------------------------------------------------------


def test_all_problems_are_reported_at_once_each_naming_its_field() -> None:
    data = encode(
        {
            "id": "Bad ID",
            "name": "Evil\u202etxt.exe",
            "version": "1.0",
            "permissions": ["network", "rootkit"],
            "config": {"theme": {"dark": True}},
            "homepage": "javascript:alert(1)",
        }
    )
    with pytest.raises(ManifestError) as caught:
        parse_manifest(data)
    problems = caught.value.problems
    assert problems == [
        "id: must be lowercase reverse-DNS like 'example.my-tool' (got 'Bad ID')",
        "name: contains a bidirectional-override character (U+202E) at position 4; use plain text",
        "version: '1.0' is not a semantic version like 1.2.3",
        "homepage: must be an http:// or https:// web address (got 'javascript:alert(1)')",
        f"permissions[1]: unknown permission 'rootkit'; known: {', '.join(PERMISSIONS)}",
        "config.theme: must be true/false, a number or text (got an object)",
    ]
    message = str(caught.value)
    assert message.startswith("The extension's manifest.json has 6 problems:\n  - id: ")


# --- compatibility ------------------------------------------------------------------------------


def test_compatibility_without_a_minimum_is_always_fine() -> None:
    assert check_compatibility(parse_manifest(encode(MINIMAL)), "0.0.1") is None


def test_compatibility_compares_semantic_versions() -> None:
    manifest = parse_manifest(with_fields(min_app_version="2.0.0"))
    assert check_compatibility(manifest, "2.0.0") is None
    assert check_compatibility(manifest, "10.0.0") is None  # numerically, not as text
    assert check_compatibility(manifest, "0.1.0") == (
        "This extension needs Extension Manager 2.0.0 or newer; you have 0.1.0. "
        "Update the app, or ask the author for an older version."
    )
    # A pre-release of 2.0.0 comes before 2.0.0 itself.
    assert check_compatibility(manifest, "2.0.0-rc.1") is not None


def test_compatibility_rejects_a_malformed_app_version() -> None:
    with pytest.raises(ValueError):
        check_compatibility(parse_manifest(with_fields(min_app_version="1.0.0")), "1.0")
    with pytest.raises(ValueError):
        check_compatibility(parse_manifest(with_fields(max_app_version="1.0.0")), "1.0")


def test_compatibility_upper_bound_is_exclusive() -> None:
    manifest = parse_manifest(with_fields(max_app_version="0.2.0"))
    assert check_compatibility(manifest, "0.1.9") is None
    assert check_compatibility(manifest, "0.2.0-rc.1") is None  # a pre-release comes before
    assert check_compatibility(manifest, "0.2.0") == (
        "This extension works with Extension Manager before 0.2.0 only; you have 0.2.0. "
        "Look for a newer version of the extension."
    )
    assert check_compatibility(manifest, "0.3.0") == (
        "This extension works with Extension Manager before 0.2.0 only; you have 0.3.0. "
        "Look for a newer version of the extension."
    )


def test_compatibility_with_both_bounds() -> None:
    manifest = parse_manifest(with_fields(min_app_version="1.0.0", max_app_version="2.0.0"))
    assert check_compatibility(manifest, "1.0.0") is None
    assert check_compatibility(manifest, "1.99.0") is None
    assert check_compatibility(manifest, "0.9.0") == (
        "This extension needs Extension Manager 1.0.0 or newer; you have 0.9.0. "
        "Update the app, or ask the author for an older version."
    )
    assert check_compatibility(manifest, "2.0.0+build.5") == (
        "This extension works with Extension Manager before 2.0.0 only; you have 2.0.0+build.5. "
        "Look for a newer version of the extension."
    )


def test_max_app_version_is_parsed_like_min_app_version() -> None:
    assert parse_manifest(with_fields(max_app_version="3.0.0")).max_app_version == SemVer(3, 0, 0)
    assert only_problem(with_fields(max_app_version="3.0")) == (
        "max_app_version: '3.0' is not a semantic version like 1.2.3"
    )
    assert only_problem(with_fields(max_app_version="3.0.0\n")) == (
        "max_app_version: '3.0.0\\n' is not a semantic version like 1.2.3"
    )
    assert only_problem(with_fields(max_app_version=3)) == (
        "max_app_version: must be text (got a whole number)"
    )


@pytest.mark.parametrize(
    ("low", "high"),
    [("2.0.0", "2.0.0"), ("2.0.0", "1.9.9"), ("2.0.0", "2.0.0-rc.1"), ("2.0.0+a", "2.0.0+b")],
)
def test_max_app_version_must_be_above_min_app_version(low: str, high: str) -> None:
    assert only_problem(with_fields(min_app_version=low, max_app_version=high)) == (
        f"max_app_version: must be greater than min_app_version ({low}): it is the first app "
        f"version the extension does not work with (got {high})"
    )


def test_app_version_fits_takes_the_bounds_as_text() -> None:
    assert app_version_fits("1.5.0", None, None) is None
    assert app_version_fits("1.5.0", "", "") is None
    assert app_version_fits("1.5.0", "1.0.0", "2.0.0") is None
    assert app_version_fits("1.5.0", SemVer(1, 0, 0), SemVer(2, 0, 0)) is None
    assert app_version_fits("0.3.0", None, "0.2.0") == (
        "This extension works with Extension Manager before 0.2.0 only; you have 0.3.0. "
        "Look for a newer version of the extension."
    )
    assert app_version_fits("3.0.0", "3.1.0", None) == (
        "This extension needs Extension Manager 3.1.0 or newer; you have 3.0.0. "
        "Update the app, or ask the author for an older version."
    )
    # The same sentences as check_compatibility, which uses it.
    manifest = parse_manifest(with_fields(min_app_version="3.1.0"))
    assert app_version_fits("3.0.0", "3.1.0", None) == check_compatibility(manifest, "3.0.0")


@pytest.mark.parametrize(
    ("app", "low", "high"), [("1.0", None, None), ("1.0.0", "1.0", None), ("1.0.0", None, "v2")]
)
def test_app_version_fits_rejects_what_is_not_a_semantic_version(
    app: str, low: str | None, high: str | None
) -> None:
    with pytest.raises(ValueError, match="is not a semantic version"):
        app_version_fits(app, low, high)


@pytest.mark.parametrize(
    ("low", "high", "phrase"),
    [
        ("3.1.0", None, "Extension Manager ≥ 3.1.0"),
        (None, "0.2.0", "Extension Manager < 0.2.0"),
        ("1.0.0", "2.0.0", "Extension Manager ≥ 1.0.0 and < 2.0.0"),
        (SemVer(1, 0, 0), SemVer(2, 0, 0, ("rc", 1)), "Extension Manager ≥ 1.0.0 and < 2.0.0-rc.1"),
        (None, None, ""),
        ("", "", ""),
    ],
)
def test_compatibility_requirement_phrases(
    low: str | SemVer | None, high: str | SemVer | None, phrase: str
) -> None:
    assert compatibility_requirement(low, high) == phrase


# --- manifest format ----------------------------------------------------------------------------


def test_this_app_reads_manifest_format_1() -> None:
    assert MANIFEST_FORMAT == 1
    manifest = parse_manifest(with_fields(manifest_version=1))
    assert manifest.manifest_version == 1
    assert manifest.ignored_keys == ()


def test_format_1_refuses_each_unknown_top_level_key() -> None:
    data = with_fields(manifest_version=1, colour="red", min_app_verison="1.0.0")
    assert problems_of(data) == [
        "colour: is not a field of manifest format 1",
        "min_app_verison: is not a field of manifest format 1; did you mean 'min_app_version'?",
    ]


def test_format_1_unknown_keys_come_after_the_known_fields_problems() -> None:
    data = with_fields(manifest_version=1, extra=True, version="1.0", **{"a b": 1})
    assert problems_of(data) == [
        "version: '1.0' is not a semantic version like 1.2.3",
        "extra: is not a field of manifest format 1",
        "['a b']: is not a field of manifest format 1",
    ]


def test_format_1_allows_the_schema_key() -> None:
    manifest = parse_manifest(with_fields(manifest_version=1, **{"$schema": "manifest.json"}))
    assert manifest.ignored_keys == ()


def test_legacy_manifest_still_ignores_unknown_keys() -> None:
    manifest = parse_manifest(with_fields(colour="red"))
    assert manifest.manifest_version is None
    assert manifest.ignored_keys == ("colour",)


@pytest.mark.parametrize("declared", [2, 3, 10**30])
def test_newer_manifest_format_is_refused_in_one_sentence(declared: int) -> None:
    # Even with problems that format 1 would report: they may be fine in the newer format.
    data = with_fields(manifest_version=declared, version="1.0", colour="red")
    with pytest.raises(NewerManifestFormatError) as caught:
        parse_manifest(data)
    shown = str(declared) if declared < 10**20 else "10000000… (31 digits)"
    sentence = (
        f"This extension uses manifest format {shown}, which needs a newer Extension Manager "
        "(this one reads format 1). Update the app."
    )
    assert str(caught.value) == sentence
    assert caught.value.problems == [sentence]
    assert caught.value.manifest_format == declared
    assert isinstance(caught.value, ManifestError)


@pytest.mark.parametrize(
    ("value", "problem"),
    [
        (0, "must be 1 or more: formats are numbered from 1 (got 0)"),
        (-1, "must be 1 or more: formats are numbered from 1 (got -1)"),
        (1.0, "must be a whole number such as 1, the manifest format (got 1.0)"),
        (1.5, "must be a whole number such as 1, the manifest format (got 1.5)"),
        ("1", "must be a whole number such as 1, the manifest format (got '1')"),
        (True, "must be a whole number such as 1, the manifest format (got true)"),
        (None, "must be a whole number such as 1, the manifest format (got null)"),
        ([1], "must be a whole number such as 1, the manifest format (got a list)"),
    ],
)
def test_manifest_version_must_be_a_format_number(value: object, problem: str) -> None:
    # One message each, and no unknown-key messages: the format is not known.
    assert problems_of(with_fields(manifest_version=value, colour="red")) == [
        f"manifest_version: {problem}"
    ]


def test_manifest_version_too_long_to_read_is_reported_once() -> None:
    data = with_fields(manifest_version="PLACEHOLDER").replace(b'"PLACEHOLDER"', b"9" * 5000)
    assert only_problem(data) == (
        "manifest_version: is a number with 5,000 digits, too long to read; use a shorter number"
    )


# --- schema file --------------------------------------------------------------------------------


def test_schema_is_a_valid_draft_2020_12_schema_with_docs() -> None:
    from jsonschema import Draft202012Validator

    schema = json.loads(schema_path().read_text(encoding="utf-8"))
    Draft202012Validator.check_schema(schema)
    assert schema["$schema"] == "https://json-schema.org/draft/2020-12/schema"
    assert schema["$id"].startswith("https://")
    for name, prop in schema["properties"].items():
        assert prop.get("title") and prop.get("description"), name


def test_schema_describes_the_new_fields() -> None:
    schema = json.loads(schema_path().read_text(encoding="utf-8"))
    props = schema["properties"]
    assert "exclusive" in props["max_app_version"]["description"].lower()
    assert props["max_app_version"]["pattern"] == props["min_app_version"]["pattern"]
    fmt = props["manifest_version"]
    assert (fmt["type"], fmt["minimum"], fmt["maximum"]) == ("integer", 1, MANIFEST_FORMAT)
    assert "newer Extension Manager" in fmt["description"]
    assert schema["if"] == {"required": ["manifest_version"]}
    assert schema["then"]["additionalProperties"] is False
    # additionalProperties sees only the properties beside it: the lists must stay equal.
    assert list(schema["then"]["properties"]) == list(props)


def test_schema_is_strict_only_with_a_manifest_version() -> None:
    from jsonschema import Draft202012Validator

    validator = Draft202012Validator(json.loads(schema_path().read_text(encoding="utf-8")))
    assert validator.is_valid({**MINIMAL, "colour": "red"})
    assert validator.is_valid({**MINIMAL, "manifest_version": 1, "$schema": "x", "icon": "i.png"})
    assert not validator.is_valid({**MINIMAL, "manifest_version": 1, "colour": "red"})


@pytest.mark.parametrize(
    "fields",
    [
        {"id": "Bad ID"},
        {"id": "example." + "a" * 121},
        {"version": "01.0.0"},
        {"name": "a\u202eb"},
        {"description": "a\tb"},
        {"homepage": "ftp://example.org"},
        {"permissions": ["rootkit"]},
        {"capabilities": ["a", "a"]},
        {"icon": "../icon.png"},
        {"config": {"a": None}},
        {"max_app_version": "2.0"},
        {"manifest_version": 0},
        {"manifest_version": 2},
        {"manifest_version": True},
        {"manifest_version": "1"},
        {"manifest_version": 1, "colour": "red"},
    ],
)
def test_schema_alone_rejects_what_the_parser_rejects(fields: dict[str, object]) -> None:
    # Editors see only the schema, so it should agree with the parser on these.
    from jsonschema import Draft202012Validator

    schema = json.loads(schema_path().read_text(encoding="utf-8"))
    assert not Draft202012Validator(schema).is_valid({**MINIMAL, **fields})
    problems_of(encode({**MINIMAL, **fields}))


def test_importing_the_module_does_not_import_jsonschema_or_qt() -> None:
    code = (
        "import sys, registry.manifest, registry.permissions\n"
        "bad = [m for m in sys.modules if m.split('.')[0] in ('jsonschema', 'PySide6')]\n"
        "assert not bad, bad\n"
    )
    subprocess.run([sys.executable, "-c", code], cwd=ROOT, check=True)


# --- Described settings ------------------------------------------------------------------------

SETTINGS_CONFIG = {"size": 8, "mode": "fast", "loud": False}


@pytest.mark.parametrize(
    ("settings", "problem"),
    [
        (
            {"gone": {"title": "Gone"}},
            "settings.gone: describes a setting config does not have",
        ),
        ({"size": {"minimum": 10}}, "settings.size: the default 8 is below the minimum 10"),
        ({"size": {"maximum": 4}}, "settings.size: the default 8 is above the maximum 4"),
        (
            {"mode": {"minimum": 1}},
            "settings.mode: a range (minimum, maximum) is only for number settings",
        ),
        (
            {"mode": {"choices": ["slow"]}},
            "settings.mode: the default 'fast' is not a choice",
        ),
        ({"loud": {"choices": ["on"]}}, "settings.loud: choices are for number and text settings"),
        (
            {"size": {"choices": [8, "8"]}},
            "settings.size: every choice must have the default's type",
        ),
        ({"mode": {"title": "A\u202eB"}}, "settings.mode.title: "),
    ],
)
def test_described_settings_must_fit_their_defaults(settings: object, problem: str) -> None:
    assert only_problem(with_fields(config=SETTINGS_CONFIG, settings=settings)).startswith(problem)


def test_described_settings_are_kept_for_the_form() -> None:
    settings = {"size": {"title": "Size", "description": "How big.", "minimum": 1, "maximum": 9}}
    manifest = parse_manifest(with_fields(config=SETTINGS_CONFIG, settings=settings))
    assert manifest.raw["settings"] == settings


# --- Manifests of other kinds of software ------------------------------------------------------

FIREFOX_ADD_ON: dict[str, Any] = {
    "manifest_version": 2,
    "name": "Borderify",
    "version": "1.0",
    "description": "Adds a red border to all webpages matching mozilla.org.",
    "icons": {"48": "icons/border-48.png"},
    "browser_specific_settings": {"gecko": {"id": "borderify@example.com"}},
    "content_scripts": [{"matches": ["*://*.mozilla.org/*"], "js": ["borderify.js"]}],
    "permissions": ["tabs", "<all_urls>"],
}
CHROME_ADD_ON: dict[str, Any] = {
    "manifest_version": 3,
    "name": "Hello Extensions",
    "version": "1.0",
    "action": {"default_popup": "hello.html"},
    "background": {"service_worker": "background.js"},
    "permissions": ["storage", "activeTab"],
}
OLD_FIREFOX_ADD_ON: dict[str, Any] = {
    "manifest_version": 2,
    "name": "Old",
    "version": "0.1",
    "applications": {"gecko": {"id": "{d1f1a8c0-1b2c-4e3d-9f00-123456789abc}"}},
    "background": {"scripts": ["bg.js"]},
    "id": "not one of ours",
}


@pytest.mark.parametrize(
    "document",
    [FIREFOX_ADD_ON, CHROME_ADD_ON, OLD_FIREFOX_ADD_ON],
    ids=["firefox", "chrome", "old-firefox-with-a-foreign-id"],
)
def test_browser_add_on_is_named_in_one_sentence(document: dict[str, Any]) -> None:
    with pytest.raises(ManifestError) as caught:
        parse_manifest(encode(document))
    assert str(caught.value) == (
        "This is a browser add-on (a WebExtension), not an Extension Manager extension: "
        "install it in your web browser instead."
    )
    assert caught.value.problems == [str(caught.value)]


def test_our_manifest_with_a_manifest_version_key_is_still_ours() -> None:
    manifest = parse_manifest(encode({**MINIMAL, "manifest_version": 1}))
    assert manifest.manifest_version == 1
    # A newer format of ours is named as such, not as a browser add-on.
    with pytest.raises(NewerManifestFormatError):
        parse_manifest(encode({**MINIMAL, "manifest_version": 3}))
    with pytest.raises(ManifestError) as caught:
        parse_manifest(encode({**MINIMAL, "manifest_version": 0}))
    assert not isinstance(caught.value, NotAnExtensionError)


@pytest.mark.parametrize("declared", [1, 2, 3])
def test_browser_add_on_wins_over_the_format_check(declared: int) -> None:
    # Without an id of ours, any manifest_version is a WebExtension's.
    with pytest.raises(NotAnExtensionError):
        parse_manifest(encode({**CHROME_ADD_ON, "manifest_version": declared}))
