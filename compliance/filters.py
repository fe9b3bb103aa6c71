"""django-filter filter sets for the compliance tables: the form a table's filters come from and
the conditions they add to a selector's queryset. No rules here.

django-filter ships no type information, so its classes are `Any` to mypy: each class here
that subclasses one says so with `type: ignore[misc]`.
"""

from __future__ import annotations

from datetime import date, datetime, time, timedelta
from typing import Any

import django_filters as filters
from django import forms
from django.db.models import QuerySet
from django.utils import timezone

from compliance import selectors, services
from compliance.models import AccessLog, ConsentEvent, ConsentStatus, Contact, PolicyVersion, Purpose, Source

DATE = forms.DateInput(attrs={"type": "date"})


def day_start(day: date) -> datetime:
    """Midnight at the start of `day` in the current time zone."""
    return datetime.combine(day, time.min, tzinfo=timezone.get_current_timezone())


class ContactSearchFilter(filters.FilterSet):  # type: ignore[misc]
    """The contact search: one box, answered by `selectors.contact_search` (no query, nobody)."""

    q = filters.CharFilter(
        method="search",
        label="Email, phone, app user id or name",
        max_length=200,
        min_length=selectors.SEARCH_MIN_LENGTH,
        error_messages={"min_length": "Type at least %(limit_value)d characters: one finds too many people."},
        widget=forms.TextInput(
            attrs={
                "type": "search",
                "placeholder": "anna@example.com, +4915112345678, app-123, Schmidt",
                "autofocus": True,
            }
        ),
    )

    class Meta:
        model = Contact
        fields: list[str] = []

    def search(self, queryset: QuerySet[Contact], name: str, value: str) -> QuerySet[Contact]:
        return selectors.contact_search(query=value)


class ContactEventFilter(filters.FilterSet):  # type: ignore[misc]
    """A contact's history: by purpose, status, source and the day the person acted."""

    purpose = filters.ModelChoiceFilter(
        queryset=Purpose.objects.order_by("code"), to_field_name="code", empty_label="Any"
    )
    status = filters.ChoiceFilter(choices=ConsentStatus.choices, empty_label="Any")
    source = filters.ChoiceFilter(choices=Source.choices, empty_label="Any")
    since = filters.DateFilter(method="occurred_since", label="Occurred from", widget=DATE)
    until = filters.DateFilter(method="occurred_until", label="Occurred to (inclusive)", widget=DATE)

    class Meta:
        model = ConsentEvent
        fields = ["purpose", "status", "source"]

    def occurred_since(
        self, queryset: QuerySet[ConsentEvent], name: str, value: date
    ) -> QuerySet[ConsentEvent]:
        return queryset.filter(occurred_at__gte=day_start(value))

    def occurred_until(
        self, queryset: QuerySet[ConsentEvent], name: str, value: date
    ) -> QuerySet[ConsentEvent]:
        return queryset.filter(occurred_at__lt=day_start(value) + timedelta(days=1))


class AccessLogFilter(filters.FilterSet):  # type: ignore[misc]
    """The access log: by kind, user, contact, days, and search terms (matched by their hash)."""

    kind = filters.ChoiceFilter(choices=AccessLog.Kind.choices, empty_label="Any")
    user = filters.CharFilter(field_name="username", method="by_user", label="User", max_length=150)
    contact = filters.NumberFilter(method="by_contact", label="Contact id", min_value=1)
    since = filters.DateFilter(method="created_since", label="From", widget=DATE)
    until = filters.DateFilter(method="created_until", label="To (inclusive)", widget=DATE)
    # Matched through its hash: the log holds no search terms to compare with.
    terms = filters.CharFilter(method="by_terms", label="Searched for", max_length=200)

    class Meta:
        model = AccessLog
        fields = ["kind"]

    def by_user(self, queryset: QuerySet[AccessLog], name: str, value: str) -> QuerySet[AccessLog]:
        return queryset.filter(username=value.strip()) if value.strip() else queryset

    def by_contact(self, queryset: QuerySet[AccessLog], name: str, value: Any) -> QuerySet[AccessLog]:
        return queryset.filter(contacts__contact_id=int(value))

    def created_since(self, queryset: QuerySet[AccessLog], name: str, value: date) -> QuerySet[AccessLog]:
        return queryset.filter(created_at__gte=day_start(value))

    def created_until(self, queryset: QuerySet[AccessLog], name: str, value: date) -> QuerySet[AccessLog]:
        return queryset.filter(created_at__lt=day_start(value) + timedelta(days=1))

    def by_terms(self, queryset: QuerySet[AccessLog], name: str, value: str) -> QuerySet[AccessLog]:
        if not value.strip():
            return queryset
        return queryset.filter(query_hash=services.access_log_query_hash(value))


class PolicyVersionFilter(filters.FilterSet):  # type: ignore[misc]
    """The policy versions: by label and by the day they took effect."""

    label = filters.CharFilter(lookup_expr="icontains", label="Label contains", max_length=50)
    effective_since = filters.DateFilter(
        field_name="effective_at", lookup_expr="gte", label="In effect from", widget=DATE
    )
    effective_until = filters.DateFilter(
        field_name="effective_at", lookup_expr="lte", label="In effect to (inclusive)", widget=DATE
    )

    class Meta:
        model = PolicyVersion
        fields = ["label"]
