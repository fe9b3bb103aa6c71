"""Django admin for the admin role: the ledger read-only, policy versions published through the service.

Only people in the `admin` role (with is_staff) and superusers get into the admin site; officers and
auditors are refused even if someone made them staff (`compliance.admin_site`). Admins read every
compliance table through the role, not through per-model permissions; nothing here edits a ledger row.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from django import forms
from django.contrib import admin, messages
from django.contrib.admin.helpers import ACTION_CHECKBOX_NAME
from django.db import models
from django.db.models import QuerySet
from django.http import HttpRequest
from django.template.response import TemplateResponse
from django.urls import reverse
from django.utils.html import format_html

from compliance.api.admin import ApiClientAdmin
from compliance.checks import ORPHANED_HINT, orphaned_message
from compliance.models import (
    ApiClient,
    ConsentEvent,
    ConsentState,
    Contact,
    ErasureRequest,
    IdentityEvent,
    LegalHold,
    OutboxEntry,
    PolicyVersion,
    Purpose,
    Seal,
    Suppression,
)
from compliance.services import (
    ConsentRejected,
    LegalHoldActive,
    contact_merge,
    erasure_request,
    legal_hold_lift,
    legal_hold_set,
    policy_version_publish,
)
from compliance.services.erased_identifiers import orphaned_key_ids

# django-stubs makes ModelAdmin generic in its model; Django's own class takes no parameter.
if TYPE_CHECKING:
    _ModelAdmin = admin.ModelAdmin[Any]
else:
    _ModelAdmin = admin.ModelAdmin


class ViewOnly:
    """Whoever may enter the admin site reads these rows (the admin role, through the site's own
    check); nobody adds, edits or deletes them here. For model admins and inlines alike."""

    admin_site: admin.AdminSite

    def has_view_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return self.admin_site.has_permission(request)

    def has_add_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False


class SiteEditable:
    """Whoever may enter the admin site (admins) views, adds and changes these; nothing is deleted
    here (other rows name them: switch one off instead)."""

    admin_site: admin.AdminSite

    def has_module_permission(self, request: HttpRequest) -> bool:
        return self.admin_site.has_permission(request)

    def has_view_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return self.admin_site.has_permission(request)

    def has_add_permission(self, request: HttpRequest) -> bool:
        return self.admin_site.has_permission(request)

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return self.admin_site.has_permission(request)

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False


class ReadOnlyAdmin(ViewOnly, _ModelAdmin):
    """Viewable by whoever may enter the admin site; never added, changed or deleted here."""

    actions: Any = None

    def has_module_permission(self, request: HttpRequest) -> bool:
        return self.admin_site.has_permission(request)


class ContactMergeForm(forms.Form):
    """Which of two contacts survives a merge, and why (the reason goes into both identity events)."""

    primary = forms.TypedChoiceField(
        coerce=int, widget=forms.RadioSelect, label="Keep", help_text="The other is merged into it."
    )
    reason = forms.CharField(widget=forms.Textarea(attrs={"rows": 3}), max_length=2000)

    def __init__(self, *args: Any, contacts: list[Contact], **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        choices = [
            (c.pk, f"contact {c.pk}: {c.display_name} ({c.email or c.phone or c.app_user_id or '—'})")
            for c in contacts
        ]
        self.fields["primary"].choices = choices  # type: ignore[attr-defined]


class ErasureForm(forms.Form):
    reason = forms.CharField(
        widget=forms.Textarea(attrs={"rows": 2}),
        max_length=500,
        required=False,
        help_text="Why, and through which channel the person asked; no personal data (e.g. ticket 4711, by email).",
    )


@admin.register(Contact)
class ContactAdmin(ReadOnlyAdmin):
    """Contacts are read-only here; their identifiers change only through identity events. The one
    write is the merge action: an admin's decision, recorded as an identity event on both."""

    list_display = (
        "id",
        "email",
        "phone",
        "app_user_id",
        "zoho_id",
        "first_name",
        "last_name",
        "merged_into",
        "created_at",
    )
    search_fields = ("email", "phone", "app_user_id", "zoho_id", "last_name")
    show_full_result_count = False
    actions = ["merge_contacts", "erase_contact"]

    @admin.action(description="Erase the selected contact (GDPR Art. 17): forget the person, keep the proof")
    def erase_contact(self, request: HttpRequest, queryset: QuerySet[Contact]) -> TemplateResponse | None:
        if not request.user.has_perm("compliance.erase_contacts"):
            self.message_user(request, "Erasing needs the right to erase contacts.", messages.ERROR)
            return None
        contacts = list(queryset.order_by("pk")[:2])
        if len(contacts) != 1:
            self.message_user(request, "Select exactly one contact to erase.", messages.ERROR)
            return None
        contact = contacts[0]
        form = ErasureForm(request.POST if "apply" in request.POST else None)
        if form.is_valid():
            try:
                result = erasure_request(
                    contact=contact,
                    channel=ErasureRequest.Channel.ADMIN,
                    reason=form.cleaned_data["reason"],
                    actor_user=request.user,  # type: ignore[arg-type]
                )
            except LegalHoldActive as held:
                self.message_user(
                    request,
                    f"Not erased: legal hold {held.hold.pk} stands ({held.hold.reason}).",
                    messages.ERROR,
                )
                return None
            except ConsentRejected as exc:
                self.message_user(request, f"Not erased: {exc.message}", messages.ERROR)
                return None
            erasure = result.erasure
            self.message_user(
                request,
                (
                    f"Contact {contact.pk} erased (request {erasure.pk}): {erasure.values_deleted} personal "
                    f"values deleted, {erasure.events_kept} events kept, and they still verify."
                )
                if result.created
                else f"Contact {contact.pk} was erased before (request {erasure.pk}, {erasure.erased_at:%Y-%m-%d %H:%M}).",
                messages.SUCCESS,
            )
            return None
        return TemplateResponse(
            request,
            "admin/compliance/contact/erase.html",
            {
                **self.admin_site.each_context(request),
                "title": f"Erase contact {contact.pk}",
                "opts": self.model._meta,
                "contact": contact,
                "holds": list(contact.legal_holds.filter(lifted_at__isnull=True)),
                "form": form,
                "action_checkbox_name": ACTION_CHECKBOX_NAME,
            },
        )

    @admin.action(description="Merge the two selected contacts (recorded on both)")
    def merge_contacts(self, request: HttpRequest, queryset: QuerySet[Contact]) -> TemplateResponse | None:
        contacts = list(queryset.order_by("pk")[:3])
        if len(contacts) != 2:
            self.message_user(request, "Select exactly two contacts to merge.", messages.ERROR)
            return None
        form = ContactMergeForm(request.POST if "apply" in request.POST else None, contacts=contacts)
        if form.is_valid():
            primary = next(c for c in contacts if c.pk == form.cleaned_data["primary"])
            merged = next(c for c in contacts if c.pk != primary.pk)
            try:
                contact_merge(
                    primary=primary,
                    merged=merged,
                    actor_user=request.user,  # type: ignore[arg-type]
                    reason=form.cleaned_data["reason"],
                    ip_address=request.META.get("REMOTE_ADDR"),
                )
            except ConsentRejected as exc:
                self.message_user(request, f"Not merged: {exc.message}", messages.ERROR)
                return None
            self.message_user(
                request,
                f"Contact {merged.pk} was merged into contact {primary.pk}; both identity histories say so.",
                messages.SUCCESS,
            )
            return None
        return TemplateResponse(
            request,
            "admin/compliance/contact/merge.html",
            {
                **self.admin_site.each_context(request),
                "title": "Merge two contacts",
                "opts": self.model._meta,
                "contacts": contacts,
                "form": form,
                "action_checkbox_name": ACTION_CHECKBOX_NAME,
            },
        )


@admin.register(IdentityEvent)
class IdentityEventAdmin(ReadOnlyAdmin):
    list_display = ("id", "contact", "version", "kind", "email", "source", "actor", "recorded_at")
    list_filter = ("kind", "source")
    list_select_related = ("contact",)
    raw_id_fields = ("contact", "other_contact")
    show_full_result_count = False


@admin.register(Purpose)
class PurposeAdmin(ReadOnlyAdmin):
    list_display = ("code", "name", "channel", "double_opt_in_required", "validity_months")


@admin.register(PolicyVersion)
class PolicyVersionAdmin(ReadOnlyAdmin):
    """Adding a policy version publishes it through the service; published versions never change."""

    list_display = ("label", "effective_at", "published_at", "sha256")
    formfield_overrides = {models.URLField: {"assume_scheme": "https"}}
    fields = ("label", "effective_at", "text", "url")
    readonly_fields_when_stored = (
        "label",
        "effective_at",
        "text",
        "url",
        "sha256",
        "published_at",
        "created_at",
    )

    def has_add_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return self.admin_site.has_permission(request)

    def get_fields(self, request: HttpRequest, obj: Any = None) -> Any:
        return self.readonly_fields_when_stored if obj is not None else self.fields

    def get_readonly_fields(self, request: HttpRequest, obj: Any = None) -> Any:
        return self.readonly_fields_when_stored if obj is not None else ()

    def save_model(self, request: HttpRequest, obj: PolicyVersion, form: Any, change: bool) -> None:
        published = policy_version_publish(
            label=obj.label, effective_at=obj.effective_at, text=obj.text, url=obj.url
        )
        obj.pk = published.pk
        obj.sha256 = published.sha256
        obj.published_at = published.published_at
        obj.created_at = published.created_at


@admin.register(ConsentEvent)
class ConsentEventAdmin(ReadOnlyAdmin):
    list_display = (
        "id",
        "contact",
        "purpose",
        "version",
        "status",
        "previous_status",
        "source",
        "occurred_at",
        "recorded_at",
        "actor",
    )
    list_filter = ("purpose", "status", "source")
    list_select_related = ("contact", "purpose")
    raw_id_fields = ("contact",)
    show_full_result_count = False


@admin.register(ConsentState)
class ConsentStateAdmin(ReadOnlyAdmin):
    list_display = ("contact", "purpose", "status", "frequency", "occurred_at", "version", "refresh_due_at")
    list_filter = ("purpose", "status")
    list_select_related = ("contact", "purpose")
    show_full_result_count = False


@admin.register(Suppression)
class SuppressionAdmin(ReadOnlyAdmin):
    list_display = ("contact", "channel", "kind", "source", "created_at", "lifted_at")
    list_filter = ("kind", "channel")
    list_select_related = ("contact",)


@admin.register(Seal)
class SealAdmin(ReadOnlyAdmin):
    list_display = ("sequence", "created_at", "first_event_id", "last_event_id", "event_count", "hash")


@admin.register(OutboxEntry)
class OutboxEntryAdmin(ReadOnlyAdmin):
    list_display = (
        "id",
        "contact",
        "purpose",
        "priority",
        "created_at",
        "claimed_at",
        "attempts",
        "processed_at",
    )
    list_filter = ("priority",)
    list_select_related = ("contact", "purpose")
    show_full_result_count = False


# Revoke, rotate and expire keys, change rights: the API's own admin page.
admin.site.register(ApiClient, ApiClientAdmin)


@admin.register(LegalHold)
class LegalHoldAdmin(admin.ModelAdmin):  # type: ignore[type-arg]
    """Admins set a legal hold with a reason; while it stands, nobody erases the contact (neither a
    request nor the retention job). Lifting records who and when; holds are never deleted."""

    list_display = ("id", "contact", "reason", "set_by", "created_at", "lifted_at", "lifted_by")
    list_filter = ("lifted_at",)
    raw_id_fields = ("contact",)
    readonly_fields = ("set_by", "created_at", "lifted_at", "lifted_by")
    actions = ["lift_holds"]

    def has_module_permission(self, request: HttpRequest) -> bool:
        return request.user.has_perm("compliance.erase_contacts")

    def has_view_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return request.user.has_perm("compliance.erase_contacts")

    def has_add_permission(self, request: HttpRequest) -> bool:
        return request.user.has_perm("compliance.erase_contacts")

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def save_model(self, request: HttpRequest, obj: LegalHold, form: Any, change: bool) -> None:
        hold = legal_hold_set(contact=obj.contact, reason=obj.reason, actor_user=request.user)  # type: ignore[arg-type]
        obj.pk, obj.set_by, obj.created_at = hold.pk, hold.set_by, hold.created_at

    @admin.action(description="Lift the selected legal holds")
    def lift_holds(self, request: HttpRequest, queryset: QuerySet[LegalHold]) -> None:
        lifted = 0
        for hold in queryset.filter(lifted_at__isnull=True):
            legal_hold_lift(hold=hold, actor_user=request.user)  # type: ignore[arg-type]
            lifted += 1
        self.message_user(request, f"{lifted} legal holds lifted.", messages.SUCCESS)


@admin.register(ErasureRequest)
class ErasureRequestAdmin(ReadOnlyAdmin):
    """What was erased, when and why: no personal data (the contact by its id only)."""

    list_display = (
        "id",
        "contact_page",
        "channel",
        "requested_by",
        "reason",
        "requested_at",
        "status",
        "erased_at",
        "events_kept",
        "values_deleted",
        "legacy_events",
    )
    list_filter = ("channel", "status")
    fields = (*list_display, "attempts", "last_error", "identity_event_id")
    readonly_fields = fields
    show_full_result_count = False

    def changelist_view(self, request: HttpRequest, extra_context: dict[str, Any] | None = None) -> Any:
        # The hashed identifiers an erasure leaves must stay matchable (compliance.E011).
        orphaned = orphaned_key_ids()
        if orphaned:
            self.message_user(request, f"{orphaned_message(orphaned)} {ORPHANED_HINT}", messages.ERROR)
        return super().changelist_view(request, extra_context)

    @admin.display(description="Contact", ordering="contact_id")
    def contact_page(self, erasure: ErasureRequest) -> str:
        """The contact's page, where the proof kept is shown (by id only: no personal data)."""
        return format_html(
            '<a href="{}">contact {}</a>',
            reverse("compliance:contact_detail", args=[erasure.contact_id]),
            erasure.contact_id,
        )
