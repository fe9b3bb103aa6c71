"""CSV import: the whole file or nothing, every bad row named, a second run records nothing."""

from __future__ import annotations

from pathlib import Path

import pytest
from django.core.management import CommandError, call_command

from compliance.models import ConsentEvent, ConsentState, Contact
from compliance.services.imports import consent_csv_import
from compliance.verification import ledger_verify

pytestmark = [pytest.mark.django_db]

HEADER = (
    "email,phone,purpose,status,occurred_at,policy_version,frequency,double_opt_in_confirmed_at,legacy_source"
)
GOOD = [
    "ana@example.com,+4915112345678,sms_marketing,opted_in,2024-05-01T09:30:00Z,{policy},weekly,,shop",
    "ana@example.com,,email_marketing,opted_in,2024-05-02T10:00:00+02:00,{policy},monthly,2024-05-02T10:05:00Z,web form",
    "ben@example.com,,sms_marketing,opted_out,2024-06-01T08:00:00Z,,,,call centre",
    ",+4915199999999,phone_marketing,opted_in,2024-06-02T08:00:00Z,{policy},,,",
]


def _csv(policy: str, rows: list[str], header: str = HEADER) -> bytes:
    return ("\n".join([header, *rows]) + "\n").format(policy=policy).encode()


def test_a_good_file_records_every_row_as_an_import_with_its_evidence(policy):
    report = consent_csv_import(data=_csv(policy.label, GOOD), name="legacy.csv")

    assert (report.rows, report.created, report.errors) == (4, 4, [])
    events = list(ConsentEvent.objects.order_by("id"))
    assert {e.source for e in events} == {"import"}
    assert Contact.objects.count() == 3
    first = events[0]
    assert first.evidence["import"] == {"file": "legacy.csv", "file_sha256": report.file_sha256, "line": 2}
    assert first.evidence["legacy_source"] == "shop"
    assert events[1].evidence["double_opt_in_confirmed_at"] == "2024-05-02T10:05:00+00:00"
    assert ConsentState.objects.get(contact__email="ben@example.com").status == "opted_out"
    assert ledger_verify().ok


def test_the_same_file_again_records_nothing(policy):
    data = _csv(policy.label, GOOD)
    consent_csv_import(data=data, name="legacy.csv")

    again = consent_csv_import(data=data, name="legacy.csv")

    assert (again.created, again.replayed, again.errors) == (0, 4, [])
    assert ConsentEvent.objects.count() == 4


def test_a_file_with_bad_rows_records_nothing_and_names_each_line(policy):
    rows = [
        *GOOD,
        "carl@example.com,,sms_marketing,opted_in,2024-05-01T09:30:00Z,1999-unknown,,,",  # line 6
        "dora@example.com,,email_marketing,opted_in,2024-05-01T09:30:00Z,{policy},,,",  # 7: no DOI
        "eve@example,,sms_marketing,opted_out,2024-05-01T09:30:00Z,,,,",  # 8: bad email
        "fay@example.com,,sms_marketing,opted_out,2024-05-01 09:30,,,,",  # 9: no time zone
        ",,sms_marketing,opted_out,2024-05-01T09:30:00Z,,,,",  # 10: nobody
        "gil@example.com,,fax_marketing,opted_out,2024-05-01T09:30:00Z,,,,",  # 11: no such purpose
    ]
    report = consent_csv_import(data=_csv(policy.label, rows), name="legacy.csv")

    assert [(e.line, e.field) for e in report.errors] == [
        (6, "policy_version"),
        (7, "evidence"),
        (8, "contact.email"),
        (9, "occurred_at"),
        (10, "contact"),
        (11, "purpose"),
    ]
    assert ConsentEvent.objects.count() == 0 and Contact.objects.count() == 0


def test_a_conflict_only_the_database_can_see_rolls_the_whole_file_back(policy):
    header = "email,app_user_id,purpose,status,occurred_at"
    consent_csv_import(
        data=_csv(
            policy.label, ["ana@example.com,u-ana,sms_marketing,opted_out,2024-01-01T00:00:00Z"], header
        ),
        name="first.csv",
    )
    consent_csv_import(
        data=_csv(
            policy.label, ["ben@example.com,u-ben,sms_marketing,opted_out,2024-01-01T00:00:00Z"], header
        ),
        name="second.csv",
    )
    rows = [
        "cleo@example.com,,sms_marketing,opted_out,2024-02-01T00:00:00Z",
        # Ana's email with Ben's app user id: two people.
        "ana@example.com,u-ben,sms_marketing,opted_out,2024-02-01T00:00:00Z",
    ]
    report = consent_csv_import(data=_csv(policy.label, rows, header), name="third.csv")

    assert [e.line for e in report.errors] == [3]
    assert report.errors[0].field.startswith("contact")
    assert report.created == 0
    assert not Contact.objects.filter(email="cleo@example.com").exists()
    assert ConsentEvent.objects.count() == 2


def test_a_header_it_does_not_know_is_refused_before_any_row(policy):
    report = consent_csv_import(
        data=_csv(policy.label, GOOD[:1], header=HEADER + ",favourite_colour"), name="x.csv"
    )
    assert [(e.line, e.field) for e in report.errors] == [(1, "header")]
    assert "favourite_colour" in report.errors[0].message
    assert ConsentEvent.objects.count() == 0


def test_the_command_dry_run_counts_and_records_nothing_then_records(policy, tmp_path: Path, capsys):
    path = tmp_path / "legacy.csv"
    path.write_bytes(_csv(policy.label, GOOD))

    call_command("import_consent_csv", str(path), "--dry-run")
    assert "Dry run: nothing was recorded." in capsys.readouterr().out
    assert ConsentEvent.objects.count() == 0

    call_command("import_consent_csv", str(path))
    assert "Recorded 4 decision(s)" in capsys.readouterr().out
    assert ConsentEvent.objects.count() == 4


def test_the_command_lists_bad_rows_and_exits_1(policy, tmp_path: Path, capsys):
    path = tmp_path / "bad.csv"
    path.write_bytes(_csv(policy.label, ["eve@example,,sms_marketing,opted_out,2024-05-01T09:30:00Z,,,,"]))

    with pytest.raises(CommandError) as refused:
        call_command("import_consent_csv", str(path))

    assert refused.value.returncode == 1
    assert "line 2: contact.email:" in capsys.readouterr().err
    assert ConsentEvent.objects.count() == 0
