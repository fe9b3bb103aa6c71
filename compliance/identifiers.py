"""Normal forms of a contact's identifiers, so one person is found by any of them."""

from __future__ import annotations

import ipaddress

import phonenumbers
from django.core.exceptions import ValidationError
from django.core.validators import validate_email


def normalise_email(value: str) -> str:
    email = value.strip().lower()
    validate_email(email)
    return email


def normalise_phone(value: str) -> str:
    """E.164. Numbers must carry their country code (+49…): we never guess a region."""
    try:
        number = phonenumbers.parse(value.strip(), None)
    except phonenumbers.NumberParseException as exc:
        raise ValidationError("Enter a phone number in international format, e.g. +4915112345678.") from exc
    if not phonenumbers.is_possible_number(number) or not phonenumbers.is_valid_number(number):
        raise ValidationError("This is not a valid phone number.")
    return phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164)


def normalise_ip(value: str) -> str:
    try:
        return ipaddress.ip_address(value.strip()).compressed
    except ValueError as exc:
        raise ValidationError("Enter a valid IPv4 or IPv6 address.") from exc
