"""The preference centre's form: one status and one frequency per purpose, and the policy shown."""

from __future__ import annotations

from typing import Any

from django import forms
from django.utils.translation import gettext_lazy as _

from compliance.lifecycle.services import Choice
from compliance.models import ConsentStatus, Frequency, PolicyVersion, Purpose

STATUS_PREFIX = "status_"
FREQUENCY_PREFIX = "frequency_"


def status_choices() -> list[tuple[str, Any]]:
    return [(ConsentStatus.OPTED_IN, _("Yes, please")), (ConsentStatus.OPTED_OUT, _("No, thank you"))]


def frequency_choices() -> list[tuple[str, Any]]:
    return [
        ("", _("As it comes")),
        (Frequency.DAILY, _("Daily")),
        (Frequency.WEEKLY, _("Weekly")),
        (Frequency.MONTHLY, _("Monthly")),
    ]


class PreferencesForm(forms.Form):
    policy_version = forms.CharField(widget=forms.HiddenInput, max_length=50)

    def __init__(self, *args: Any, purposes: list[Purpose], **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.purposes = purposes
        for purpose in purposes:
            self.fields[STATUS_PREFIX + purpose.code] = forms.ChoiceField(
                choices=status_choices(), widget=forms.RadioSelect, required=False
            )
            if has_frequency(purpose):
                self.fields[FREQUENCY_PREFIX + purpose.code] = forms.ChoiceField(
                    choices=frequency_choices(), required=False
                )

    def clean(self) -> dict[str, Any]:
        cleaned = super().clean() or {}
        known = {p.code for p in self.purposes}
        for name in self.data:
            for prefix in (STATUS_PREFIX, FREQUENCY_PREFIX):
                if name.startswith(prefix) and name[len(prefix) :] not in known:
                    raise forms.ValidationError(
                        _("Unknown purpose %(purpose)s: nothing was saved."),
                        code="unknown_purpose",
                        params={"purpose": name[len(prefix) :][:50]},
                    )
            if name.startswith(FREQUENCY_PREFIX) and name not in self.fields:
                raise forms.ValidationError(
                    _("%(purpose)s has no frequency: nothing was saved."),
                    code="no_frequency",
                    params={"purpose": name[len(FREQUENCY_PREFIX) :][:50]},
                )
        label = cleaned.get("policy_version")
        if label:
            policy = PolicyVersion.objects.filter(label=label, published_at__isnull=False).first()
            if policy is None:
                raise forms.ValidationError(_("This page is out of date: reload it and try again."))
            cleaned["policy"] = policy
        return cleaned

    def choices(self) -> dict[str, Choice]:
        """The purposes the person answered (a purpose left without an answer stays as it is)."""
        answers = {}
        for purpose in self.purposes:
            status = self.cleaned_data.get(STATUS_PREFIX + purpose.code)
            if status:
                answers[purpose.code] = Choice(
                    status=status, frequency=self.cleaned_data.get(FREQUENCY_PREFIX + purpose.code) or ""
                )
        return answers

    def rows(self) -> list[tuple[Purpose, forms.BoundField, forms.BoundField | None]]:
        return [
            (p, self[STATUS_PREFIX + p.code], self[FREQUENCY_PREFIX + p.code] if has_frequency(p) else None)
            for p in self.purposes
        ]


def has_frequency(purpose: Purpose) -> bool:
    """How often is a question for the purposes that contact the person (not profiling, sharing)."""
    return purpose.channel != Purpose.Channel.NONE
