"""Username validation and normalization, from CONTRACT.md section 4.

"one leading `@` is removed; then, checked in this order, invalid -> 400 ...:
empty or only white space -> `Username is required`; longer than 30 characters
-> `Username too long (max 30 characters)`; anything but ASCII letters, digits,
`.` and `_` (a `/`, encoded or not, included) -> `Invalid characters in
username`. A valid name is lower-cased."
"""

from __future__ import annotations

import pytest

from shared.usernames import InvalidUsername, normalize_username

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
