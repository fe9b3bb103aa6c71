"""Zoho CRM Bulk Read: create a job, poll it, download its zipped CSV and stream the rows."""

from __future__ import annotations

import csv
import io
import tempfile
import time
import zipfile
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from sync.zoho.errors import ZohoPermanentError, ZohoRateLimited, ZohoTransientError
from sync.zoho.transport import Request, ZohoTransport

# Spool the download in memory up to this size, then on disk.
SPOOL_MAX_BYTES = 8 * 1024 * 1024
# A job's status polls that may fail in a row before `BulkRead.wait` gives up.
MAX_POLL_FAILURES = 5
# A result's downloads that may fail before `BulkRead.table` gives up; after Zoho's 429 (at most
# 10 downloads a minute) the next one waits out the minute.
MAX_DOWNLOAD_FAILURES = 3
DOWNLOAD_LIMIT_WAIT_S = 60.0


def _answered_or_lost(exc: ZohoTransientError) -> bool:
    """Zoho's own failure (it answered 5xx or 429) or the network's, worth polling again; not our
    quota gate's refusal (deferred work, the shared rate), which the caller must see at once."""
    return exc.http_status is not None or exc.code in ("timeout", "connection_error")


@dataclass(frozen=True, slots=True)
class BulkReadJob:
    id: str
    state: str  # ADDED, IN PROGRESS, COMPLETED, FAILURE
    result: Mapping[str, Any] = field(default_factory=dict)

    @property
    def done(self) -> bool:
        return self.state in ("COMPLETED", "FAILURE")

    @property
    def more_records(self) -> bool:
        return bool(self.result.get("more_records"))

    @property
    def next_page_token(self) -> str | None:
        """What asks for the next page (past 200,000 rows Zoho takes no ``page=N``)."""
        token = self.result.get("next_page_token")
        return str(token) if token else None

    @property
    def count(self) -> int | None:
        count = self.result.get("count")
        return int(count) if count is not None else None


class BulkRead:
    def __init__(self, transport: ZohoTransport) -> None:
        self.transport = transport
        self.version = transport.config.crm_api_version

    def _path(self, rest: str = "") -> str:
        return f"/crm/bulk/{self.version}/read{rest}"

    def create(
        self,
        fields: Sequence[str],
        *,
        module: str = "Contacts",
        criteria: Mapping[str, Any] | None = None,
        page_token: str | None = None,
        callback_url: str | None = None,
    ) -> BulkReadJob:
        """A job for the first page, or for the page ``page_token`` names (the previous job's
        ``next_page_token``: Zoho pages past 200,000 rows by token only, never by ``page=N``)."""
        query: dict[str, Any] = {"module": {"api_name": module}, "fields": list(fields)}
        if page_token:
            query["page_token"] = page_token
        else:
            query["page"] = 1
        if criteria:
            query["criteria"] = dict(criteria)
        body: dict[str, Any] = {"query": query, "file_type": "csv"}
        if callback_url:
            body["callback"] = {"url": callback_url, "method": "post"}
        response = self.transport.call(
            Request(
                service="crm",
                operation="crm.bulk_read_create",
                method="POST",
                host="api",
                path=self._path(),
                json=body,
                credits=1,
                complex=True,  # Zoho counts bulk jobs among the sub-concurrency calls
            )
        )
        return self._job(response.body)

    def _get(self, operation: str, rest: str, sink: Any = None) -> Any:
        """A GET of a job's own path (its status, its result into `sink`), one credit."""
        request = Request(
            service="crm",
            operation=operation,
            method="GET",
            host="api",
            path=self._path(rest),
            credits=1,
            sink=sink,
        )
        return self.transport.call(request)

    def status(self, job_id: str) -> BulkReadJob:
        return self._job(self._get("crm.bulk_read_poll", f"/{job_id}").body)

    def wait(
        self,
        job_id: str,
        *,
        poll_s: float = 5.0,
        timeout_s: float = 3600.0,
        sleep: Callable[[float], None] = time.sleep,
    ) -> BulkReadJob:
        """Poll until the job is COMPLETED (FAILURE raises).

        A poll that Zoho fails (5xx, 429, a timeout, a broken connection) is polled again: the
        job goes on building meanwhile, and giving up would throw away minutes of Zoho's work
        and start a new job, which a steady error rate would never let finish. Only
        `MAX_POLL_FAILURES` failures in a row raise (the last one)."""
        deadline = time.monotonic() + timeout_s
        failures = 0
        while True:
            try:
                job = self.status(job_id)
            except ZohoTransientError as exc:
                failures += 1
                if not _answered_or_lost(exc) or failures >= MAX_POLL_FAILURES or time.monotonic() > deadline:
                    raise
                sleep(poll_s)
                continue
            failures = 0
            if job.state == "COMPLETED":
                return job
            if job.state == "FAILURE":
                raise ZohoPermanentError(f"bulk read job {job_id} failed", code="FAILURE")
            if time.monotonic() > deadline:
                raise ZohoTransientError(f"bulk read job {job_id} still {job.state} after {timeout_s:g} s")
            sleep(poll_s)

    def rows(
        self, job_id: str, *, retry_s: float = 5.0, sleep: Callable[[float], None] = time.sleep
    ) -> Iterator[dict[str, str]]:
        """Download the job's result (as `table`) and yield its CSV rows one by one, as dicts by column."""
        table = self.table(job_id, retry_s=retry_s, sleep=sleep)
        header = next(table, None)
        if header is None:
            return
        for cells in table:
            yield dict(zip(header, cells, strict=False))

    def table(
        self, job_id: str, *, retry_s: float = 5.0, sleep: Callable[[float], None] = time.sleep
    ) -> Iterator[list[str]]:
        """Download the job's result and yield its CSV's header, then each row, as lists of cells
        (no dict per row: a page holds 200,000 of them). Blank lines are skipped.

        The zip is streamed to a spooled temporary file (memory up to 8 MB, then
        disk) and the CSV is read from inside it, so memory stays bounded. A download that Zoho
        or the network fails, or that is cut short (not a whole zip), is made again after
        `retry_s` (after a 429, once the minute is out), up to `MAX_DOWNLOAD_FAILURES` in all:
        the job's file stays on Zoho's side, and giving up would start the whole read again.
        """
        with tempfile.SpooledTemporaryFile(max_size=SPOOL_MAX_BYTES) as spool:
            archive = self._download(job_id, spool, retry_s=retry_s, sleep=sleep)
            with archive:
                names = [n for n in archive.namelist() if n.lower().endswith(".csv")]
                if not names:
                    raise ZohoPermanentError(f"bulk read job {job_id}: no CSV in the zip")
                with archive.open(names[0]) as raw:
                    text = io.TextIOWrapper(raw, encoding="utf-8-sig", newline="")
                    # Blank lines are skipped, as csv.DictReader does.
                    yield from filter(None, csv.reader(text))

    def _download(
        self, job_id: str, spool: Any, *, retry_s: float, sleep: Callable[[float], None]
    ) -> zipfile.ZipFile:
        failures = 0
        while True:
            spool.seek(0)
            spool.truncate()
            try:
                self._get("crm.bulk_read_download", f"/{job_id}/result", sink=spool)
                spool.seek(0)
                try:
                    return zipfile.ZipFile(spool)
                except zipfile.BadZipFile as exc:
                    raise ZohoTransientError(
                        f"bulk read job {job_id}: the download is not a zip file", code="connection_error"
                    ) from exc
            except ZohoTransientError as exc:
                failures += 1
                if not _answered_or_lost(exc) or failures >= MAX_DOWNLOAD_FAILURES:
                    raise
                sleep(DOWNLOAD_LIMIT_WAIT_S if isinstance(exc, ZohoRateLimited) else retry_s)

    @staticmethod
    def _job(body: Any) -> BulkReadJob:
        data = body.get("data") if isinstance(body, dict) else None
        if not data or not isinstance(data[0], dict):
            raise ZohoTransientError("Zoho answered a bulk read call without data")
        entry = data[0]
        raw_details = entry.get("details")
        details: dict[str, Any] = raw_details if isinstance(raw_details, dict) else entry
        job_id = details.get("id") or entry.get("id")
        if job_id is None:
            raise ZohoTransientError("Zoho answered a bulk read call without a job id")
        return BulkReadJob(
            id=str(job_id),
            state=str(details.get("state") or entry.get("state") or ""),
            result=entry.get("result") or details.get("result") or {},
        )
