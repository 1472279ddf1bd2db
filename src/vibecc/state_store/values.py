"""Checks of plain values (text, ints, numbers of seconds, flags, timestamps, callbacks) that
the field rules (rules.py) are built from.

Every check reads the value the way int, float and str themselves see it: a subclass's own
comparisons, conversions and reprs are the caller's code and may say anything, so they are
never asked. Messages describe a value without printing more than 60 characters of it.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from .errors import ValidationError

MAX_INT = 2**63 - 1


def describe(value: object) -> str:
    """The value as a message may show it: its repr, cut short; never the caller's own code
    running wild (a __repr__ that raises) nor an int too long to print."""
    plain = _plain_number(value)
    if isinstance(plain, int) and plain.bit_length() > 200:
        return f"an int of {plain.bit_length():,} bits"
    try:
        text = repr(value if plain is None else plain)
    except Exception:
        return f"a {type(value).__name__} that cannot be shown"
    return text if len(text) <= 60 else text[:57] + "..."


def _plain_number(value: object) -> int | float | None:
    """The builtin int or float a number holds, read by int's and float's own methods (a
    subclass's comparisons and conversions are the caller's code and may say anything);
    None for anything else, bools included."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return int.__int__(value)
    if isinstance(value, float):
        return float.__float__(value)
    return None


def text(
    field: str,
    value: Any,
    *,
    max_chars: int | None = None,
    max_bytes: int | None = None,
    allow_empty: bool = False,
    allow_blank: bool = False,
) -> str:
    """A str that PostgreSQL and SQLite both store exactly: no NUL, no lone surrogate."""
    if not isinstance(value, str):
        raise ValidationError(f"{field} must be a str, got {type(value).__name__} {describe(value)}")
    plain: str = str.__str__(value)  # a subclass's own methods are the caller's code: use str's
    if not plain and not allow_empty:
        raise ValidationError(f"{field} must not be empty")
    if plain and not allow_blank and not plain.strip():
        raise ValidationError(f"{field} must not be blank, got {describe(plain)}")
    if "\x00" in plain:
        raise ValidationError(f"{field} must not contain a NUL character")
    try:
        encoded = plain.encode("utf-8")
    except UnicodeEncodeError as exc:
        raise ValidationError(f"{field} is not valid Unicode text (lone surrogate at {exc.start})") from None
    if max_chars is not None and len(plain) > max_chars:
        raise ValidationError(f"{field} must be at most {max_chars} characters, got {len(plain)}")
    if max_bytes is not None and len(encoded) > max_bytes:
        raise ValidationError(f"{field} must be at most {max_bytes} bytes of UTF-8, got {len(encoded)}")
    return plain


def integer(field: str, value: Any, *, minimum: int, maximum: int = MAX_INT) -> int:
    """An int (never a bool) within [minimum, maximum]."""
    plain = _plain_number(value)
    if not isinstance(plain, int):
        raise ValidationError(f"{field} must be an int, got {type(value).__name__} {describe(value)}")
    if not minimum <= plain <= maximum:
        raise ValidationError(f"{field} must be between {minimum} and {maximum}, got {describe(plain)}")
    return plain


def flag(field: str, value: Any) -> bool:
    """A bool: True or False, never a value that merely tests true or false."""
    if not isinstance(value, bool):
        raise ValidationError(f"{field} must be True or False, got {type(value).__name__} {describe(value)}")
    return value


def callback(field: str, value: Any) -> None:
    """None or something callable (a progress callback)."""
    if value is not None and not callable(value):
        raise ValidationError(f"{field} must be callable or None, got {type(value).__name__}")


def timestamp(field: str, value: Any) -> datetime:
    """A timezone-aware datetime, as UTC (naive ones are refused: their zone is unknown)."""
    if not isinstance(value, datetime):
        raise ValidationError(f"{field} must be a timezone-aware datetime, got {describe(value)}")
    try:
        aware = value.utcoffset() is not None
        converted = value.astimezone(UTC) if aware else None
    except OverflowError:
        raise ValidationError(f"{field} is out of range once converted to UTC: {describe(value)}") from None
    except Exception:  # a tzinfo of the caller's whose utcoffset() misbehaves
        raise ValidationError(f"{field} has a time zone that gives no valid UTC offset") from None
    if converted is None:
        raise ValidationError(f"{field} must be a timezone-aware datetime, got {describe(value)}")
    return converted


def seconds(field: str, value: Any) -> float:
    """A number of seconds in (0, 86400] (a timeout)."""
    found = _float_seconds(value)
    if found is None or not 0 < found <= 86400:
        raise ValidationError(f"{field} must be a number of seconds in (0, 86400], got {describe(value)}")
    return found


def wait_seconds(field: str, value: Any, *, maximum: int = 86400) -> float:
    """A number of seconds to wait, in [0, maximum]."""
    found = _float_seconds(value)
    if found is None or not 0 <= found <= maximum:
        wanted = f"a number of seconds in [0, {maximum}]"
        raise ValidationError(f"{field} must be {wanted}, got {describe(value)}")
    return found


def _float_seconds(value: object) -> float | None:
    """An int or float as a builtin float; None for anything else or an int too large for one."""
    plain = _plain_number(value)
    if plain is None:
        return None
    try:
        return float(plain)
    except OverflowError:
        return None
