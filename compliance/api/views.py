"""The ingest API: validate the shape, call one service, answer."""

from __future__ import annotations

from typing import Any

from django.conf import settings
from django.core.exceptions import ValidationError as DjangoValidationError
from django.http import HttpRequest
from django.shortcuts import get_object_or_404
from drf_spectacular.utils import OpenApiParameter, OpenApiResponse, extend_schema
from rest_framework import status
from rest_framework.exceptions import NotFound, ValidationError
from rest_framework.permissions import AllowAny
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from compliance import panels, selectors, services
from compliance.api.errors import error_response, validation_body
from compliance.api.parsers import LimitedJSONParser
from compliance.api.permissions import CanErase, CanReadConsent, CanReadLinks, IsApiClient
from compliance.api.serializers import (
    BatchInputSerializer,
    BatchResultSerializer,
    ConsentEventInputSerializer,
    ConsentEventSerializer,
    ContactConsentsSerializer,
    ContactLinksSerializer,
    ContactSerializer,
    ErasureInputSerializer,
    ErasureSerializer,
    QuickInput,
    QuickOutput,
)
from compliance.api.throttling import ApiClientRateThrottle, ApiReadRateThrottle
from compliance.lifecycle.links import contact_links
from compliance.lifecycle.services import confirmation_request, confirmation_requests
from compliance.models import AccessLog, ApiClient, Contact, ErasureRequest
from compliance.services.reference import reference_kept

ERROR_RESPONSES = {
    400: OpenApiResponse(description="Invalid input; `errors` names each wrong field."),
    401: OpenApiResponse(description="No, invalid, revoked or expired API key."),
    403: OpenApiResponse(description="This client lacks the right (the source, or the scope)."),
    409: OpenApiResponse(
        description="Idempotency key used before for different content, or identifiers that conflict "
        'with the contact\'s (send "update_identity": true with the identity:write right to change them).'
    ),
    413: OpenApiResponse(description="The body is larger than API_MAX_BODY_BYTES."),
    415: OpenApiResponse(description="The body is not application/json."),
    429: OpenApiResponse(description="Too many requests; Retry-After says when to try again."),
}


# Building a serializer's fields costs more than validating or showing one event (about
# 1 ms against 0.1 ms), so each view uses these two, built once per process. They keep
# nothing per request: run_validation and to_representation only read their fields.
_EVENT_INPUT = ConsentEventInputSerializer()
_EVENT_OUTPUT = ConsentEventSerializer()
# The same answers with fewer calls per event, for the batch's thousand (QuickInput, QuickOutput).
_BATCH_INPUT = QuickInput(_EVENT_INPUT)
_BATCH_OUTPUT = QuickOutput(_EVENT_OUTPUT)


def _calling_client(request: Request) -> ApiClient:
    """The API client behind a request that IsApiClient let through."""
    principal = request.user
    assert isinstance(principal, ApiClient)
    return principal


def _idempotency_header(request: Request) -> str | None:
    return request.headers.get("Idempotency-Key") or None


class ApiView(APIView):
    """The API's views: JSON bodies within API_MAX_BODY_BYTES, one budget per client."""

    parser_classes = [LimitedJSONParser]
    throttle_classes = [ApiClientRateThrottle]


class ReadView(ApiView):
    """Reads of people's data: a budget of their own besides the client's (API_READ_THROTTLE_RATE)."""

    throttle_classes = [ApiClientRateThrottle, ApiReadRateThrottle]


class ConsentEventCreateView(ApiView):
    permission_classes = [IsApiClient]

    @extend_schema(
        request=ConsentEventInputSerializer,
        responses={
            201: ConsentEventSerializer,
            200: OpenApiResponse(ConsentEventSerializer, description="A replay of an earlier request."),
            **ERROR_RESPONSES,
        },
        parameters=[OpenApiParameter("Idempotency-Key", str, OpenApiParameter.HEADER, required=False)],
        summary="Record one consent decision",
    )
    def post(self, request: Request) -> Response:
        data = _EVENT_INPUT.run_validation(request.data)
        identity, decision = _EVENT_INPUT.domain_of(data, _idempotency_header(request))
        result = services.consent_ingest(
            identity=identity,
            decision=decision,
            api_client=_calling_client(request),
            lookups=reference_kept().lookups,
        )
        if result.created and data.get("send_confirmation", True):
            # A pending double opt-in: Consent Desk mails the confirmation link (compliance.lifecycle).
            confirmation_request(event=result.event)
        return Response(
            _EVENT_OUTPUT.to_representation(result.event),
            status=status.HTTP_201_CREATED if result.created else status.HTTP_200_OK,
        )


class ConsentEventBatchView(ApiView):
    permission_classes = [IsApiClient]

    @extend_schema(
        request=BatchInputSerializer,
        responses={
            200: BatchResultSerializer,
            **ERROR_RESPONSES,
            413: OpenApiResponse(
                description="More events than CONSENT_BATCH_MAX (1,000), or a body over API_MAX_BODY_BYTES."
            ),
        },
        summary="Record up to 1,000 consent decisions; each item succeeds or fails alone",
    )
    def post(self, request: Request) -> Response:
        raw_events = request.data.get("events") if isinstance(request.data, dict) else None
        if isinstance(raw_events, list) and len(raw_events) > settings.CONSENT_BATCH_MAX:
            return Response(
                {
                    "detail": f"At most {settings.CONSENT_BATCH_MAX} events per batch; this one has {len(raw_events)}.",
                    "errors": {"events": [f"At most {settings.CONSENT_BATCH_MAX} events."]},
                },
                status=status.HTTP_413_REQUEST_ENTITY_TOO_LARGE,
            )
        envelope = BatchInputSerializer(data=request.data)
        envelope.is_valid(raise_exception=True)

        items: list[Any] = []
        send_confirmations: list[bool] = []
        for raw in envelope.validated_data["events"]:
            try:
                data = _BATCH_INPUT.run_validation(raw)
                items.append(_EVENT_INPUT.domain_of(data))
                send_confirmations.append(bool(data.get("send_confirmation", True)))
            except ValidationError as exc:
                items.append(exc)
        outcomes = services.consent_ingest_batch(
            items=[i for i in items if not isinstance(i, ValidationError)],
            api_client=_calling_client(request),
            lookups=reference_kept().lookups,
        )
        # The pending double opt-ins' confirmation mails, built in bulk (compliance.lifecycle).
        confirmation_requests(
            events=[
                outcome.event
                for outcome, send in zip(outcomes, send_confirmations, strict=True)
                if send and isinstance(outcome, services.RecordResult) and outcome.created
            ]
        )
        recorded = [o.event for o in outcomes if isinstance(o, services.RecordResult)]
        represented = (_BATCH_OUTPUT.to_representation(event) for event in recorded)
        outcome_iter = iter(outcomes)
        results = []
        counts = {"created": 0, "replayed": 0, "failed": 0}
        for index, item in enumerate(items):
            if isinstance(item, ValidationError):
                results.append({"index": index, "status": 400, **validation_body(item.detail)})
                counts["failed"] += 1
                continue
            outcome = next(outcome_iter)
            if isinstance(outcome, services.RecordResult):
                counts["created" if outcome.created else "replayed"] += 1
                results.append(
                    {"index": index, "status": 201 if outcome.created else 200, "event": next(represented)}
                )
            else:
                code, body = error_response(outcome)
                counts["failed"] += 1
                results.append({"index": index, "status": code, **body})
        return Response({**counts, "results": results}, status=status.HTTP_200_OK)


class ContactListView(ReadView):
    permission_classes = [CanReadConsent]

    @extend_schema(
        parameters=[
            OpenApiParameter("email", str, description="Email address (case does not matter)"),
            OpenApiParameter("phone", str, description="Phone in international format"),
            OpenApiParameter("app_user_id", str),
        ],
        responses={200: ContactSerializer(many=True), **ERROR_RESPONSES},
        summary="Find contacts by an identifier",
    )
    def get(self, request: Request) -> Response:
        params = {name: request.query_params.get(name, "") for name in ("email", "phone", "app_user_id")}
        if not any(params.values()):
            raise ValidationError({"email": ["Give email, phone or app_user_id."]})
        for name, value in params.items():
            if "\x00" in value or len(value) > 254:
                raise ValidationError({name: ["Not an identifier (too long, or a NUL character)."]})
        try:
            contacts = selectors.contact_find(**params)
        except DjangoValidationError as exc:
            field = next(name for name, value in params.items() if value)
            raise ValidationError({field: exc.messages}) from exc
        found = list(contacts[:50])
        services.access_log_record(
            request=request._request,
            kind=AccessLog.Kind.SEARCH,
            contact_ids=[c.pk for c in found],
            query=" ".join(v for v in params.values() if v),
        )
        return Response(ContactSerializer(found, many=True).data)


class ContactConsentsView(ReadView):
    permission_classes = [CanReadConsent]

    @extend_schema(
        responses={
            200: ContactConsentsSerializer,
            404: OpenApiResponse(description="No contact has this id."),
            **ERROR_RESPONSES,
        },
        summary="Current state and full history",
    )
    def get(self, request: Request, contact_id: int) -> Response:
        contact = get_object_or_404(Contact, pk=contact_id)
        body = {
            "contact": contact,
            "states": selectors.contact_states(contact=contact),
            "history": selectors.event_history(contact=contact),
        }
        services.access_log_record(
            request=request._request, kind=AccessLog.Kind.HISTORY_VIEW, contact_ids=[contact.pk]
        )
        # Each purpose's status in the apps built on the ledger (the sync's "zoho"): compliance.panels.
        statuses = panels.consent_statuses(contact=contact)
        return Response(ContactConsentsSerializer(body, context={"statuses": statuses}).data)


class ContactLinksView(ReadView):
    permission_classes = [CanReadLinks]

    @extend_schema(
        parameters=[
            OpenApiParameter("campaign", str, description="A campaign id the unsubscribe links carry")
        ],
        responses={
            200: ContactLinksSerializer,
            404: OpenApiResponse(description="No contact has this id."),
            **ERROR_RESPONSES,
        },
        summary="Unsubscribe and preference-centre links for a mail to this contact (RFC 8058 headers)",
    )
    def get(self, request: Request, contact_id: int) -> Response:
        contact = get_object_or_404(Contact, pk=contact_id, merged_into__isnull=True)
        campaign = request.query_params.get("campaign", "")
        if len(campaign) > 100 or "\x00" in campaign:
            raise ValidationError({"campaign": ["At most 100 characters."]})
        body = contact_links(contact=contact, campaign=campaign)
        services.access_log_record(
            request=request._request,
            kind=AccessLog.Kind.EXPORT,
            contact_ids=[contact.pk],
            detail="unsubscribe and preference links",
        )
        return Response(ContactLinksSerializer(body).data)


class ContactErasureView(ApiView):
    """POST /api/v1/contacts/{id}/erasure: erase the person, keep the proof (docs/erasure.md)."""

    permission_classes = [CanErase]

    @extend_schema(
        request=ErasureInputSerializer,
        responses={
            201: ErasureSerializer,
            200: OpenApiResponse(ErasureSerializer, description="Erased before: the earlier erasure."),
            404: OpenApiResponse(description="No contact has this id."),
            **{
                **ERROR_RESPONSES,
                409: OpenApiResponse(description="A legal hold stands; `legal_hold` names it."),
            },
        },
        summary="Erase a contact's personal data (GDPR Art. 17); its consent history stays and verifies",
    )
    def post(self, request: Request, contact_id: int) -> Response:
        contact = get_object_or_404(Contact, pk=contact_id)
        given = ErasureInputSerializer(data=request.data if isinstance(request.data, dict) else {})
        given.is_valid(raise_exception=True)
        principal = request.user
        try:
            result = services.erasure_request(
                contact=contact,
                channel=ErasureRequest.Channel.API
                if isinstance(principal, ApiClient)
                else ErasureRequest.Channel.ADMIN,
                reason=given.validated_data["reason"],
                api_client=principal if isinstance(principal, ApiClient) else None,
                actor_user=None if isinstance(principal, ApiClient) else principal,  # type: ignore[arg-type]
            )
        except services.LegalHoldActive as held:
            hold = held.hold
            detail = (
                f"Contact {contact.pk} is under legal hold {hold.pk} ({hold.reason}); "
                "it cannot be erased until an admin lifts the hold."
            )
            return Response(
                {
                    "detail": detail,
                    "errors": {"contact": [detail]},
                    "legal_hold": {
                        "id": hold.pk,
                        "reason": hold.reason,
                        "set_by": hold.set_by,
                        "created_at": hold.created_at,
                    },
                },
                status=status.HTTP_409_CONFLICT,
            )
        return Response(
            ErasureSerializer(result.erasure).data,
            status=status.HTTP_201_CREATED if result.created else status.HTTP_200_OK,
        )


class NotFoundView(ApiView):
    """Any other path under the API: 404 in the API's error shape, whatever the method."""

    permission_classes = [AllowAny]
    throttle_classes = []
    schema = None  # not an endpoint: left out of the OpenAPI schema

    def http_method_not_allowed(self, request: HttpRequest, *args: Any, **kwargs: Any) -> Response:
        raise NotFound("No such API endpoint.")

    def options(self, request: HttpRequest, *args: Any, **kwargs: Any) -> Response:
        raise NotFound("No such API endpoint.")
