"""A separate worker process for the single-flight test: `python -m tests.sync.token_worker PREFIX GO_FILE`.

It sets Django up (CACHE_URL and ZOHO_* come from the environment), says "ready",
waits for GO_FILE to appear (so that all workers start together), makes one CRM
call and prints the API user's id.
"""

from __future__ import annotations

import os
import sys
import time

import django


def main() -> None:
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")
    django.setup()
    from sync import quota
    from sync.zoho import NullCallLog, ZohoClient, ZohoConfig

    prefix, go_file = sys.argv[1], sys.argv[2]
    # As `ZohoClient.from_settings` would, but on this test's own cache prefix.
    client = ZohoClient(
        ZohoConfig.from_settings(cache_prefix=prefix), call_log=NullCallLog(), gate=quota.gate(prefix)
    )
    print("ready", flush=True)
    while not os.path.exists(go_file):
        time.sleep(0.005)
    user = client.crm.current_user()
    print(f"user {user.id}", flush=True)
    client.close()


if __name__ == "__main__":
    main()
