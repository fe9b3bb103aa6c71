"""django-filter filter sets of the sync's tables: the discrepancy list and the alert list.

The page, its CSV export (``?_export=csv``) and its tallies read the same filter, so an
export holds exactly the rows the filtered table shows. Presentation of choices only: the
queries themselves are the selectors' (`sync.selectors`).
"""

from __future__ import annotations

from typing import Any

import django_filters
from django import forms
from django.db.models import QuerySet

from sync.models import Alert, Discrepancy

# The CRM-field filter's "any field" and "the whole record" (the stored value is blank).
ANY_FIELD = "__any__"
WHOLE_RECORD = "__record__"
DATE = forms.DateInput(attrs={"type": "date"})


class DiscrepancyFilter(django_filters.FilterSet):
    status = django_filters.ChoiceFilter(choices=Discrepancy.Status.choices, empty_label="Any status")
    kind = django_filters.ChoiceFilter(choices=Discrepancy.Kind.choices, empty_label="Any kind")
    field = django_filters.ChoiceFilter(label="CRM field", method="filter_field", empty_label=None)
    contact = django_filters.NumberFilter(field_name="contact_id", label="Contact id", min_value=1)
    opened_from = django_filters.DateFilter(
        field_name="opened_at", lookup_expr="date__gte", label="Opened from", widget=DATE
    )
    opened_to = django_filters.DateFilter(
        field_name="opened_at", lookup_expr="date__lte", label="to (inclusive)", widget=DATE
    )

    class Meta:
        model = Discrepancy
        fields: list[str] = []

    def __init__(self, data: Any = None, *args: Any, fields: list[str], **kwargs: Any) -> None:
        data = data.copy() if data is not None else None
        if data is not None:
            # Open ones by default (what still needs somebody), on any field; ``field=`` (blank)
            # asks for the record-level ones, as the tallies' links do.
            data.setdefault("status", Discrepancy.Status.OPEN)
            if "field" not in data:
                data["field"] = ANY_FIELD
            elif data["field"] == "":
                data["field"] = WHOLE_RECORD
        super().__init__(data, *args, **kwargs)
        self.filters["field"].extra["choices"] = [
            (ANY_FIELD, "Any field"),
            (WHOLE_RECORD, "(whole record)"),
            *((name, name) for name in fields if name),
        ]

    def filter_field(self, queryset: QuerySet[Discrepancy], name: str, value: str) -> QuerySet[Discrepancy]:
        if value == ANY_FIELD:
            return queryset
        return queryset.filter(crm_field="" if value == WHOLE_RECORD else value)


class AlertFilter(django_filters.FilterSet):
    kind = django_filters.ChoiceFilter(choices=Alert.Kind.choices, empty_label="Any kind")
    acknowledged = django_filters.ChoiceFilter(
        label="Acknowledged",
        method="filter_acknowledged",
        choices=[("no", "Waiting for acknowledgement"), ("yes", "Acknowledged"), ("any", "Any")],
        empty_label=None,
    )
    raised_from = django_filters.DateFilter(
        field_name="created_at", lookup_expr="date__gte", label="Raised from", widget=DATE
    )
    raised_to = django_filters.DateFilter(
        field_name="created_at", lookup_expr="date__lte", label="to (inclusive)", widget=DATE
    )

    class Meta:
        model = Alert
        fields: list[str] = []

    def __init__(self, data: Any = None, *args: Any, **kwargs: Any) -> None:
        data = data.copy() if data is not None else None
        if data is not None and "acknowledged" not in data:
            # The old link "?show=all" still shows every alert.
            data["acknowledged"] = "any" if data.get("show") == "all" else "no"
        super().__init__(data, *args, **kwargs)

    def filter_acknowledged(self, queryset: QuerySet[Alert], name: str, value: str) -> QuerySet[Alert]:
        if value == "no":
            return queryset.filter(acknowledged_at__isnull=True)
        if value == "yes":
            return queryset.filter(acknowledged_at__isnull=False)
        return queryset

    @property
    def show_all(self) -> bool:
        return bool(self.is_bound and self.data.get("acknowledged") != "no")
