"""Integers a caller writes in a path, a query or a header, read within bounds.

    bounded_int("42")                       # 42
    bounded_int("9223372036854775808")      # None: beyond a database integer
    bounded_int("abc"), bounded_int("-1")   # None, None

Python's int() reads any length (past 4300 digits it raises) and the database takes 32 or 64
bits, so a number from outside is read here and an unreadable one becomes the caller's 400 or
404, never an overflow (500) further in. FastAPI's typed parameters get the same bound with
`le=DB_INT_MAX`.
"""

from __future__ import annotations

DB_INT_MAX = 2**31 - 1  # the smallest integer column any table has (SQLite and PostgreSQL `integer`)
INT64_MAX = 2**63 - 1  # a size in bytes (Content-Length)
MAX_DIGITS = 19  # int64's width: anything longer is out of every bound here


def bounded_int(text: str | bytes | None, least: int = 0, most: int = DB_INT_MAX) -> int | None:
    """The plain decimal number `text` holds, within [least, most]; None for anything else."""
    if isinstance(text, bytes):
        text = text.decode("latin-1")
    text = (text or "").strip()
    if not (text.isascii() and text.isdigit()) or len(text) > MAX_DIGITS:
        return None
    value = int(text)
    return value if least <= value <= most else None
