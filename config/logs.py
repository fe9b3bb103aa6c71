"""What application logs may hold: no personal data. One filter on every handler masks e-mail
addresses in each record's message (whoever logged it, our code or a library's)."""

from __future__ import annotations

import logging
import re

# Local part and domain of an address; what is kept is the first letter and the top-level domain.
EMAIL = re.compile(r"([A-Za-z0-9._%+-])[A-Za-z0-9._%+-]*@[A-Za-z0-9.-]+\.([A-Za-z]{2,})")


def mask_emails(text: str) -> str:
    """'anna.schmidt@example.com' -> 'a***@***.com'."""
    return EMAIL.sub(r"\1***@***.\2", text)


class MaskPersonalData(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        masked = mask_emails(message)
        if masked != message:
            record.msg, record.args = masked, None
        return True
