"""The purposes every installation starts with (created by migration 0003)."""

from __future__ import annotations

from typing import Any

PURPOSES = [
    # code, name, channel, double opt-in, validity in months, description
    ("email_marketing", "Email marketing", "email", True, 24, "Newsletters and offers by email."),
    ("sms_marketing", "SMS marketing", "sms", False, 24, "Offers by text message."),
    ("phone_marketing", "Phone marketing", "phone", False, 12, "Offers by telephone call."),
    ("profiling", "Profiling", "none", False, 24, "Personalisation from purchase and app usage."),
    ("third_party_sharing", "Third-party sharing", "none", False, 12, "Sharing contact data with partners."),
]


def purposes_install(purpose_model: Any) -> None:
    """Create or update the standard purposes; takes the model so a migration can pass its historical one."""
    for code, name, channel, double_opt_in, months, description in PURPOSES:
        purpose_model.objects.update_or_create(
            code=code,
            defaults={
                "name": name,
                "channel": channel,
                "double_opt_in_required": double_opt_in,
                "validity_months": months,
                "description": description,
            },
        )
