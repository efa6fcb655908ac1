"""Username validation and normalization, as docs/api.md states them.

"one leading `@` is removed; then, checked in this order, invalid -> 400 ...:
empty or only white space -> `Username is required`; longer than 30 characters
-> `Username too long (max 30 characters)`; anything but ASCII letters, digits,
`.` and `_` (a `/`, encoded or not, included) -> `Invalid characters in
username`. A valid name is lower-cased."
"""

from __future__ import annotations

import pytest

from shared.model.usernames import InvalidUsername, normalize_username, normalize_usernames

REQUIRED = "Username is required"
TOO_LONG = "Username too long (max 30 characters)"
INVALID = "Invalid characters in username"


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("mike_1", "mike_1"),
        ("Mike_1", "mike_1"),
        ("MIKE_1", "mike_1"),
        ("@mike_1", "mike_1"),
        ("@Entrepreneur.Mike", "entrepreneur.mike"),
        ("a", "a"),
        ("_", "_"),
        (".", "."),
        ("0123456789", "0123456789"),
        ("a.b_c.D_E", "a.b_c.d_e"),
        ("x" * 30, "x" * 30),
        ("@" + "X" * 30, "x" * 30),  # the '@' is removed before the length check
        ("AbCdEfGhIjKlMnOpQrStUvWxYz", "abcdefghijklmnopqrstuvwxyz"),
    ],
)
def test_valid_names_are_normalized(raw: str, expected: str) -> None:
    assert normalize_username(raw) == expected


@pytest.mark.parametrize("raw", ["mike_1", "MiKe.9_x", "@Z"])
def test_normalization_is_idempotent(raw: str) -> None:
    once = normalize_username(raw)
    assert normalize_username(once) == once


@pytest.mark.parametrize(
    ("raw", "detail"),
    [
        # empty or only white space
        ("", REQUIRED),
        ("@", REQUIRED),
        (" ", REQUIRED),
        ("   ", REQUIRED),
        ("\t", REQUIRED),
        ("\n", REQUIRED),
        (" \t\r\n ", REQUIRED),
        ("\u00a0", REQUIRED),  # no-break space is white space too
        ("\u2003\u3000", REQUIRED),
        ("@   ", REQUIRED),
        (" " * 40, REQUIRED),  # emptiness is checked before the length
        # longer than 30 characters (checked before the characters)
        ("x" * 31, TOO_LONG),
        ("@" + "x" * 31, TOO_LONG),
        ("x" * 100, TOO_LONG),
        ("/" * 31, TOO_LONG),
        ("a b" * 11, TOO_LONG),  # 33 chars with spaces
        ("é" * 31, TOO_LONG),
        ("x" * 30 + "-", TOO_LONG),
        # anything but ASCII letters, digits, '.', '_'
        ("a/b", INVALID),
        ("/", INVALID),
        ("mike/", INVALID),
        ("a%2Fb", INVALID),  # an encoded '/'
        ("a%2fb", INVALID),
        ("a\x00b", INVALID),
        ("\x00", INVALID),
        ("mike\U0001f600", INVALID),  # emoji
        ("\U0001f600", INVALID),
        ("mike one", INVALID),  # space inside
        (" mike", INVALID),  # leading space in an otherwise valid name
        ("mike ", INVALID),
        ("mike\n", INVALID),  # a trailing newline must not slip through `$`
        ("mike\t1", INVALID),
        ("mike-1", INVALID),
        ("-", INVALID),
        ("@@x", INVALID),  # only ONE leading '@' is removed
        ("@@", INVALID),
        ("mi@ke", INVALID),
        ("mike@", INVALID),
        ("josé", INVALID),  # non-ASCII letter
        ("Ｍike", INVALID),  # fullwidth letter
        ("mike١", INVALID),  # Arabic-Indic digit (a Unicode digit, not ASCII)
        ("\u212a", INVALID),  # Kelvin sign: lower-cases to ASCII 'k', still invalid
        ("mike+1", INVALID),
        ("mike?x=1", INVALID),
        ("mike#", INVALID),
        ("mike\\1", INVALID),
        ("..%2F..", INVALID),
    ],
)
def test_invalid_names_raise_with_the_400_detail(raw: str, detail: str) -> None:
    with pytest.raises(InvalidUsername) as excinfo:
        normalize_username(raw)
    assert str(excinfo.value) == detail


def test_invalid_username_is_a_value_error() -> None:
    # The API maps it to a 400; a plain ValueError handler must also catch it.
    with pytest.raises(ValueError):
        normalize_username("a/b")


# --------------------------------------------------------------------------- lists (GET /api/status/stream?usernames=...)


@pytest.mark.parametrize(
    ("entries", "expected"),
    [
        (["mike_1"], ["mike_1"]),
        (["B", "a", "@b", "A", "b"], ["b", "a"]),  # first entry's order, duplicates after normalization collapse
        ([f"n{i}" for i in range(50)] + ["N0", "@n49"], [f"n{i}" for i in range(50)]),
    ],
)
def test_a_list_normalizes_each_entry_and_collapses_duplicates(entries: list[str], expected: list[str]) -> None:
    assert normalize_usernames(entries) == expected


@pytest.mark.parametrize(
    ("entries", "message"),
    [
        ([], "usernames is required"),
        ([""], f'{REQUIRED}: entry 1 of usernames ("")'),
        (["ok", "@"], f'{REQUIRED}: entry 2 of usernames ("@")'),
        (["ok", "a/b", "c d"], f'{INVALID}: entry 2 of usernames ("a/b")'),
        (["x" * 31], f'{TOO_LONG}: entry 1 of usernames ("{"x" * 31}")'),
        (["ok", 'say "hi"'], f'{INVALID}: entry 2 of usernames ("say \\"hi\\"")'),
        (["y" * 100], f'{TOO_LONG}: entry 1 of usernames ("{"y" * 40}…")'),
        ([f"n{i}" for i in range(51)], 'Too many usernames (max 50): entry 51 of usernames ("n50") is name 51'),
        ([f"n{i}" for i in range(50)] + ["N1", "n50"], "entry 52 of usernames"),
    ],
)
def test_a_list_names_its_first_offending_entry(entries: list[str], message: str) -> None:
    with pytest.raises(InvalidUsername) as raised:
        normalize_usernames(entries)
    assert message in str(raised.value)


def test_a_list_limit_is_a_parameter() -> None:
    assert normalize_usernames(["a", "A", "b"], limit=2) == ["a", "b"]
    with pytest.raises(InvalidUsername, match="max 2"):
        normalize_usernames(["a", "b", "c"], limit=2)
