"""The period audit report: a signed PDF/A-3b whose events.csv holds exactly the events in scope."""

from __future__ import annotations

import hashlib
import re
from datetime import UTC, date, datetime, time, timedelta
from pathlib import Path

import pytest
from django.core.management import call_command

from compliance.models import ConsentEvent
from reports.models import Report
from tests.reports.conftest import days_ago
from tests.reports.pdfcheck import attachments, events_csv, manifest, pyhanko_status

pytestmark = pytest.mark.django_db


def midnight(day: date) -> datetime:
    return datetime.combine(day, time.min, tzinfo=UTC)


@pytest.fixture
def period():
    """From 30 days ago to 2 days ago, both days included."""
    today = datetime.now(UTC).date()
    return today - timedelta(days=30), today - timedelta(days=2)


@pytest.fixture
def mixed_ledger(ledger_of, seal, period):
    """Events inside the period (at its very first instant too), before it, after it (at the
    instant it ends), of every kind of purpose and source."""
    first, last = period
    start, end = midnight(first), midnight(last + timedelta(days=1))
    ledger_of.record("ana@example.com", "sms_marketing", "opted_in", at=start)  # first instant: in
    ledger_of.record(
        "ana@example.com", "sms_marketing", "opted_out", at=start + timedelta(days=3), source="mobile_app"
    )
    ledger_of.record(
        "ben@example.com", "profiling", "opted_in", at=start + timedelta(days=5), source="customer_service"
    )
    ledger_of.record("ben@example.com", "email_marketing", "opted_in", at=start + timedelta(days=6))
    ledger_of.record(
        "ben@example.com", "email_marketing", "opted_out", at=start + timedelta(days=7), source="email_link"
    )
    ledger_of.record(
        "cleo@example.com", "sms_marketing", "opted_in", at=start - timedelta(microseconds=1)
    )  # before
    ledger_of.record("cleo@example.com", "sms_marketing", "opted_out", at=end)  # the instant after: out
    ledger_of.record(
        "dan@example.com", "phone_marketing", "opted_in", at=end - timedelta(microseconds=1), ip=None
    )
    seal()
    return start, end


def in_scope(start, end, *, purposes=(), sources=()):
    """The events a period covers, found here without the report's own code."""
    ids = []
    for event in ConsentEvent.objects.select_related("purpose").order_by("id"):
        if not start <= event.occurred_at < end:
            continue
        if purposes and event.purpose.code not in purposes:
            continue
        if sources and event.source not in sources:
            continue
        ids.append(event.id)
    return ids


def make_period_report(
    tmp_path: Path, first: date, last: date, *extra: str, name: str = "period.pdf"
) -> Path:
    out = tmp_path / name
    call_command(
        "audit_report", "--from", first.isoformat(), "--to", last.isoformat(), *extra, "--out", str(out)
    )
    return out


def test_the_csv_holds_exactly_the_events_in_scope(mixed_ledger, period, tmp_path):
    start, end = mixed_ledger
    pdf = make_period_report(tmp_path, *period)

    rows = events_csv(attachments(pdf, tmp_path / "files"))

    assert [int(r["event_id"]) for r in rows] == in_scope(start, end)
    assert len(rows) == 6


def test_purpose_and_source_narrow_the_csv(mixed_ledger, period, tmp_path):
    start, end = mixed_ledger
    pdf = make_period_report(
        tmp_path,
        *period,
        "--purpose",
        "sms_marketing",
        "--purpose",
        "email_marketing",
        "--source",
        "web_portal",
    )

    rows = events_csv(attachments(pdf, tmp_path / "files"))

    expected = in_scope(start, end, purposes=("sms_marketing", "email_marketing"), sources=("web_portal",))
    assert [int(r["event_id"]) for r in rows] == expected
    assert {(r["purpose"], r["source"]) for r in rows} == {
        ("sms_marketing", "web_portal"),
        ("email_marketing", "web_portal"),
    }


def _docs_recipe() -> str:
    """The Python block of docs/reports.md under "Each event's hash"."""
    text = (Path(__file__).resolve().parents[2] / "docs" / "reports.md").read_text()
    section = text[text.index("**Each event's hash**") :]
    return section[section.index("```python\n") + len("```python\n") : section.index("\n```\n")]


def test_anyone_can_recompute_each_hash_from_the_csv_alone(mixed_ledger, period, tmp_path, monkeypatch):
    """docs/reports.md's recipe, run as written against the report's events.csv: every row's
    hash recomputed from its fields alone."""
    pdf = make_period_report(tmp_path, *period)
    files = tmp_path / "files"
    rows = events_csv(attachments(pdf, files))
    assert rows and {row["hash_version"] for row in rows} == {"4"}
    recipe = compile(_docs_recipe(), "docs/reports.md", "exec")
    monkeypatch.chdir(files)
    exec(recipe, {})  # the documentation's own code

    # and it fails on a row whose field was changed
    text = (files / "events.csv").read_text(encoding="utf-8")
    (files / "events.csv").write_text(text.replace("opted_out", "opted_in", 1), encoding="utf-8")
    with pytest.raises(AssertionError):
        exec(recipe, {})


def test_the_manifest_holds_the_sha256_of_each_attachment_the_scope_and_the_seal(
    mixed_ledger, period, tmp_path
):
    pdf = make_period_report(tmp_path, *period)
    files = attachments(pdf, tmp_path / "files")
    data = manifest(files)

    assert set(files) == {"events.csv", "withdrawals.csv", "manifest.json"}
    for name in ("events.csv", "withdrawals.csv"):
        assert data["attachments"][name]["sha256"] == hashlib.sha256(files[name]).hexdigest()
    assert data["scope"] == {
        "from": period[0].isoformat(),
        "to": period[1].isoformat(),
        "purposes": [],
        "sources": [],
    }
    assert data["counts"]["events"] == 6
    report = Report.objects.get()
    assert data["seal"]["hash"] == report.seal_hash
    assert data["seal"]["covers_scope"] is True
    assert [c["name"] for c in data["events_csv_columns"]][-5:] == [
        "prev_hash",
        "hash",
        "hash_version",
        "personal_hash",
        "personal",
    ]


def test_the_same_scope_made_again_gives_identical_attachments(
    mixed_ledger, period, tmp_path, ledger_of, seal
):
    first = attachments(make_period_report(tmp_path, *period, name="one.pdf"), tmp_path / "one")
    # The ledger changes, but not within the scope: an event today, and a new seal over it.
    ledger_of.record("eve@example.com", "profiling", "opted_in", at=days_ago(0.01))
    seal()

    second = attachments(make_period_report(tmp_path, *period, name="two.pdf"), tmp_path / "two")

    assert set(first) == set(second) == {"events.csv", "withdrawals.csv", "manifest.json"}
    assert first["events.csv"] == second["events.csv"]
    assert first["withdrawals.csv"] == second["withdrawals.csv"]
    # The manifests differ only in which report it is and when it was made.
    made = [manifest(files).pop("made") for files in (first, second)]
    kept = [{k: v for k, v in manifest(files).items() if k != "made"} for files in (first, second)]
    assert kept[0] == kept[1]
    reports = list(Report.objects.order_by("created_at"))[-2:]
    assert [m["report_id"] for m in made] == [str(r.id) for r in reports]
    for entry, report in zip(made, reports, strict=True):
        at = datetime.fromisoformat(entry["at"])
        assert at.utcoffset() == timedelta(0)
        assert report.created_at.replace(microsecond=0) <= at <= report.created_at + timedelta(minutes=1)


def test_the_report_is_signed_certified_pdfa3b_on_a4_with_embedded_fonts(
    mixed_ledger, period, tmp_path, pdf_tools, signing_files
):
    pdf = make_period_report(tmp_path, *period)

    status, docmdp = pyhanko_status(pdf, signing_files.ca)
    assert status.bottom_line and status.trusted and status.intact and status.valid
    assert status.coverage.name == "ENTIRE_FILE"
    assert docmdp.name == "NO_CHANGES"
    assert pdf_tools.pdfsig_valid(pdf), pdf_tools.pdfsig(pdf)
    fonts = pdf_tools.run("pdffonts", str(pdf)).splitlines()[2:]
    assert fonts and all(line.split()[-5] == "yes" for line in fonts), fonts  # the "emb" column
    info = pdf_tools.run("pdfinfo", str(pdf))
    assert "595.276 x 841.89 pts (A4)" in info
    assert re.search(r"PDF version:\s+1\.7\n", info)
    xmp = pdf_tools.run("pdfinfo", "-meta", str(pdf))
    assert re.search(r"pdfaid:part[>=\"']+3", xmp) and re.search(r"pdfaid:conformance[>=\"']+B", xmp)
    # PDF/A: the Info dictionary and the XMP metadata say the same.
    producer = re.search(r"Producer:\s+(.+)", info).group(1)
    assert f'pdf:Producer="{producer}"' in xmp
    # PDF/A-3: each embedded file names its MIME type (the name /text/csv, written /text#2Fcsv).
    from pyhanko.pdf_utils.reader import PdfFileReader

    from reports.pdf import embedded_files

    with pdf.open("rb") as handle:
        subtypes = {
            name: str(file.stream["/Subtype"]) for name, file in embedded_files(PdfFileReader(handle)).items()
        }
    assert subtypes == {
        "events.csv": "/text/csv",
        "withdrawals.csv": "/text/csv",
        "manifest.json": "/application/json",
    }


def test_the_pages_say_page_x_of_y_and_the_cover_names_scope_id_and_maker(
    mixed_ledger, period, tmp_path, pdf_tools
):
    pdf = make_period_report(tmp_path, *period)
    report = Report.objects.get()

    text = pdf_tools.run("pdftotext", "-layout", str(pdf), "-")
    pages = int(re.search(r"Pages:\s+(\d+)", pdf_tools.run("pdfinfo", str(pdf))).group(1))

    for number in range(1, pages + 1):
        assert f"page {number} of {pages}" in text
    cover = text.split("\f")[0]
    assert "Cast Ltd" in cover
    assert str(report.id) in cover
    assert "manage.py audit_report" in cover
    assert f"from {period[0]} to {period[1]}" in cover
    assert "Digitally signed and certified" in cover  # the visible signature block


def test_withdrawals_are_timed_to_their_confirmation_and_the_slow_ones_listed(
    ledger_of, seal, tmp_path, pdf_tools
):
    """One withdrawal confirmed by read-back an hour after it was recorded; one never confirmed,
    recorded three weeks ago: past the ten business days, so overdue and listed."""
    import time_machine

    from sync.models import SyncPush

    opted_in, opted_out = days_ago(22.1), days_ago(22.01)
    with time_machine.travel(days_ago(22), tick=False):  # recorded then, not now
        ledger_of.record("ana@example.com", "sms_marketing", "opted_in", at=opted_in)
        fast = ledger_of.record("ana@example.com", "sms_marketing", "opted_out", at=opted_out)
        ledger_of.record("ben@example.com", "sms_marketing", "opted_in", at=opted_in)
        slow = ledger_of.record("ben@example.com", "sms_marketing", "opted_out", at=opted_out)
    SyncPush.objects.create(
        contact_id=fast.contact_id,
        zoho_id="5725767000000412001",
        sent={"SMS_Opt_In": False},
        ledger_versions={"sms_marketing": fast.version},
        verification=SyncPush.Verification.VERIFIED,
        verified_at=fast.recorded_at + timedelta(hours=1),
    )
    today = datetime.now(UTC).date()
    pdf = make_period_report(tmp_path, today - timedelta(days=30), today - timedelta(days=1))

    rows = attachments(pdf, tmp_path / "files")["withdrawals.csv"].decode().splitlines()
    outcomes = {int(line.split(",")[0]): line.split(",")[-1] for line in rows[1:]}
    assert outcomes == {fast.pk: "in time", slow.pk: "overdue"}
    text = pdf_tools.run("pdftotext", "-layout", str(pdf), "-")
    # Steps timed from when it was recorded: median, 95th percentile and maximum of each.
    assert re.search(r"Recorded → verified in Zoho CRM \(read-back\)\s+1\s+1\.0 h\s+1\.0 h\s+1\.0 h", text)
    assert re.search(
        r"Recorded → unsubscribed in every Campaigns list\s+0\s+—\s+—\s+—\s+\(none configured\)", text
    )
    assert re.search(r"Recorded → in effect everywhere\s+1\s+1\.0 h\s+1\.0 h\s+1\.0 h", text)
    assert "Withdrawals slower than 10 business days (1)" in text
    slow_table = text.split("Withdrawals slower than 10 business days (1)")[1]
    assert re.search(rf"\b{slow.pk}\s+{slow.contact_id}\s+sms_marketing\b.*overdue", slow_table)
