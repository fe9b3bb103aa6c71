"""What other apps add to a contact: panels on its page, and per-purpose status in its API answer.

`compliance` never imports the apps that build on it (the sync, the reports), yet the
contact page and ``GET /api/v1/contacts/{id}/consents`` should show what those apps know
of the contact. They register here, from their ``AppConfig.ready()``:

- `contact_panel_register`: a function of the request and the contact returning a
  `Panel` (a template and its context) or None; the contact page renders each panel after
  the ledger's own sections, in the order of their ``order``;
- `consent_status_register`: a function of the contact returning, per purpose code, a
  JSON-ready dict; the API adds it to each purpose's state under the name registered
  (``zoho`` for the sync).

A provider that fails is logged and left out: the ledger's page and answer never fail for it.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from django.http import HttpRequest

from compliance.models import Contact

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class Panel:
    template: str
    context: Mapping[str, Any] = field(default_factory=dict)
    title: str = ""


PanelProvider = Callable[[HttpRequest, Contact], Panel | None]
StatusProvider = Callable[[Contact], Mapping[str, Mapping[str, Any]]]

_panels: dict[str, tuple[int, PanelProvider]] = {}
_statuses: dict[str, StatusProvider] = {}


def contact_panel_register(*, name: str, provider: PanelProvider, order: int = 100) -> None:
    """Add (or replace, by name: ``ready()`` may run twice) a panel of the contact page."""
    _panels[name] = (order, provider)


def contact_panels(*, request: HttpRequest, contact: Contact) -> list[Panel]:
    """The registered panels for this contact, in order; a provider that fails is left out."""
    panels = []
    for name, (_, provider) in sorted(_panels.items(), key=lambda item: (item[1][0], item[0])):
        try:
            panel = provider(request, contact)
        except Exception:
            logger.exception("Contact panel %r failed for contact %s", name, contact.pk)
            continue
        if panel is not None:
            panels.append(panel)
    return panels


def consent_status_register(*, name: str, provider: StatusProvider) -> None:
    """Add (or replace) a per-purpose status the API gives with each purpose's state, as ``name``."""
    _statuses[name] = provider


def consent_status_names() -> list[str]:
    return sorted(_statuses)


def consent_statuses(*, contact: Contact) -> dict[str, dict[str, Any]]:
    """name -> purpose code -> status, from every registered provider (a failing one gives {})."""
    out: dict[str, dict[str, Any]] = {}
    for name, provider in sorted(_statuses.items()):
        try:
            out[name] = {code: dict(value) for code, value in provider(contact).items()}
        except Exception:
            logger.exception("Consent status %r failed for contact %s", name, contact.pk)
            out[name] = {}
    return out
