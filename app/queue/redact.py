"""Optional redaction applied by the writer before a pair is produced.

A ``Redactor`` is any callable record -> record. ``redact_pii`` masks e-mail addresses and
phone numbers in every message of ``prompt``, ``chosen`` and ``rejected``. The phone rule is
deliberately simple: a run of digits with spaces, dots, dashes or parentheses holding 9-15
digits (7-15 after a leading ``+``); other long digit groups written that way are masked too.
"""

from __future__ import annotations

import re
from collections.abc import Callable

from app.records import Message, PairRecord

Redactor = Callable[[PairRecord], PairRecord]

EMAIL_MASK = "[EMAIL]"
PHONE_MASK = "[PHONE]"
_EMAIL = re.compile(r"[\w.+-]+@[\w-]+(?:\.[\w-]+)+")
_PHONE = re.compile(r"(?<![\w+])\+?\(?\d[\d \t().-]{5,}\d(?!\w)")


def _mask_phone(match: re.Match[str]) -> str:
    text = match.group()
    digits = sum(c.isdigit() for c in text)
    low = 7 if text.startswith("+") else 9
    return PHONE_MASK if low <= digits <= 15 else text


def redact_text(text: str) -> str:
    """Mask e-mail addresses, then phone numbers, in one string."""
    return _PHONE.sub(_mask_phone, _EMAIL.sub(EMAIL_MASK, text))


def _redact_messages(messages: list[Message]) -> list[Message]:
    return [m.model_copy(update={"content": redact_text(m.content)}) for m in messages]


def redact_pii(record: PairRecord) -> PairRecord:
    """A copy of ``record`` with e-mail addresses and phone numbers masked in all messages."""
    return record.model_copy(
        update={
            "prompt": _redact_messages(record.prompt),
            "chosen": _redact_messages(record.chosen),
            "rejected": _redact_messages(record.rejected),
        }
    )
