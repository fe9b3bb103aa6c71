"""Key material from the environment, the demo CA, B-T with a time-stamping authority, and never an
unsigned PDF."""

from __future__ import annotations

import threading
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, HTTPServer
from pathlib import Path

import pytest
from django.core.management import CommandError, call_command

from reports.models import Report
from reports.verification import report_verify
from tests.reports.conftest import days_ago
from tests.reports.pdfcheck import pyhanko_says_valid, pyhanko_status

pytestmark = pytest.mark.django_db


def today():
    return datetime.now(UTC).date()


def audit_report(out: Path) -> None:
    call_command(
        "audit_report", "--from", str(today() - timedelta(days=7)), "--to", str(today()), "--out", str(out)
    )


@pytest.fixture
def one_event(ledger_of, seal):
    ledger_of.record("ana@example.com", "sms_marketing", "opted_in", at=days_ago(2))
    seal()


def no_key(settings):
    settings.REPORT_SIGNING_KEY = settings.REPORT_SIGNING_CERT = settings.REPORT_SIGNING_CHAIN = ""


def test_without_any_key_no_report_is_made_and_the_error_says_what_to_do(one_event, settings, tmp_path):
    no_key(settings)
    out = tmp_path / "report.pdf"

    with pytest.raises(CommandError, match="No report signing key is configured") as raised:
        audit_report(out)

    assert raised.value.returncode == 1
    assert not out.exists()
    report = Report.objects.get()
    assert report.status == Report.Status.FAILED
    assert "REPORT_SIGNING_KEY" in report.error and "create_signing_cert" in report.error
    assert not report.file


@pytest.mark.parametrize(
    "setting, value, message",
    [
        ("REPORT_SIGNING_KEY", "/nowhere/key.pem", "REPORT_SIGNING_KEY: cannot read /nowhere/key.pem"),
        (
            "REPORT_SIGNING_CERT",
            "-----BEGIN CERTIFICATE-----\nnot base64\n-----END CERTIFICATE-----\n",
            "REPORT_SIGNING_CERT holds no readable certificate",
        ),
        ("REPORT_SIGNING_CERT", "", "REPORT_SIGNING_CERT is not set"),
    ],
)
def test_unreadable_key_material_names_the_setting(one_event, settings, tmp_path, setting, value, message):
    setattr(settings, setting, value)

    with pytest.raises(CommandError, match=message):
        audit_report(tmp_path / "report.pdf")

    assert not (tmp_path / "report.pdf").exists()


def test_a_key_that_is_not_the_certificates_is_refused(one_event, settings, tmp_path):
    from reports.signing import demo_signing_create

    other = demo_signing_create(directory=tmp_path / "other", organisation="Other")
    settings.REPORT_SIGNING_KEY = str(other.key)

    with pytest.raises(CommandError, match="does not belong to the certificate"):
        audit_report(tmp_path / "report.pdf")


def test_pem_text_in_the_environment_signs_as_well_as_a_path(one_event, settings, tmp_path, signing_files):
    settings.REPORT_SIGNING_KEY = signing_files.key.read_text()
    settings.REPORT_SIGNING_CERT = signing_files.certificate.read_text()
    settings.REPORT_SIGNING_CHAIN = signing_files.ca.read_text()

    audit_report(tmp_path / "report.pdf")

    assert pyhanko_says_valid(tmp_path / "report.pdf", signing_files.ca)


def test_a_pkcs12_file_with_its_password_signs(one_event, settings, tmp_path, signing_files):
    from cryptography import x509
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.serialization import pkcs12

    key = serialization.load_pem_private_key(signing_files.key.read_bytes(), password=None)
    bundle = pkcs12.serialize_key_and_certificates(
        b"report-signer",
        key,  # type: ignore[arg-type]
        x509.load_pem_x509_certificate(signing_files.certificate.read_bytes()),
        [x509.load_pem_x509_certificate(signing_files.ca.read_bytes())],
        serialization.BestAvailableEncryption(b"p12-secret"),
    )
    (tmp_path / "signer.p12").write_bytes(bundle)
    no_key(settings)
    settings.REPORT_SIGNING_P12 = str(tmp_path / "signer.p12")
    settings.REPORT_SIGNING_P12_PASSWORD = "wrong"

    with pytest.raises(CommandError, match="cannot open the PKCS#12 file"):
        audit_report(tmp_path / "refused.pdf")

    settings.REPORT_SIGNING_P12_PASSWORD = "p12-secret"
    settings.REPORT_TRUST_ROOTS = str(signing_files.ca)
    audit_report(tmp_path / "report.pdf")
    assert pyhanko_says_valid(tmp_path / "report.pdf", signing_files.ca)
    assert report_verify(tmp_path / "report.pdf").ok


def test_create_signing_cert_makes_a_labelled_demo_ca_that_then_signs(
    one_event, settings, tmp_path, capsys, pdf_tools
):
    from cryptography import x509

    no_key(settings)
    settings.REPORT_DEMO_SIGNING_DIR = tmp_path / "signing"

    call_command("create_signing_cert")
    printed = capsys.readouterr().out
    ca_pem = (tmp_path / "signing" / "demo-ca.pem").read_bytes()
    call_command("create_signing_cert")  # kept, not replaced
    assert (tmp_path / "signing" / "demo-ca.pem").read_bytes() == ca_pem
    call_command("create_signing_cert", "--force")
    assert (tmp_path / "signing" / "demo-ca.pem").read_bytes() != ca_pem

    assert "FOR DEMOS ONLY" in printed
    ca = x509.load_pem_x509_certificate((tmp_path / "signing" / "demo-ca.pem").read_bytes())
    signer = x509.load_pem_x509_certificate((tmp_path / "signing" / "demo-signing-cert.pem").read_bytes())
    from cryptography.x509.oid import NameOID

    for certificate in (ca, signer):
        (common_name,) = certificate.subject.get_attributes_for_oid(NameOID.COMMON_NAME)
        assert "(DEMO, NOT FOR PRODUCTION)" in str(common_name.value)
    assert (tmp_path / "signing" / "demo-signing-key.pem").stat().st_mode & 0o077 == 0
    out = tmp_path / "report.pdf"
    audit_report(out)
    assert pyhanko_says_valid(out, tmp_path / "signing" / "demo-ca.pem")
    assert report_verify(out).ok  # the demo CA is the pinned root by default
    assert "Signed with the DEMO certificate authority" in pdf_tools.run("pdftotext", str(out), "-")


class TimeStampingAuthority:
    """An RFC 3161 server on loopback, answering with pyHanko's test TSA (its own certificate)."""

    def __init__(self, tmp_path: Path) -> None:
        from asn1crypto import keys as asn1_keys
        from asn1crypto import x509 as asn1_x509
        from cryptography import x509
        from cryptography.hazmat.primitives import hashes, serialization
        from cryptography.hazmat.primitives.asymmetric import rsa
        from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID
        from pyhanko.sign.timestamps.dummy_client import DummyTimeStamper

        key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "Cast test TSA")])
        now = datetime.now(UTC)
        certificate = (
            x509.CertificateBuilder()
            .subject_name(name)
            .issuer_name(name)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - timedelta(days=1))
            .not_valid_after(now + timedelta(days=30))
            .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.TIME_STAMPING]), critical=True)
            .sign(key, hashes.SHA256())
        )
        stamper = DummyTimeStamper(
            tsa_cert=asn1_x509.Certificate.load(certificate.public_bytes(serialization.Encoding.DER)),
            tsa_key=asn1_keys.PrivateKeyInfo.load(
                key.private_bytes(
                    serialization.Encoding.DER,
                    serialization.PrivateFormat.PKCS8,
                    serialization.NoEncryption(),
                )
            ),
        )
        self.certificate = tmp_path / "tsa.pem"
        self.certificate.write_bytes(certificate.public_bytes(serialization.Encoding.PEM))
        self.requests = 0
        authority = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                from asn1crypto import tsp

                body = self.rfile.read(int(self.headers["Content-Length"]))
                answer = stamper.request_tsa_response(tsp.TimeStampReq.load(body)).dump()
                authority.requests += 1
                self.send_response(200)
                self.send_header("Content-Type", "application/timestamp-reply")
                self.send_header("Content-Length", str(len(answer)))
                self.end_headers()
                self.wfile.write(answer)

            def log_message(self, *args: object) -> None:
                pass

        self.server = HTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_port}/tsa"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def tsa(tmp_path):
    authority = TimeStampingAuthority(tmp_path)
    yield authority
    authority.stop()


def test_with_a_tsa_the_signature_is_pades_b_t(one_event, settings, tmp_path, tsa, signing_files, pdf_tools):
    settings.REPORT_TSA_URL = tsa.url
    out = tmp_path / "report.pdf"

    audit_report(out)

    assert tsa.requests >= 1
    # An auditor pins the TSA's root too, to trust the time as well as the signer.
    status, _ = pyhanko_status(out, signing_files.ca, tsa.certificate)
    assert status.timestamp_validity is not None
    assert status.timestamp_validity.intact and status.timestamp_validity.valid
    assert status.timestamp_validity.trusted
    assert status.bottom_line
    assert pdf_tools.pdfsig_valid(out)
    verdict = report_verify(out)
    assert verdict.ok, verdict.summary()
    assert any(
        "timestamped by a TSA" in d
        for d in next(c for c in verdict.checks if c.key == "signing_time").details
    )


def test_a_tsa_that_does_not_answer_leaves_no_unsigned_report(one_event, settings, tmp_path):
    settings.REPORT_TSA_URL = "http://127.0.0.1:9/tsa"  # discard port: nothing listens
    settings.REPORT_TSA_TIMEOUT_S = 2
    out = tmp_path / "report.pdf"

    with pytest.raises(CommandError):
        audit_report(out)

    assert not out.exists()
    report = Report.objects.get()
    assert report.status == Report.Status.FAILED and not report.file
