"""Forms of the pages that record: what a person types, checked field by field.

The ledger's own rules (an opt-in names its policy, a double opt-in purpose cannot be opted in
by phone, ...) are the services'; a view puts the services' refusals next to the field they
name (`add_rejection`). These forms only check the shape of the input.
"""

from __future__ import annotations

from typing import Any

from django import forms
from django.conf import settings
from django.core.exceptions import ValidationError
from django.core.files.uploadedfile import UploadedFile

from compliance import selectors
from compliance.models import ConsentStatus, Frequency, PolicyVersion, Purpose
from compliance.services import ConsentRejected
from compliance.services.corrections import correction_file_check

# What a person at the desk may record: expiry is the system's alone.
DESK_STATUSES = [
    (ConsentStatus.OPTED_IN.value, ConsentStatus.OPTED_IN.label),
    (ConsentStatus.OPTED_OUT.value, ConsentStatus.OPTED_OUT.label),
    (ConsentStatus.PENDING.value, ConsentStatus.PENDING.label),
]
# Where a refusal of the ledger's rules shows, by the field it names ("" above the form).
REJECTION_FIELDS = {
    "purpose": "purpose",
    "status": "status",
    "frequency": "frequency",
    "policy_version": "policy_version",
    "reason": "reason",
    # A double opt-in purpose's opt-in needs a confirmation a phone call cannot give.
    "evidence": "status",
}


class PolicyChoiceField(forms.ModelChoiceField):  # type: ignore[type-arg]
    def label_from_instance(self, obj: Any) -> str:
        return f"{obj.label} (in effect from {obj.effective_at:%Y-%m-%d})"


class PurposeChoiceField(forms.ModelChoiceField):  # type: ignore[type-arg]
    def label_from_instance(self, obj: Any) -> str:
        return f"{obj.name} ({obj.code})"


class DeskDecisionForm(forms.Form):
    """What a phone request and a correction share."""

    purpose = PurposeChoiceField(
        queryset=Purpose.objects.order_by("code"), to_field_name="code", empty_label="Choose a purpose"
    )
    status = forms.ChoiceField(choices=[("", "Choose a status"), *DESK_STATUSES])
    frequency = forms.ChoiceField(
        choices=[("", "None"), *Frequency.choices],
        required=False,
        help_text="Only with an opt-in, where the purpose offers one.",
    )
    policy_version = PolicyChoiceField(
        queryset=PolicyVersion.objects.none(),
        to_field_name="label",
        required=False,
        empty_label="None",
        help_text="The privacy notice read out or shown; an opt-in must name one.",
    )

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        policy_field: Any = self.fields["policy_version"]
        policy_field.queryset = selectors.policy_versions()

    def clean(self) -> dict[str, Any]:
        data = super().clean() or {}
        status, frequency = data.get("status"), data.get("frequency")
        if frequency and status and status != ConsentStatus.OPTED_IN:
            self.add_error("frequency", "A frequency goes only with an opt-in.")
        if status == ConsentStatus.OPTED_IN and "policy_version" in data and not data["policy_version"]:
            self.add_error("policy_version", "An opt-in must name the policy version the person was read.")
        return data

    def add_rejection(self, rejected: ConsentRejected) -> None:
        """Show a refusal of the ledger's rules next to the field it concerns."""
        field = REJECTION_FIELDS.get(rejected.field)
        self.add_error(field if field in self.fields else None, rejected.message)

    def decision_values(self) -> dict[str, str]:
        data = self.cleaned_data
        return {
            "purpose": data["purpose"].code,
            "status": data["status"],
            "frequency": data.get("frequency") or "",
            "policy_version": data["policy_version"].label if data.get("policy_version") else "",
        }


class PhoneRequestForm(DeskDecisionForm):
    note = forms.CharField(
        widget=forms.Textarea(attrs={"rows": 3}),
        max_length=2000,
        help_text="What the person asked for, in a sentence (kept as the event's reason).",
    )


class CorrectionForm(DeskDecisionForm):
    reason = forms.CharField(
        widget=forms.Textarea(attrs={"rows": 3}),
        max_length=2000,
        help_text="Why the ledger needs this correction; kept with the event for good.",
    )
    evidence_file = forms.FileField(
        required=False,
        label="Evidence file",
        help_text="Optional. At most {mb:g} MB; one of {types}.",
    )

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        field = self.fields["evidence_file"]
        types = ", ".join(sorted(settings.CORRECTION_EVIDENCE_TYPES))
        field.help_text = str(field.help_text).format(
            mb=settings.CORRECTION_EVIDENCE_MAX_BYTES / 1_048_576, types=types
        )
        field.widget.attrs["accept"] = ",".join(sorted(settings.CORRECTION_EVIDENCE_TYPES))

    def clean_evidence_file(self) -> UploadedFile | None:
        upload = self.cleaned_data.get("evidence_file")
        if upload:
            correction_file_check(upload=upload)
        return upload or None

    def clean_reason(self) -> str:
        reason = str(self.cleaned_data["reason"]).strip()
        if not reason:
            raise ValidationError("A correction needs a reason.")
        return reason


class PolicyPublishForm(forms.Form):
    label = forms.CharField(max_length=50, help_text="How events cite it, e.g. 2027-01.")
    effective_at = forms.DateField(label="In effect from", widget=forms.DateInput(attrs={"type": "date"}))
    text = forms.CharField(
        widget=forms.Textarea(attrs={"rows": 12}),
        required=False,
        help_text="The notice's full text (compared line by line with other versions).",
    )
    url = forms.URLField(
        required=False, assume_scheme="https", label="URL", help_text="Or where the notice is published."
    )

    def clean(self) -> dict[str, Any]:
        data = super().clean() or {}
        if not (data.get("text") or "").strip() and not data.get("url") and "url" not in self.errors:
            self.add_error("text", "Give the notice's text or its URL.")
        return data

    def add_validation_error(self, error: ValidationError) -> None:
        """A refusal of the model's own checks (a label in use), next to its field."""
        for field, messages in error.message_dict.items():
            self.add_error(field if field in self.fields else None, messages)


class PolicyDiffForm(forms.Form):
    """Two versions to compare: `old` and `new`, by label."""

    old = PolicyChoiceField(queryset=PolicyVersion.objects.none(), to_field_name="label", label="From")
    new = PolicyChoiceField(queryset=PolicyVersion.objects.none(), to_field_name="label", label="To")

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        for name in ("old", "new"):
            field: Any = self.fields[name]
            field.queryset = selectors.policy_versions()
            field.empty_label = None


class ErasureForm(forms.Form):
    """An admin's erasure request: why, kept with the request for good (no personal data)."""

    reason = forms.CharField(
        widget=forms.Textarea(attrs={"rows": 3}),
        max_length=2000,
        help_text="How the person asked and your reference, e.g. “Ticket 4711, asked by email”. "
        "No personal data: it is kept for good.",
    )


class LegalHoldForm(forms.Form):
    """A legal hold's reason: while the hold stands, nobody erases the contact."""

    reason = forms.CharField(
        label="Reason for a new legal hold",
        widget=forms.Textarea(attrs={"rows": 2}),
        max_length=2000,
        help_text="Why the data must be kept, e.g. a court case or a tax audit.",
    )
