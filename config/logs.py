"""What application logs may hold: no personal data. One filter on every handler masks e-mail
addresses (also URL-encoded, as in a logged URL) and phone numbers in international form in each
record's message (whoever logged it, our code or a library's), and the formatters mask them in a
traceback."""

from __future__ import annotations

import logging
import re
from typing import Any

from pythonjsonlogger.json import JsonFormatter

# Local part and domain of an address, "@" also as "%40"; what is kept is the first letter and the
# top-level domain.
EMAIL = re.compile(r"([A-Za-z0-9._%+-])[A-Za-z0-9._%+-]*?(?:@|%40)[A-Za-z0-9.-]+\.([A-Za-z]{2,})")
# A number as the ledger stores it (E.164: "+" and 8 to 15 digits, compliance.identifiers), also
# with the spaces, dots or dashes a person writes in it, and "+" as "%2B"; what is kept is the
# country code's first digit and the last two digits.
PHONE = re.compile(r"(?<![\w+])(?:\+|%2B)(\d)(?:[ .-]?\d){5,13}[ .-]?(\d\d)(?!\d)")


def mask_emails(text: str) -> str:
    """'anna.schmidt@example.com' -> 'a***@***.com'."""
    return EMAIL.sub(r"\1***@***.\2", text)


def mask_personal(text: str) -> str:
    """Addresses as mask_emails masks them; '+49 151 98765432' -> '+4***32'."""
    return PHONE.sub(r"+\1***\2", mask_emails(text))


class MaskPersonalData(logging.Filter):
    """On every handler: the record's message masked (formatted once, its arguments dropped)."""

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        masked = mask_personal(message)
        if masked != message:
            record.msg, record.args = masked, None
        return True


class MaskingFormatter(logging.Formatter):
    """The text formatter: a traceback or stack masked too (an exception's message may name the
    person). The record keeps its exception; the text a formatter caches on it is the masked one."""

    def formatException(self, ei: Any) -> str:
        return mask_personal(super().formatException(ei))

    def formatStack(self, stack_info: str) -> str:
        return mask_personal(super().formatStack(stack_info))


class MaskingJsonFormatter(JsonFormatter):
    """LOG_FORMAT=json: one object a line, its traceback masked as MaskingFormatter masks it."""

    def formatException(self, ei: Any) -> str:
        return mask_personal(str(super().formatException(ei)))

    def formatStack(self, stack_info: str) -> str:
        return mask_personal(str(super().formatStack(stack_info)))
