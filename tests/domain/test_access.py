"""Tests for esb.domain.access: the string to sign, rule patterns and the allow/deny decision."""

from __future__ import annotations

import pytest

from esb.domain.access import (
    AccessRule,
    Effect,
    RuleScope,
    is_allowed,
    pattern_matches,
    string_to_sign,
)

DEST = RuleScope.DESTINATION
SERVICE = RuleScope.SERVICE

# string_to_sign -----------------------------------------------------------------------------------


def test_string_to_sign_joins_the_five_fields_with_newlines_and_no_final_newline() -> None:
    signed = string_to_sign(
        "AKABCDEFGHIJ", "2026-11-21T09:30:00+07:00", "n0nce-1234", "HMAC-SHA256", "000.00.00.H53"
    )
    assert signed == b"AKABCDEFGHIJ\n2026-11-21T09:30:00+07:00\nn0nce-1234\nHMAC-SHA256\n000.00.00.H53"


@pytest.mark.parametrize("target", [None, ""])
def test_string_to_sign_without_target_ends_with_an_empty_last_line(target: str | None) -> None:
    signed = string_to_sign("AK1", "2026-11-21T02:30:00+00:00", "abcdefgh", "HMAC-SHA1", target)
    assert signed == b"AK1\n2026-11-21T02:30:00+00:00\nabcdefgh\nHMAC-SHA1\n"


def test_string_to_sign_encodes_vietnamese_text_as_utf8() -> None:
    signed = string_to_sign("AK1", "t", "abcdefgh", "RSA-SHA256", "Sở Nội vụ")
    assert signed == b"AK1\nt\nabcdefgh\nRSA-SHA256\nS\xe1\xbb\x9f N\xe1\xbb\x99i v\xe1\xbb\xa5"


# pattern_matches ----------------------------------------------------------------------------------


@pytest.mark.parametrize("target", ["000.00.00.H53", "H53.01", "DocumentExchange", "anything at all"])
def test_star_pattern_matches_everything(target: str) -> None:
    assert pattern_matches("*", target)


@pytest.mark.parametrize(
    ("pattern", "target", "expected"),
    [
        ("000.00.01.H53", "000.00.01.H53", True),
        ("000.00.01.H53", "000.01.01.H53", False),  # a child is not the exact code
        ("000.00.01.H53", "000.00.01.H5", False),
        ("DocumentExchange", "DocumentExchange", True),
        ("DocumentExchange", "Directory", False),
        ("H53.01", "H53.01.01", False),
    ],
)
def test_exact_pattern_matches_only_the_same_identifier(pattern: str, target: str, expected: bool) -> None:
    assert pattern_matches(pattern, target) is expected


@pytest.mark.parametrize(
    ("pattern", "target", "expected"),
    [
        # QCVN 102: lowest level on the left.
        ("000.00.00.H53/*", "000.00.00.H53", True),
        ("000.00.00.H53/*", "000.00.32.H53", True),
        ("000.00.00.H53/*", "000.05.32.H53", True),
        ("000.00.00.H53/*", "001.01.07.H53", True),
        ("000.00.00.H53/*", "000.00.00.H30", False),
        ("000.00.32.H53/*", "000.05.32.H53", True),
        ("000.00.32.H53/*", "000.00.00.H53", False),  # the parent is not in the subtree
        ("000.00.32.H53/*", "000.05.33.H53", False),  # a sibling's child
        # QĐ 20: top-down.
        ("H53/*", "H53", True),
        ("H53/*", "H53.01", True),
        ("H53/*", "H53.01.01", True),
        ("H53/*", "H30.01", False),
        ("H53.01/*", "H53.01.05", True),
        ("H53.01/*", "H53.010", False),  # a string prefix is not a subtree
        ("H53.01/*", "H53.02", False),
        # The two forms are never crossed.
        ("H53/*", "000.00.01.H53", False),
        ("000.00.00.H53/*", "H53.01", False),
    ],
)
def test_subtree_pattern_matches_the_code_and_its_descendants(
    pattern: str, target: str, expected: bool
) -> None:
    assert pattern_matches(pattern, target) is expected


# is_allowed ---------------------------------------------------------------------------------------


@pytest.mark.parametrize(("scope", "target"), [(DEST, "000.00.00.H30"), (SERVICE, "DocumentExchange")])
def test_without_rules_everything_is_allowed(scope: RuleScope, target: str) -> None:
    assert is_allowed([], scope, target)


def test_allow_rule_restricts_the_scope_to_what_allow_rules_match() -> None:
    rules = [AccessRule(DEST, "000.00.00.H53/*"), AccessRule(DEST, "000.00.00.G22")]
    assert is_allowed(rules, DEST, "000.05.32.H53")
    assert is_allowed(rules, DEST, "000.00.00.G22")
    assert not is_allowed(rules, DEST, "000.00.00.H30")
    assert not is_allowed(rules, DEST, "000.00.01.G22")


def test_deny_rule_wins_over_a_matching_allow_rule() -> None:
    rules = [
        AccessRule(DEST, "*"),
        AccessRule(DEST, "000.00.32.H53/*", Effect.DENY),
    ]
    assert not is_allowed(rules, DEST, "000.00.32.H53")
    assert not is_allowed(rules, DEST, "000.05.32.H53")
    assert is_allowed(rules, DEST, "000.00.01.H53")


def test_deny_rule_alone_keeps_the_default_allow_for_everything_else() -> None:
    rules = [AccessRule(SERVICE, "Directory", Effect.DENY)]
    assert not is_allowed(rules, SERVICE, "Directory")
    assert is_allowed(rules, SERVICE, "DocumentExchange")


def test_rules_of_one_scope_do_not_affect_the_other_scope() -> None:
    rules = [
        AccessRule(SERVICE, "Directory"),
        AccessRule(DEST, "*", Effect.DENY),
    ]
    assert is_allowed(rules, SERVICE, "Directory")
    assert not is_allowed(rules, SERVICE, "DocumentExchange")  # the service allow-list applies
    assert not is_allowed(rules, DEST, "000.00.00.H53")  # the destination deny applies
    assert is_allowed([AccessRule(SERVICE, "Directory")], DEST, "000.00.00.H53")
    assert is_allowed([AccessRule(DEST, "Directory", Effect.DENY)], SERVICE, "Directory")
