"""The request forms and the verify upload. Rules about scopes live in reports.scopes; a form only
turns its input into a scope (or the scope's error into a form error)."""

from __future__ import annotations

from typing import Any

from django import forms
from django.conf import settings

from compliance.models import Purpose, Source
from reports.scopes import (
    ContactScope,
    PeriodScope,
    SampleScope,
    ScopeError,
    contact_scope,
    period_scope,
    sample_scope,
)

DATE = forms.DateInput(attrs={"type": "date"})


class ScopeForm(forms.Form):
    """A form whose clean() builds `self.scope`, reporting a ScopeError on the field at fault."""

    scope: PeriodScope | ContactScope | SampleScope

    def build(self, data: dict[str, Any]) -> PeriodScope | ContactScope | SampleScope:
        raise NotImplementedError

    def clean(self) -> dict[str, Any]:
        data = super().clean() or {}
        if not self.errors:
            try:
                self.scope = self.build(data)
            except ScopeError as exc:
                self.add_error(exc.field if exc.field in self.fields else None, exc.message)
        return data


class PeriodForm(ScopeForm):
    date_from = forms.DateField(label="From", widget=DATE)
    date_to = forms.DateField(label="To (included)", widget=DATE)
    purposes = forms.MultipleChoiceField(
        required=False, widget=forms.CheckboxSelectMultiple, help_text="None ticked: every purpose."
    )
    sources = forms.MultipleChoiceField(
        required=False,
        choices=Source.choices,
        widget=forms.CheckboxSelectMultiple,
        help_text="None ticked: every source.",
    )

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        kwargs.setdefault("prefix", "period")
        super().__init__(*args, **kwargs)
        self.fields["purposes"].choices = list(Purpose.objects.order_by("code").values_list("code", "name"))  # type: ignore[attr-defined]

    def build(self, data: dict[str, Any]) -> PeriodScope:
        return period_scope(
            date_from=data["date_from"],
            date_to=data["date_to"],
            purposes=data["purposes"],
            sources=data["sources"],
        )


class EvidenceForm(ScopeForm):
    email = forms.CharField(required=False, label="Email address", max_length=254)
    contact = forms.IntegerField(required=False, label="or contact id", min_value=1)

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        kwargs.setdefault("prefix", "evidence")
        super().__init__(*args, **kwargs)

    def build(self, data: dict[str, Any]) -> ContactScope:
        return contact_scope(email=data.get("email") or "", contact_id=data.get("contact"))


class SampleForm(ScopeForm):
    size = forms.IntegerField(label="People", min_value=1, initial=20)
    seed = forms.CharField(
        label="Seed", max_length=100, help_text="Any text: the same seed picks the same people."
    )
    date_from = forms.DateField(label="Among people with events from", required=False, widget=DATE)
    date_to = forms.DateField(label="to", required=False, widget=DATE)

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        kwargs.setdefault("prefix", "sample")
        super().__init__(*args, **kwargs)
        self.fields["size"].max_value = settings.REPORT_SAMPLE_MAX_SIZE  # type: ignore[attr-defined]

    def build(self, data: dict[str, Any]) -> SampleScope:
        return sample_scope(
            size=data["size"], seed=data["seed"], date_from=data.get("date_from"), date_to=data.get("date_to")
        )


FORMS: dict[str, type[ScopeForm]] = {"period": PeriodForm, "evidence": EvidenceForm, "sample": SampleForm}


class VerifyForm(forms.Form):
    file = forms.FileField(label="Report PDF")
