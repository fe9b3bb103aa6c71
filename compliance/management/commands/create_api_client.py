from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from compliance.models import ApiClient, Source
from compliance.services import ConsentRejected, api_client_create


class Command(BaseCommand):
    help = "Create an API client for the ingest API. The key is printed once, on the last line."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("name")
        parser.add_argument(
            "--source",
            action="append",
            default=[],
            choices=Source.values,
            help="A source this client may write (events:write); repeat for several.",
        )
        parser.add_argument(
            "--scope",
            action="append",
            default=[],
            choices=ApiClient.Scope.values,
            help="A right beyond writing, e.g. contacts:read (reads are off unless given); repeat for several.",
        )

    def handle(self, *args: Any, **options: Any) -> None:
        if ApiClient.objects.filter(name=options["name"]).exists():
            raise CommandError(f"An API client named {options['name']!r} exists already.")
        try:
            client, key = api_client_create(
                name=options["name"], sources=options["source"], scopes=options["scope"]
            )
        except ConsentRejected as exc:
            raise CommandError(exc.message) from exc
        self.stdout.write(f"API client {client.name} may write: {', '.join(client.sources) or 'nothing'}")
        self.stdout.write(f"Scopes: {', '.join(client.scopes) or 'none'}")
        self.stdout.write("Its key is shown only now; send it as 'Authorization: Bearer <key>':")
        self.stdout.write(key)
