"""What the three report commands share: date arguments, making the report, exit statuses.

Bad input (a reversed, future or too long period, an unknown contact) ends with exit status 2
and the reason; a report that cannot be made (no signing key) with status 1.
"""

from __future__ import annotations

from datetime import date
from pathlib import Path
from typing import Any

from django.core.management.base import BaseCommand, CommandError

from reports import services
from reports.scopes import ScopeError

BAD_INPUT = 2


def iso_date(value: str) -> date:
    import argparse

    try:
        return date.fromisoformat(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{value!r} is not a date (YYYY-MM-DD)") from None


def bad_input(message: str) -> CommandError:
    return CommandError(message, returncode=BAD_INPUT)


def make(command: BaseCommand, build_scope: Any, out: Path, name: str) -> None:
    try:
        scope = build_scope()
    except ScopeError as exc:
        raise bad_input(exc.message) from exc
    try:
        report = services.report_make(scope=scope, requested_via=name, out=out)
    except services.ReportFailed as exc:
        raise CommandError(f"no report made: {exc}") from exc
    command.stdout.write(
        f"{report.get_kind_display()} {report.id}: {report.event_count} events, {report.size} bytes, "
        f"SHA-256 {report.sha256}\nwritten to {out}"
    )
