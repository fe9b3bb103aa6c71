"""`manage.py api_client list|revoke|rotate|expire`: an admin's hand on the API keys."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.utils import timezone
from django.utils.dateparse import parse_datetime

from compliance.models import ApiClient
from compliance.services import ConsentRejected, api_client_expire, api_client_revoke, api_client_rotate


def _when(value: datetime | None) -> str:
    return value.isoformat(timespec="seconds") if value else "-"


class Command(BaseCommand):
    help = (
        "List API clients, revoke one, rotate its key (the old key stays valid for a grace "
        "period) or make its keys expire."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        actions = parser.add_subparsers(dest="action", required=True)
        actions.add_parser("list", help="Every client with its rights, keys and their last use.")
        revoke = actions.add_parser("revoke", help="Refuse every key of the client from now on.")
        revoke.add_argument("name")
        rotate = actions.add_parser(
            "rotate", help="Print a new key; the old one stays valid for --grace-hours."
        )
        rotate.add_argument("name")
        rotate.add_argument(
            "--grace-hours",
            type=float,
            default=None,
            help="How long the old key stays valid (default API_KEY_ROTATION_GRACE_HOURS; 0: not at all).",
        )
        expire = actions.add_parser("expire", help="Let every key of the client expire at a time.")
        expire.add_argument("name")
        expire.add_argument("--at", help="ISO 8601 time with a time zone (default: now).")

    def handle(self, *args: Any, **options: Any) -> None:
        if options["action"] == "list":
            self._list()
            return
        client = ApiClient.objects.filter(name=options["name"]).first()
        if client is None:
            raise CommandError(f"No API client is named {options['name']!r}.")
        try:
            if options["action"] == "revoke":
                api_client_revoke(client=client)
                self.stdout.write(f"API client {client.name} is revoked: every key of it is refused.")
            elif options["action"] == "rotate":
                hours = options["grace_hours"]
                if hours is None:
                    hours = settings.API_KEY_ROTATION_GRACE_HOURS
                if hours < 0:
                    raise CommandError("--grace-hours cannot be negative.")
                client, key = api_client_rotate(client=client, grace=timedelta(hours=hours))
                until = _when(client.previous_key_expires_at) if hours else "no grace period"
                self.stdout.write(
                    f"API client {client.name} has a new key; the old one is valid until {until}."
                )
                self.stdout.write("The new key is shown only now; send it as 'Authorization: Bearer <key>':")
                self.stdout.write(key)
            else:
                at = parse_datetime(options["at"]) if options["at"] else timezone.now()
                if at is None or timezone.is_naive(at):
                    raise CommandError(
                        "--at needs an ISO 8601 time with a time zone, e.g. 2027-01-31T00:00Z."
                    )
                api_client_expire(client=client, at=at)
                self.stdout.write(f"Every key of API client {client.name} expires at {_when(at)}.")
        except ConsentRejected as exc:
            raise CommandError(exc.message) from exc

    def _list(self) -> None:
        now = timezone.now()
        for client in ApiClient.objects.all():
            if not client.is_active:
                state = f"revoked {_when(client.revoked_at)}"
            elif client.is_expired(now):
                state = f"expired {_when(client.expires_at)}"
            else:
                state = f"active, expires {_when(client.expires_at)}" if client.expires_at else "active"
            self.stdout.write(
                f"{client.name}: {state}; writes {', '.join(client.sources) or 'nothing'}; "
                f"scopes {', '.join(client.scopes) or 'none'}"
            )
            self.stdout.write(f"  key cd_{client.key_prefix}_…  last used {_when(client.last_used_at)}")
            if client.previous_key_valid(now):
                self.stdout.write(
                    f"  previous key cd_{client.previous_key_prefix}_…  valid until "
                    f"{_when(client.previous_key_expires_at)}, last used {_when(client.previous_key_last_used_at)}"
                )
