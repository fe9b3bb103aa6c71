"""The report signing key, the roots that verification pins, PAdES signing, and the demo CA.

Key material comes from the environment (config/settings.py, REPORT_SIGNING_*): a PEM key,
certificate and chain, or a PKCS#12 file. With none configured, the demo's CA and signing
certificate under REPORT_DEMO_SIGNING_DIR (made by `manage.py create_signing_cert`) sign, and
say so in their names. Missing or unreadable key material raises `SigningUnavailable` with a
message that says what to fix: a report is never produced unsigned.

Every signature is a certification signature (DocMDP: no changes allowed), PAdES baseline
B-B, or B-T with a timestamp when REPORT_TSA_URL is set, with a visible block on the cover.
Keep RSA keys for PDF/A-3: pyHanko marks a document signed with an ECDSA key as PDF 2.0.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, BinaryIO

from asn1crypto import x509 as asn1_x509
from django.conf import settings

# The cover leaves this rectangle empty for the visible signature (PDF points, A4, origin
# bottom left); templates/reports/pdf_base.html draws the cover around it.
SIGNATURE_BOX = (51, 57, 544, 150)
SIGNATURE_FIELD = "ConsentDeskSignature"
# A CFF font with 1000 units per em: pyHanko 0.38 writes a TrueType font's glyph widths in the
# font's own units (DejaVu's 2048), which spreads the letters out and breaks PDF/A's width check.
STAMP_FONT = Path("/usr/share/fonts/opentype/freefont/FreeSans.otf")  # Debian fonts-freefont-otf
STAMP_FONT_SIZE = 9
DEMO_CA = "demo-ca.pem"
DEMO_CERT = "demo-signing-cert.pem"
DEMO_KEY = "demo-signing-key.pem"
DEMO_LABEL = "DEMO, NOT FOR PRODUCTION"


class SigningUnavailable(Exception):
    """No usable signing key: the message says which setting or file is at fault."""


@dataclass(frozen=True)
class SigningKey:
    signer: Any  # pyhanko SimpleSigner
    certificate: asn1_x509.Certificate
    chain: tuple[asn1_x509.Certificate, ...]
    source: str
    demo: bool

    @property
    def subject(self) -> str:
        return str(
            self.certificate.subject.native.get("common_name", self.certificate.subject.human_friendly)
        )


def _pem_or_file(setting: str, value: str) -> bytes:
    """A setting holding PEM text itself, or the path of a file holding it."""
    if value.lstrip().startswith("-----BEGIN"):
        return value.encode()
    try:
        return Path(value).read_bytes()
    except OSError as exc:
        raise SigningUnavailable(f"{setting}: cannot read {value}: {exc.strerror or exc}") from exc


def _certificates(setting: str, data: bytes) -> list[asn1_x509.Certificate]:
    from pyhanko.keys import load_certs_from_pemder_data

    try:
        certificates = list(load_certs_from_pemder_data(data))
    except Exception as exc:  # asn1crypto raises several kinds for bad input
        raise SigningUnavailable(f"{setting} holds no readable certificate: {exc}") from exc
    if not certificates:
        raise SigningUnavailable(f"{setting} holds no certificate")
    return certificates


def _password(value: str) -> bytes | None:
    return value.encode() if value else None


_loaded: dict[tuple[object, ...], SigningKey] = {}


def _cache_key() -> tuple[object, ...]:
    """The settings that choose the key, and the files they name as they are now."""
    values = (
        settings.REPORT_SIGNING_KEY,
        settings.REPORT_SIGNING_KEY_PASSWORD,
        settings.REPORT_SIGNING_CERT,
        settings.REPORT_SIGNING_CHAIN,
        settings.REPORT_SIGNING_P12,
        settings.REPORT_SIGNING_P12_PASSWORD,
        str(settings.REPORT_DEMO_SIGNING_DIR),
    )
    demo = Path(settings.REPORT_DEMO_SIGNING_DIR)
    paths = [v for v in values[:6] if v and not str(v).lstrip().startswith("-----BEGIN")]
    paths += [str(demo / name) for name in (DEMO_KEY, DEMO_CERT, DEMO_CA)]
    stamps = tuple(os.stat(p).st_mtime_ns if os.path.exists(p) else None for p in paths)
    return (*values, stamps)


def signing_key_load() -> SigningKey:
    """The configured signing key (SigningUnavailable when there is none or it cannot be used).

    Loaded once per process while its settings and files stay the same: checking an RSA key as
    it is loaded takes a noticeable part of a second, every report would pay it again."""
    cache_key = _cache_key()
    key = _loaded.get(cache_key)
    if key is None:
        key = _signing_key_read()
        _loaded.clear()
        _loaded[cache_key] = key
    _check_validity(key.certificate, key.source)
    return key


def _signer_class() -> Any:
    from pyhanko.sign import signers

    class LoadedKeySigner(signers.SimpleSigner):  # type: ignore[misc]
        """pyHanko's SimpleSigner parses its private key again on every signature (`sign_raw`),
        and cryptography checks an RSA key as it parses it: a tenth of a second of CPU a report,
        a twelfth of an evidence pack. This one parses it once, with the key."""

        _private: Any = None

        def sign_raw(self, data: bytes, digest_algorithm: str) -> bytes:
            from cryptography.hazmat.primitives import serialization
            from cryptography.hazmat.primitives.asymmetric.padding import PKCS1v15
            from cryptography.hazmat.primitives.asymmetric.rsa import RSAPrivateKey
            from pyhanko_certvalidator.util import get_pyca_cryptography_hash

            mechanism = self.get_signature_mechanism_for_digest(digest_algorithm)
            try:
                algorithm = mechanism.signature_algo
            except ValueError:
                algorithm = mechanism["algorithm"].native
            if algorithm != "rsassa_pkcs1v15":
                return bytes(super().sign_raw(data, digest_algorithm))
            if self._private is None:
                self._private = serialization.load_der_private_key(self.signing_key.dump(), password=None)
            assert isinstance(self._private, RSAPrivateKey)
            return self._private.sign(data, PKCS1v15(), get_pyca_cryptography_hash(digest_algorithm))

    return LoadedKeySigner


def _signing_key_read() -> SigningKey:
    from asn1crypto import keys as asn1_keys
    from cryptography.hazmat.primitives import serialization
    from pyhanko_certvalidator.registry import SimpleCertificateStore

    demo = False
    if settings.REPORT_SIGNING_P12:
        try:
            data = Path(settings.REPORT_SIGNING_P12).read_bytes()
        except OSError as exc:
            raise SigningUnavailable(
                f"REPORT_SIGNING_P12: cannot read {settings.REPORT_SIGNING_P12}: {exc.strerror or exc}"
            ) from exc
        extra = (
            _certificates(
                "REPORT_SIGNING_CHAIN", _pem_or_file("REPORT_SIGNING_CHAIN", settings.REPORT_SIGNING_CHAIN)
            )
            if settings.REPORT_SIGNING_CHAIN
            else []
        )
        try:
            signer = _signer_class().load_pkcs12_data(
                data, other_certs=extra, passphrase=_password(settings.REPORT_SIGNING_P12_PASSWORD)
            )
        except ValueError as exc:
            raise SigningUnavailable(
                f"REPORT_SIGNING_P12: cannot open the PKCS#12 file (wrong REPORT_SIGNING_P12_PASSWORD?): {exc}"
            ) from exc
        certificate = signer.signing_cert
        chain = tuple(c for c in signer.cert_registry if c.dump() != certificate.dump())
        source = "REPORT_SIGNING_P12"
    else:
        if settings.REPORT_SIGNING_KEY or settings.REPORT_SIGNING_CERT:
            if not (settings.REPORT_SIGNING_KEY and settings.REPORT_SIGNING_CERT):
                missing = "REPORT_SIGNING_CERT" if settings.REPORT_SIGNING_KEY else "REPORT_SIGNING_KEY"
                raise SigningUnavailable(f"{missing} is not set: the key and its certificate go together")
            key_value, cert_value, chain_value = (
                settings.REPORT_SIGNING_KEY,
                settings.REPORT_SIGNING_CERT,
                settings.REPORT_SIGNING_CHAIN,
            )
            source = "REPORT_SIGNING_KEY"
        else:
            directory = Path(settings.REPORT_DEMO_SIGNING_DIR)
            if not (directory / DEMO_KEY).exists():
                raise SigningUnavailable(
                    "No report signing key is configured: set REPORT_SIGNING_KEY and REPORT_SIGNING_CERT "
                    "(or REPORT_SIGNING_P12), or make the demo CA with `manage.py create_signing_cert` "
                    f"(it writes {directory})"
                )
            key_value, cert_value, chain_value = (
                str(directory / DEMO_KEY),
                str(directory / DEMO_CERT),
                str(directory / DEMO_CA),
            )
            source = f"the demo CA in {directory}"
            demo = True
        key_data = _pem_or_file("REPORT_SIGNING_KEY", key_value)
        certificate = _certificates("REPORT_SIGNING_CERT", _pem_or_file("REPORT_SIGNING_CERT", cert_value))[0]
        chain = (
            tuple(_certificates("REPORT_SIGNING_CHAIN", _pem_or_file("REPORT_SIGNING_CHAIN", chain_value)))
            if chain_value
            else ()
        )
        load = (
            serialization.load_pem_private_key
            if b"-----BEGIN" in key_data
            else serialization.load_der_private_key
        )
        try:
            private = load(key_data, password=_password(settings.REPORT_SIGNING_KEY_PASSWORD))
        except (ValueError, TypeError) as exc:
            raise SigningUnavailable(
                f"REPORT_SIGNING_KEY is not a readable private key (or REPORT_SIGNING_KEY_PASSWORD is wrong): {exc}"
            ) from exc
        public = private.public_key().public_bytes(
            serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
        )
        if public != certificate.public_key.dump():
            raise SigningUnavailable(
                "REPORT_SIGNING_KEY does not belong to the certificate in REPORT_SIGNING_CERT"
            )
        key = asn1_keys.PrivateKeyInfo.load(
            private.private_bytes(
                serialization.Encoding.DER, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
            )
        )
        signer = _signer_class()(
            signing_cert=certificate,
            signing_key=key,
            cert_registry=SimpleCertificateStore.from_certs([certificate, *chain]),
        )
    return SigningKey(signer=signer, certificate=certificate, chain=chain, source=source, demo=demo)


def _check_validity(certificate: asn1_x509.Certificate, source: str) -> None:
    now = datetime.now(UTC)
    validity = certificate["tbs_certificate"]["validity"]
    not_before, not_after = validity["not_before"].native, validity["not_after"].native
    if not not_before <= now <= not_after:
        raise SigningUnavailable(
            f"the signing certificate ({source}) is valid from {not_before:%Y-%m-%d} to {not_after:%Y-%m-%d} only"
        )


def _self_signed(certificate: asn1_x509.Certificate) -> bool:
    return certificate.self_signed in ("maybe", "yes")


def trust_roots_load(explicit: str | None = None) -> list[asn1_x509.Certificate]:
    """The root certificates verification pins: `explicit` (a path or PEM text: verify_report's
    --trust), else REPORT_TRUST_ROOTS, else the self-signed certificates of the configured chain,
    else the demo CA. Empty when none of these exists."""
    if explicit:
        return _certificates("--trust", _pem_or_file("--trust", explicit))
    if settings.REPORT_TRUST_ROOTS:
        return _certificates(
            "REPORT_TRUST_ROOTS", _pem_or_file("REPORT_TRUST_ROOTS", settings.REPORT_TRUST_ROOTS)
        )
    if settings.REPORT_SIGNING_CHAIN:
        chain = _certificates(
            "REPORT_SIGNING_CHAIN", _pem_or_file("REPORT_SIGNING_CHAIN", settings.REPORT_SIGNING_CHAIN)
        )
        return [c for c in chain if _self_signed(c)]
    demo_ca = Path(settings.REPORT_DEMO_SIGNING_DIR) / DEMO_CA
    if not (settings.REPORT_SIGNING_KEY or settings.REPORT_SIGNING_P12) and demo_ca.exists():
        return _certificates(str(demo_ca), demo_ca.read_bytes())
    return []


def trust_roots_pem() -> str:
    """The pinned roots as PEM, for the page that offers them for download ("" when none)."""
    from asn1crypto import pem

    return "".join(pem.armor("CERTIFICATE", c.dump()).decode() for c in trust_roots_load())


# What the stamp can write: Latin letters with their accents, punctuation, the euro sign.
STAMP_UNICODES = [*range(0x20, 0x250), *range(0x2010, 0x2028), 0x20AC]


def _stamp_font() -> Path:
    """FreeSans cut down to STAMP_UNICODES, made once per machine: pyHanko subsets the font it
    embeds on every signature, and the whole of FreeSans (850 KB) takes a good half second."""
    import hashlib
    import tempfile

    source = STAMP_FONT.read_bytes()
    cached = Path(tempfile.gettempdir()) / f"consent-desk-stamp-{hashlib.sha256(source).hexdigest()[:16]}.otf"
    if not cached.exists():
        from fontTools import subset

        options = subset.Options()
        options.name_IDs = ["*"]
        options.notdef_outline = True
        font = subset.load_font(str(STAMP_FONT), options)
        subsetter = subset.Subsetter(options)
        subsetter.populate(unicodes=STAMP_UNICODES)
        subsetter.subset(font)
        partial = cached.with_suffix(f".{os.getpid()}.tmp")
        subset.save_font(font, str(partial), options)
        partial.replace(cached)  # atomic: a concurrent signer sees the whole file or none
    return cached


def pdf_sign(*, writer: Any, output: BinaryIO, key: SigningKey, report_id: str) -> None:
    """Certify the document in `writer` (a pyHanko IncrementalPdfFileWriter) into `output`:
    no changes allowed afterwards, PAdES B-B (B-T with REPORT_TSA_URL), visible on page 1."""
    from pyhanko.pdf_utils.font.opentype import GlyphAccumulatorFactory
    from pyhanko.pdf_utils.text import TextBoxStyle
    from pyhanko.sign import signers, timestamps
    from pyhanko.sign.fields import MDPPerm, SigFieldSpec, SigSeedSubFilter
    from pyhanko.stamp import TextStampStyle

    # FreeSans is a plain (non-CID) CFF font, which pyHanko embeds as it should while warning that
    # it is; fontTools reports every table it subsets.
    logging.getLogger("pyhanko.pdf_utils.font.opentype").setLevel(logging.ERROR)
    logging.getLogger("fontTools").setLevel(logging.ERROR)
    timestamper = (
        timestamps.HTTPTimeStamper(settings.REPORT_TSA_URL, timeout=settings.REPORT_TSA_TIMEOUT_S)
        if settings.REPORT_TSA_URL
        else None
    )
    meta = signers.PdfSignatureMetadata(
        field_name=SIGNATURE_FIELD,
        certify=True,
        docmdp_permissions=MDPPerm.NO_CHANGES,
        subfilter=SigSeedSubFilter.PADES,
        md_algorithm="sha256",
        reason=f"Consent Desk report {report_id}",
        location=settings.REPORT_ORGANISATION,
    )
    style = TextStampStyle(
        stamp_text=(
            "Digitally signed and certified (no changes allowed)\n"
            "Signer: %(signer)s\nTime: %(ts)s\nReport id: %(report)s"
            + ("\nTimestamp: %(tsa)s" if timestamper else "")
        ),
        # The same size for the glyphs and the box, or every line after the first drifts right.
        text_box_style=TextBoxStyle(
            font=GlyphAccumulatorFactory(str(_stamp_font()), font_size=STAMP_FONT_SIZE),
            font_size=STAMP_FONT_SIZE,
            leading=STAMP_FONT_SIZE + 3,
        ),
        timestamp_format="%Y-%m-%d %H:%M:%S UTC",
        border_width=1,
    )
    pdf_signer = signers.PdfSigner(
        meta,
        key.signer,
        timestamper=timestamper,
        stamp_style=style,
        new_field_spec=SigFieldSpec(SIGNATURE_FIELD, on_page=0, box=SIGNATURE_BOX),
    )
    params = {"report": report_id, "tsa": settings.REPORT_TSA_URL}
    # Room for the signature container, given rather than estimated: pyHanko's estimate is a
    # whole signature made and thrown away. The certificates, a 4096-bit signature and the signed
    # attributes, with margin; a timestamp token brings its own certificate and signature.
    certificates = sum(len(c.dump()) for c in (key.certificate, *key.chain))
    reserved = 2 * certificates + 8192 + (16384 if timestamper else 0)
    try:
        pdf_signer.sign_pdf(writer, output=output, appearance_text_params=params, bytes_reserved=reserved)
    except Exception as exc:
        if timestamper is not None and "imestamp" in f"{type(exc).__name__} {exc}":
            raise SigningUnavailable(f"the time-stamping authority REPORT_TSA_URL failed: {exc}") from exc
        raise


@dataclass(frozen=True)
class DemoFiles:
    ca: Path
    certificate: Path
    key: Path
    created: bool


def demo_signing_create(*, directory: Path, organisation: str, force: bool = False) -> DemoFiles:
    """A demo CA and a signing certificate it issued, with its key, under `directory`; kept as
    they are when they exist (unless `force`). Both names say they are for demos only."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import rsa
    from cryptography.x509.oid import NameOID

    files = DemoFiles(directory / DEMO_CA, directory / DEMO_CERT, directory / DEMO_KEY, created=False)
    if not force and all(p.exists() for p in (files.ca, files.certificate, files.key)):
        return files
    directory.mkdir(parents=True, exist_ok=True)

    def name(common_name: str) -> x509.Name:
        return x509.Name(
            [
                x509.NameAttribute(NameOID.ORGANIZATION_NAME, f"{organisation} ({DEMO_LABEL})"[:64]),
                x509.NameAttribute(NameOID.COMMON_NAME, common_name),
            ]
        )

    now = datetime.now(UTC).replace(microsecond=0)
    usage = dict.fromkeys(
        (
            "digital_signature",
            "content_commitment",
            "key_encipherment",
            "data_encipherment",
            "key_agreement",
            "key_cert_sign",
            "crl_sign",
            "encipher_only",
            "decipher_only",
        ),
        False,
    )
    ca_key = rsa.generate_private_key(public_exponent=65537, key_size=3072)
    ca_name = name(f"Consent Desk demo CA ({DEMO_LABEL})")
    ca = (
        x509.CertificateBuilder()
        .subject_name(ca_name)
        .issuer_name(ca_name)
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - timedelta(hours=1))
        .not_valid_after(now + timedelta(days=3650))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(x509.KeyUsage(**{**usage, "key_cert_sign": True, "crl_sign": True}), critical=True)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key()), critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    key = rsa.generate_private_key(public_exponent=65537, key_size=3072)
    certificate = (
        x509.CertificateBuilder()
        .subject_name(name(f"Consent Desk report signing ({DEMO_LABEL})"))
        .issuer_name(ca_name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - timedelta(hours=1))
        .not_valid_after(now + timedelta(days=730))
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(**{**usage, "digital_signature": True, "content_commitment": True}), critical=True
        )
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), critical=False
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    # The CA's own key is not kept: nothing more is ever issued from it.
    files.ca.write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    files.certificate.write_bytes(certificate.public_bytes(serialization.Encoding.PEM))
    files.key.touch(mode=0o600)
    files.key.chmod(0o600)
    files.key.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
    )
    return DemoFiles(files.ca, files.certificate, files.key, created=True)
