"""From HTML to a signed PDF/A-3b with attachments, and the attachments back out of one.

WeasyPrint lays the HTML out as PDF/A-3b; pyHanko then adds, in one incremental update
signed at once, the embedded files (each an associated file of the document, /AF, as PDF/A-3
requires) and the certification signature. The embedded files are copied from their
compressed scratch files in chunks, so a report's size never has to fit in memory.
"""

from __future__ import annotations

import hashlib
import logging
import zlib
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, BinaryIO

from reports.attachments import Attachment
from reports.signing import SigningKey, pdf_sign

COPY_CHUNK = 1 << 20


def html_to_pdfa(*, html: str, output: Path, base_url: str) -> None:
    # fontTools reports each font table it cannot subset (harmless), WeasyPrint each step of its
    # work: neither belongs in the application's log.
    logging.getLogger("fontTools").setLevel(logging.ERROR)
    logging.getLogger("weasyprint.progress").setLevel(logging.WARNING)
    import weasyprint

    weasyprint.HTML(string=html, base_url=base_url).write_pdf(output, pdf_variant="pdf/a-3b")


def _stream_class() -> type:
    from pyhanko.pdf_utils import generic

    class FileBackedStream(generic.StreamObject):  # type: ignore[misc]
        """An /EmbeddedFile stream whose (already compressed) bytes are copied from a file when written."""

        def __init__(self, attachment: Attachment, when: datetime) -> None:
            super().__init__()
            self.source = attachment.path
            name = generic.NameObject
            self[name("/Type")] = name("/EmbeddedFile")
            # The MIME type as the name's text: pyHanko writes the "/" in it as #2F itself.
            self[name("/Subtype")] = name("/" + attachment.mime)
            self[name("/Filter")] = name("/FlateDecode")
            self[name("/Params")] = generic.DictionaryObject(
                {
                    name("/Size"): generic.NumberObject(attachment.size),
                    name("/CheckSum"): generic.ByteStringObject(attachment.md5),
                    name("/ModDate"): generic.pdf_date(when),
                }
            )

        def write_to_stream(self, stream: Any, handler: Any = None, container_ref: Any = None) -> None:
            self[generic.NameObject("/Length")] = generic.NumberObject(self.source.stat().st_size)
            generic.DictionaryObject.write_to_stream(self, stream, handler, container_ref)
            stream.write(b"\nstream\n")
            with self.source.open("rb") as source:
                while chunk := source.read(COPY_CHUNK):
                    stream.write(chunk)
            stream.write(b"\nendstream")

    return FileBackedStream


def _embed(writer: Any, attachments: list[Attachment], when: datetime) -> None:
    from pyhanko.pdf_utils import generic

    name = generic.NameObject
    stream_class = _stream_class()
    entries = []
    specs = generic.ArrayObject()
    for attachment in sorted(attachments, key=lambda a: a.name):  # a name tree is sorted
        stream_ref = writer.add_object(stream_class(attachment, when))
        spec = generic.DictionaryObject(
            {
                name("/Type"): name("/Filespec"),
                name("/F"): generic.pdf_string(attachment.name),
                name("/UF"): generic.pdf_string(attachment.name),
                name("/Desc"): generic.TextStringObject(attachment.description),
                name("/AFRelationship"): name("/Data"),
                name("/EF"): generic.DictionaryObject({name("/F"): stream_ref, name("/UF"): stream_ref}),
            }
        )
        spec_ref = writer.add_object(spec)
        entries += [generic.pdf_string(attachment.name), spec_ref]
        specs.append(spec_ref)
    root = writer.root
    existing = root.get("/Names")
    names = generic.DictionaryObject()
    for key_name in existing or ():
        # Keep the other name trees (e.g. link destinations) as they were: by reference.
        names[key_name] = existing.raw_get(key_name)
    names[name("/EmbeddedFiles")] = writer.add_object(
        generic.DictionaryObject({name("/Names"): generic.ArrayObject(entries)})
    )
    root[name("/Names")] = writer.add_object(names)
    root[name("/AF")] = specs
    writer.update_root()
    # pyHanko names itself the producer in the XMP metadata but appends itself to WeasyPrint's
    # name in the Info dictionary; PDF/A wants the two to agree, so both say pyHanko's.
    from pyhanko.pdf_utils.metadata.model import VENDOR

    info_ref = writer.trailer.raw_get("/Info")
    info = info_ref.get_object()
    info[name("/Producer")] = generic.TextStringObject(VENDOR)
    writer.mark_update(info_ref)


def pdf_finish(
    *, source: Path, attachments: list[Attachment], output: Path, key: SigningKey, report_id: str
) -> None:
    """`source` (WeasyPrint's PDF/A-3b) with `attachments` embedded and certified by `key`, into `output`."""
    from pyhanko.pdf_utils.incremental_writer import IncrementalPdfFileWriter

    with source.open("rb") as unsigned, output.open("w+b") as signed:
        writer = IncrementalPdfFileWriter(unsigned)
        _embed(writer, attachments, datetime.now(UTC))
        pdf_sign(writer=writer, output=signed, key=key, report_id=report_id)


@dataclass(frozen=True)
class Embedded:
    """An embedded file of a PDF being read."""

    name: str
    stream: Any  # pyhanko StreamObject

    def chunks(self) -> Iterator[bytes]:
        """The file's bytes, decoded as they are read (FlateDecode in pieces, anything else at once)."""
        filters = self.stream.get("/Filter")
        if filters == "/FlateDecode" and "/DecodeParms" not in self.stream:
            raw = self.stream.encoded_data
            decompressor = zlib.decompressobj()
            for offset in range(0, len(raw), COPY_CHUNK):
                yield decompressor.decompress(raw[offset : offset + COPY_CHUNK])
            yield decompressor.flush()
        else:
            yield self.stream.data

    def sha256(self) -> str:
        digest = hashlib.sha256()
        for chunk in self.chunks():
            digest.update(chunk)
        return digest.hexdigest()

    def lines(self) -> Iterator[str]:
        """The file as text lines (UTF-8), without reading it whole into memory when compressed."""
        pending = b""
        for chunk in self.chunks():
            pending += chunk
            *complete, pending = pending.split(b"\n")
            for line in complete:
                yield line.decode("utf-8") + "\n"
        if pending:
            yield pending.decode("utf-8")


def embedded_files(reader: Any) -> dict[str, Embedded]:
    """The document's embedded files by name (from the catalog's /Names /EmbeddedFiles tree)."""
    try:
        tree = reader.root["/Names"]["/EmbeddedFiles"]
    except KeyError:
        return {}
    found: dict[str, Embedded] = {}

    def resolved(value: Any) -> Any:
        return value.get_object() if hasattr(value, "get_object") else value

    def walk(node: Any) -> None:
        node = resolved(node)
        if "/Names" in node:
            pairs = [resolved(item) for item in node["/Names"]]
            for index in range(0, len(pairs) - 1, 2):
                spec = pairs[index + 1]
                name = str(spec.get("/UF") or spec.get("/F") or pairs[index])
                found[name] = Embedded(name, resolved(spec["/EF"]["/F"]))
        for kid in node.get("/Kids", []):
            walk(kid)

    walk(tree)
    return found


def sha256_file(handle: BinaryIO) -> str:
    digest = hashlib.sha256()
    handle.seek(0)
    while chunk := handle.read(COPY_CHUNK):
        digest.update(chunk)
    handle.seek(0)
    return digest.hexdigest()
