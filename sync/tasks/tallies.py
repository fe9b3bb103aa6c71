"""Task: the health page's hourly call tallies (see sync/tallies.py).

Idempotent (an hour stored once is skipped), and it calls no Zoho API, so it needs neither
retries nor `ZohoTask`.
"""

from __future__ import annotations

from celery import shared_task

from sync.tallies import callday_tally
from sync.tallies import callhour_tally as callhour_tally_service


@shared_task(name="sync.callhour_tally")
def callhour_tally() -> int:
    """Store each whole hour's call tallies once the hour is over, then each whole day's (summed
    from its hours); returns how many hours."""
    hours = callhour_tally_service()
    callday_tally()
    return hours
