"""The access log: who read whose personal data, when and from where.

Every page that shows a person's history or evidence, every search, every export and every
report download calls `access_log_record`. A search's terms are never stored: only their
HMAC (keyed with ACCESS_LOG_QUERY_KEY), so an officer can ask "did anyone search for this
address?" by typing it into the page's filter, and nobody can read the terms back.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Iterable
from typing import Any

from django.conf import settings
from django.db import transaction
from django.http import HttpRequest
from django.utils import timezone

from compliance.logins import client_ip
from compliance.models import AccessLog, AccessLogContact, ApiClient

PATH_MAX = AccessLog._meta.get_field("path").max_length or 300
DETAIL_MAX = AccessLog._meta.get_field("detail").max_length or 300


def access_log_query_hash(query: str) -> str:
    """The keyed hash of search terms, in their normal form (trimmed, lower case, single spaces)."""
    normal = " ".join(query.split()).lower()
    return hmac.new(settings.ACCESS_LOG_QUERY_KEY.encode(), normal.encode(), hashlib.sha256).hexdigest()


def access_log_record(
    *,
    request: HttpRequest,
    kind: str,
    contact_ids: Iterable[int] = (),
    query: str = "",
    detail: str = "",
) -> AccessLog:
    """Append one entry: the request's user, client IP and path, and what was read.

    kind: an AccessLog.Kind value. contact_ids: every contact whose data the answer shows.
    query: a search's terms (stored only as their hash). detail: what was exported or
    downloaded, e.g. "report 12 (audit report PDF)"; never personal data.
    """
    if kind not in AccessLog.Kind.values:
        raise ValueError(f"unknown access kind {kind!r}")
    user: Any = getattr(request, "user", None)
    # An API key's request carries its ApiClient as the user (compliance.api.authentication).
    api_client = user if isinstance(user, ApiClient) else None
    signed_in = api_client is None and user is not None and user.is_authenticated
    ids = sorted(set(contact_ids))
    with transaction.atomic():
        entry = AccessLog.objects.create(
            created_at=timezone.now(),
            user=user if signed_in else None,
            api_client=api_client,
            username=user.get_username() if signed_in else f"api:{api_client.name}" if api_client else "",
            ip=client_ip(request),
            kind=kind,
            path=request.path[:PATH_MAX],
            detail=detail[:DETAIL_MAX],
            query_hash=access_log_query_hash(query) if query else "",
            contact_count=len(ids),
        )
        AccessLogContact.objects.bulk_create(AccessLogContact(entry=entry, contact_id=id_) for id_ in ids)
    return entry
