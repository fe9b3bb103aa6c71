"""The three report commands: the same PDFs as the web's, synchronously; bad input exits 2."""

from __future__ import annotations

import csv
import io
import subprocess
from datetime import UTC, datetime, timedelta

import pytest
from django.core.management import CommandError, call_command

from compliance.models import Contact
from reports.models import Report
from tests.reports.conftest import days_ago
from tests.reports.pdfcheck import attachments, events_csv, manifest, pyhanko_says_valid

pytestmark = pytest.mark.django_db


def today():
    return datetime.now(UTC).date()


@pytest.mark.parametrize(
    "date_from, date_to, message",
    [
        (lambda: today() - timedelta(days=1), lambda: today() - timedelta(days=5), "ends"),
        (lambda: today() - timedelta(days=5), lambda: today() + timedelta(days=1), "ends in the future"),
        (lambda: today() - timedelta(days=3660), lambda: today(), "a report covers at most 3660"),
    ],
    ids=["reversed", "future", "too-long"],
)
def test_a_bad_period_exits_2_with_the_reason_and_makes_nothing(date_from, date_to, message, tmp_path):
    out = tmp_path / "report.pdf"

    with pytest.raises(CommandError, match=message) as raised:
        call_command("audit_report", "--from", str(date_from()), "--to", str(date_to()), "--out", str(out))

    assert raised.value.returncode == 2
    assert not out.exists()
    assert not Report.objects.exists()


def test_the_longest_period_allowed_is_accepted(tmp_path, settings):
    settings.REPORT_MAX_DAYS = 10
    out = tmp_path / "report.pdf"

    call_command(
        "audit_report", "--from", str(today() - timedelta(days=9)), "--to", str(today()), "--out", str(out)
    )

    assert out.exists()


def test_an_unknown_purpose_or_source_exits_2(tmp_path):
    with pytest.raises(CommandError, match="Unknown purpose carrier_pigeons") as raised:
        call_command(
            "audit_report", "--from", str(today() - timedelta(days=3)), "--to", str(today()),
            "--purpose", "carrier_pigeons", "--out", str(tmp_path / "r.pdf"),
        )  # fmt: skip
    assert raised.value.returncode == 2
    with pytest.raises(CommandError, match="Unknown source fax") as raised:
        call_command(
            "audit_report", "--from", str(today() - timedelta(days=3)), "--to", str(today()),
            "--source", "fax", "--out", str(tmp_path / "r.pdf"),
        )  # fmt: skip
    assert raised.value.returncode == 2


@pytest.mark.parametrize(
    "who", [["--email", "nobody@example.com"], ["--contact", "999999"], ["--email", "not an email"]]
)
def test_an_unknown_contact_exits_2(who, tmp_path, policy):
    with pytest.raises(CommandError) as raised:
        call_command("evidence_pack", *who, "--out", str(tmp_path / "pack.pdf"))

    assert raised.value.returncode == 2
    assert "No contact" in str(raised.value) or "not an email address" in str(raised.value)


def test_an_evidence_pack_by_email_holds_every_event_of_the_person(
    ledger_of, seal, tmp_path, signing_files, pdf_tools
):
    for purpose in ("sms_marketing", "profiling", "email_marketing"):
        ledger_of.record("ana@example.com", purpose, "opted_in", at=days_ago(5))
    ledger_of.record("ana@example.com", "sms_marketing", "opted_out", at=days_ago(2))
    ledger_of.record("ben@example.com", "sms_marketing", "opted_in", at=days_ago(2))
    seal()
    out = tmp_path / "pack.pdf"

    call_command("evidence_pack", "--email", "ANA@example.com", "--out", str(out))

    ana = Contact.objects.get(email="ana@example.com")
    rows = events_csv(attachments(out, tmp_path / "files"))
    assert [int(r["event_id"]) for r in rows] == list(ana.events.order_by("id").values_list("id", flat=True))
    assert pyhanko_says_valid(out, signing_files.ca)
    assert pdf_tools.pdfsig_valid(out)
    text = pdf_tools.run("pdftotext", "-layout", str(out), "-")
    assert "All 4 events recomputed and matched" in text
    assert text.count("recomputed: matches, chained") == 4
    assert "We use your data to send you offers you chose." in text  # the policy text cited


def test_an_evidence_pack_lists_the_newest_pushes_and_attaches_every_one(ledger_of, seal, tmp_path):
    from sync.models import SyncPush

    event = ledger_of.record("ana@example.com", "sms_marketing", "opted_in", at=days_ago(5))
    seal()
    for n in range(12):
        SyncPush.objects.create(
            contact_id=event.contact_id,
            zoho_id="5725767000000412001",
            sent={"SMS_Opt_In": n % 2 == 0},
            ledger_versions={"sms_marketing": 1},
            verification=SyncPush.Verification.VERIFIED,
            verified_at=event.recorded_at + timedelta(minutes=n + 1),
            readback={"SMS_Opt_In": n % 2 == 0},
        )
    out = tmp_path / "pack.pdf"

    call_command("evidence_pack", "--contact", str(event.contact_id), "--out", str(out))

    files = attachments(out, tmp_path / "files")
    pushes = list(csv.DictReader(io.StringIO(files["pushes.csv"].decode())))
    assert [int(p["push_id"]) for p in pushes] == list(
        SyncPush.objects.order_by("id").values_list("id", flat=True)
    )
    assert pushes[0]["sent"] == '{"SMS_Opt_In":true}' and pushes[0]["readback"] == '{"SMS_Opt_In":true}'
    assert manifest(files)["counts"]["pushes"] == 12
    assert set(manifest(files)["attachments"]) == {"events.csv", "pushes.csv"}
    text = subprocess.run(["pdftotext", str(out), "-"], capture_output=True, text=True, check=True).stdout
    assert "2 older pushes are not listed here" in " ".join(text.split())
    assert "pushes.csv" in text


def test_a_sample_is_reproducible_from_its_seed(ledger_of, seal, tmp_path, signing_files, pdf_tools):
    for n in range(12):
        ledger_of.record(f"p{n}@example.com", "sms_marketing", "opted_in", at=days_ago(5))
    seal()

    call_command("audit_sample", "--size", "4", "--seed", "audit-2026-Q4", "--out", str(tmp_path / "one.pdf"))
    call_command("audit_sample", "--size", "4", "--seed", "audit-2026-Q4", "--out", str(tmp_path / "two.pdf"))
    call_command(
        "audit_sample", "--size", "4", "--seed", "another seed", "--out", str(tmp_path / "three.pdf")
    )

    one = manifest(attachments(tmp_path / "one.pdf", tmp_path / "one"))
    two = manifest(attachments(tmp_path / "two.pdf", tmp_path / "two"))
    three = manifest(attachments(tmp_path / "three.pdf", tmp_path / "three"))
    assert one.pop("made")["report_id"] != two.pop("made")["report_id"]
    assert one == two
    assert len(one["counts"]["picked"]) == 4
    assert one["counts"]["picked"] != three["counts"]["picked"]
    assert one["scope"]["seed"] == "audit-2026-Q4"
    assert pyhanko_says_valid(tmp_path / "one.pdf", signing_files.ca)
    assert pdf_tools.pdfsig_valid(tmp_path / "one.pdf")
    text = pdf_tools.run("pdftotext", "-layout", str(tmp_path / "one.pdf"), "-")
    assert "audit-2026-Q4" in text and "random.Random(seed)" in text
    # Every page after the cover is headed with the kind of report, apostrophe and all.
    assert (
        text.count("Cast Ltd · Auditor's sample")
        == int(pdf_tools.run("pdfinfo", str(tmp_path / "one.pdf")).split("Pages:")[1].split()[0]) - 1
    )


def test_a_sample_size_out_of_range_exits_2(tmp_path, policy):
    with pytest.raises(CommandError, match="A sample holds from 1 to") as raised:
        call_command("audit_sample", "--size", "0", "--seed", "s", "--out", str(tmp_path / "s.pdf"))
    assert raised.value.returncode == 2
