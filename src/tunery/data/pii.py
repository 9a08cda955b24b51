"""Personal data and secrets in text: emails, phone numbers, API keys and private keys.

    find_personal_data("mail me at ada@example.com")   # {"email": ["ada@example.com"]}

Plain regular expressions, written here rather than taken from a library (Presidio
and scrubadub bring spaCy models): the report only needs to point at rows for a
person to look at, not to redact them, and these patterns are cheap on every row.
Phone numbers are runs of 9 to 15 digits with separators or a leading `+`, so dates,
prices and order numbers are not flagged.
"""

from __future__ import annotations

import re

EMAIL = re.compile(r"\b[A-Za-z0-9._%+-]+@[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)*\.[A-Za-z]{2,}\b")
PHONE_CANDIDATE = re.compile(r"(?<![\w.])\+?\(?\d[\d\s().-]{7,}\d(?!\w|\.\d)")
SECRETS = re.compile(
    "|".join(
        (
            r"\bAKIA[0-9A-Z]{16}\b",  # AWS access key id
            r"-----BEGIN [A-Z ]*PRIVATE KEY-----",
            r"\bgh[pousr]_[A-Za-z0-9]{36,}\b",  # GitHub token
            r"\bsk-[A-Za-z0-9_-]{20,}",  # OpenAI-style key
            r"\bxox[abprs]-[A-Za-z0-9-]{10,}",  # Slack token
            r"\bAIza[0-9A-Za-z_-]{35}\b",  # Google API key
            r"(?i:\b(?:api[_-]?key|secret|password|passwd|access[_-]?token)\b\s*[:=]\s*['\"]?[^\s'\"]{8,})",
        )
    )
)


def find_personal_data(text: str) -> dict[str, list[str]]:
    """The matches in `text` by kind ("email", "phone", "secret"); kinds without a match are left out."""
    found = {
        "email": EMAIL.findall(text),
        "phone": [m for m in PHONE_CANDIDATE.findall(text) if _looks_like_phone(m)],
        "secret": [m.group(0) for m in SECRETS.finditer(text)],
    }
    return {kind: matches for kind, matches in found.items() if matches}


def _looks_like_phone(candidate: str) -> bool:
    digits = sum(c.isdigit() for c in candidate)
    separated = candidate.startswith("+") or any(c in candidate for c in " -.()")
    return 9 <= digits <= 15 and separated
