"""Zoho CRM's notification callbacks (`/actions/watch`): the endpoint Zoho posts CRM edits to.

No login and no CSRF token: Zoho is the caller. A callback is accepted only with our channel's
id and its token (`sync.crm_watch.crm_notification_receive`); anything else is refused with
nothing done."""

from __future__ import annotations

import json
import logging

from django.http import HttpRequest, HttpResponse, JsonResponse
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_POST

from sync.crm_watch import NotificationRefused, crm_notification_receive
from sync.zoho import ZohoClient
from sync.zoho.errors import ZohoError

logger = logging.getLogger(__name__)
MAX_BODY_BYTES = 256 * 1024


@csrf_exempt
@require_POST
def zoho_notify(request: HttpRequest) -> HttpResponse:
    if len(request.body) > MAX_BODY_BYTES:
        return JsonResponse({"error": "body too large"}, status=413)
    try:
        body = json.loads(request.body or b"null")
    except ValueError:
        return JsonResponse({"error": "the body is not JSON"}, status=400)
    try:
        with ZohoClient.from_settings() as zoho:
            result = crm_notification_receive(body=body, zoho=zoho)
    except NotificationRefused:
        logger.warning("Refused a Zoho notification: unknown channel or wrong token")
        return JsonResponse({"error": "unknown channel or wrong token"}, status=403)
    except ValueError as exc:
        return JsonResponse({"error": str(exc)}, status=400)
    except ZohoError as exc:
        # Polling (reconciliation) picks the change up later.
        logger.warning("A Zoho notification's records could not be read: %s", exc)
        return JsonResponse({"error": "the records could not be read; polling will catch up"}, status=503)
    return JsonResponse({"recorded": result.recorded, "overwritten": result.overwritten})
