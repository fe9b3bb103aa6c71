"""verify_report: the signature, the attachments and the report against the ledger today.

One changed byte makes pyHanko, poppler's pdfsig and verify_report all say invalid; an event
changed in the database behind its triggers after the report was made is named.
"""

from __future__ import annotations

import io
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from django.core.management import call_command

from compliance.models import ConsentEvent
from reports.verification import report_verify
from tests.reports.conftest import days_ago
from tests.reports.pdfcheck import pyhanko_says_valid

pytestmark = pytest.mark.django_db


@pytest.fixture
def report_pdf(ledger_of, seal, tmp_path):
    for n in range(4):
        ledger_of.record(f"p{n}@example.com", "sms_marketing", "opted_in", at=days_ago(10 - n))
        ledger_of.record(
            f"p{n}@example.com", "profiling", "opted_in", at=days_ago(9 - n), source="mobile_app"
        )
    ledger_of.record("p0@example.com", "sms_marketing", "opted_out", at=days_ago(3))
    seal()
    today = datetime.now(UTC).date()
    out = tmp_path / "report.pdf"
    call_command(
        "audit_report",
        "--from",
        (today - timedelta(days=20)).isoformat(),
        "--to",
        (today - timedelta(days=1)).isoformat(),
        "--out",
        str(out),
    )
    return out


def run_verify(path: Path, *extra: str) -> tuple[int, str]:
    """The command as a person runs it: its exit status and what it printed."""
    out = io.StringIO()
    try:
        call_command("verify_report", str(path), *extra, stdout=out, stderr=out)
    except SystemExit as exit_:
        return int(exit_.code or 0), out.getvalue()
    return 0, out.getvalue()


def test_an_untouched_report_passes_every_check(report_pdf):
    code, out = run_verify(report_pdf)

    assert code == 0, out
    assert "VALID: report" in out
    assert "FAILED" not in out


def test_it_validates_against_the_root_given_with_trust_and_fails_against_another(
    report_pdf, tmp_path, signing_files
):
    from reports.signing import demo_signing_create

    other = demo_signing_create(directory=tmp_path / "other", organisation="Someone else")

    assert run_verify(report_pdf, "--trust", str(signing_files.ca))[0] == 0
    code, out = run_verify(report_pdf, "--trust", str(other.ca))
    assert code == 8, out  # trust only
    assert "FAILED trust" in out


def changed_copies(pdf: Path, into: Path) -> list[Path]:
    """Copies of the PDF with one byte changed each: in the page content, the attachments, the
    signature dictionary, the catalog, the cross-reference data and the very last byte."""
    data = pdf.read_bytes()
    contents_at = data.index(b"/Contents <")
    positions = sorted(
        {
            len(data) // 10,
            len(data) // 3,
            len(data) // 2,
            contents_at - 40,
            data.index(b"/Type /Catalog") + 2 if b"/Type /Catalog" in data else len(data) // 4,
            data.index(b"/ByteRange") + 3,
            len(data) - 30,
            len(data) - 1,
        }
    )
    copies = []
    for position in positions:
        changed = bytearray(data)
        changed[position] = (changed[position] + 1) % 256 if changed[position] != 0x30 else 0x31
        path = into / f"changed-at-{position}.pdf"
        path.write_bytes(bytes(changed))
        copies.append(path)
    return copies


def test_one_changed_byte_anywhere_makes_all_three_say_invalid(
    report_pdf, tmp_path, pdf_tools, signing_files
):
    assert pyhanko_says_valid(report_pdf, signing_files.ca)
    assert pdf_tools.pdfsig_valid(report_pdf)

    for changed in changed_copies(report_pdf, tmp_path):
        assert not pyhanko_says_valid(changed, signing_files.ca), changed.name
        assert not pdf_tools.pdfsig_valid(changed), changed.name
        code, out = run_verify(changed)
        assert code not in (0, 2), (changed.name, out)
        assert "INVALID" in out


def test_a_changed_byte_inside_the_compressed_events_csv_gives_a_verdict_not_a_crash(report_pdf, tmp_path):
    """A byte changed in the embedded CSV's compressed stream leaves it undecodable: every
    check still runs, and the verdict names the signature and the attachments."""
    data = bytearray(report_pdf.read_bytes())
    csv_stream = data.index(b"/Subtype /text#2Fcsv")
    start = data.index(b"stream\n", csv_stream) + len(b"stream\n")
    data[start + 20] ^= 0xFF
    changed = tmp_path / "csv-stream.pdf"
    changed.write_bytes(bytes(data))

    code, out = run_verify(changed)

    assert code & 1 and code & 32, out  # the signature, the attachments
    assert code != 2 and "INVALID" in out
    assert "FAILED attachments" in out


def test_a_changed_byte_in_the_signatures_padding_is_caught_by_verify_report(report_pdf, tmp_path):
    """pdfsig and pyHanko ignore the zeros after the signature container (nothing signs them);
    verify_report does not."""
    data = bytearray(report_pdf.read_bytes())
    start = data.index(b"/Contents <") + len(b"/Contents <")
    end = data.index(b">", start)
    padding = data.rindex(b"00000000", start, end)
    data[padding] = ord("1")
    changed = tmp_path / "padding.pdf"
    changed.write_bytes(bytes(data))

    code, out = run_verify(changed)

    assert code & 4, out
    assert "padding" in out


def test_an_event_changed_behind_the_triggers_after_the_report_is_named(report_pdf, behind_the_triggers):
    events = list(ConsentEvent.objects.order_by("id"))
    edited, rehashed, deleted = events[1], events[4], events[-1]
    # An edit that leaves the stored hash (the chain check finds it), an edit with a hash
    # recomputed by someone who knows how (only the report's copy finds it), a deletion.
    behind_the_triggers(
        ("UPDATE compliance_consentevent SET ip_address = %s WHERE id = %s", ["192.0.2.99", edited.pk]),
        (
            "UPDATE compliance_consentevent SET status = %s, hash = %s WHERE id = %s",
            ["opted_out", "f" * 64, rehashed.pk],
        ),
        ("UPDATE compliance_outboxentry SET event_id = NULL WHERE event_id = %s", [deleted.pk]),
        ("UPDATE compliance_consentstate SET event_id = NULL WHERE event_id = %s", [deleted.pk]),
        ("DELETE FROM compliance_consentevent WHERE id = %s", [deleted.pk]),
    )

    code, out = run_verify(report_pdf)

    assert code == 128, out  # the signature and the file are fine: the ledger is not
    # (From hash version 2 on the event's own ip_address is empty: its value is kept apart.)
    assert f"event {edited.pk} changed: ip_address '' → '192.0.2.99'" in out
    assert f"event {rehashed.pk} changed: status 'opted_in' → 'opted_out', hash" in out
    assert f"event {deleted.pk} is no longer in the ledger (deleted)" in out
    assert "3 of the 9 events in events.csv changed" in out
    untouched = [e.pk for e in events if e.pk not in (edited.pk, rehashed.pk, deleted.pk)]
    for pk in untouched:
        assert f"event {pk} " not in out


def test_a_seal_rewritten_in_the_database_fails_the_ledger_check(report_pdf, behind_the_triggers):
    behind_the_triggers(("UPDATE compliance_seal SET hash = %s WHERE sequence = 1", ["e" * 64]))

    code, out = run_verify(report_pdf)

    assert code == 128, out
    assert "no longer in the seal chain" in out


def test_a_seal_log_that_lost_the_seal_fails_the_ledger_check(report_pdf, settings):
    settings.LEDGER_SEAL_LOG.write_text("")

    code, out = run_verify(report_pdf)

    assert code == 128, out
    assert "is not in the seal log" in out


def test_a_report_unknown_here_fails_the_report_check(report_pdf):
    from reports.models import Report

    Report.objects.all().delete()

    code, out = run_verify(report_pdf)

    assert code == 64, out
    assert "is not known to this Consent Desk" in out


@pytest.mark.parametrize(
    "content, message",
    [(b"hello, not a pdf", "this file is not a PDF"), (b"", "this file is not a PDF")],
)
def test_bad_input_exits_2_with_the_reason(tmp_path, content, message):
    path = tmp_path / "upload.pdf"
    path.write_bytes(content)

    code, out = run_verify(path)

    assert code == 2
    assert message in out


def test_a_missing_file_exits_2(tmp_path):
    code, out = run_verify(tmp_path / "nowhere.pdf")

    assert code == 2
    assert "cannot read" in out


def test_an_unsigned_pdf_fails_the_signature_checks(tmp_path, report_pdf):
    import weasyprint

    unsigned = tmp_path / "unsigned.pdf"
    weasyprint.HTML(string="<p>not a report</p>").write_pdf(unsigned)

    verdict = report_verify(unsigned)

    assert not verdict.ok
    assert {c.key for c in verdict.failed} >= {
        "signature",
        "coverage",
        "trust",
        "signing_time",
        "attachments",
        "report",
    }
    assert verdict.exit_code & 1


def test_a_report_made_before_an_erasure_still_verifies_and_says_erased_since(report_pdf):
    from compliance import services
    from compliance.models import Contact, ErasureRequest

    erased = Contact.objects.get(email="p1@example.com")
    services.erasure_request(contact=erased, channel=ErasureRequest.Channel.API, reason="ticket 7")
    ids = list(
        ConsentEvent.objects.filter(contact=erased, occurred_at__lt=days_ago(1)).values_list("id", flat=True)
    )

    code, out = run_verify(report_pdf)

    assert code == 0, out  # the person is gone, the proof is not
    assert "Erased since (the events still verify):" in out
    for pk in ids:
        assert f"event {pk}: personal data erased since (" in out
    assert "changed" not in out.split("Erased since")[1]
    assert f"the personal data of {len(ids)} was erased since the report was made" in out
