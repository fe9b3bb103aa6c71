"""Benchmark: `manage.py import_zoho_consent` over N CRM contacts held in zohosim (goal for
1,000,000: at most 10 minutes and 500 MB).

    .venv/bin/python bench/import_zoho.py                          # 1,000,000 contacts
    .venv/bin/python bench/import_zoho.py --contacts 100000 --method coql

* **zohosim**, in its own process (its memory is not counted): N generated contacts
  (`zohosim.seed.generate`: one in 10 with ``Email_Opt_Out`` ticked, one in 5 with a consent
  object "Obtained" through Email on 2024-01-15, half of those with phone consent too), and
  one Campaigns list of 10,000 subscribers (about 5 % unsubscribed).
* **the ledger** (database ``bench_import_zoho``, rebuilt): empty but for the policy version in
  force in 2024, as for a company adopting Consent Desk.
* Then the command runs as it would by hand (``--method auto`` picks Bulk Read above
  ``RECONCILE_BULK_THRESHOLD``), its progress lines passed through. The script samples the
  resident memory of the command's process and all its children every 0.2 s and prints the
  peak (and ``ru_maxrss`` of the largest child, for comparison), the wall clock, the run's
  counts and the load average before and after (the machine may be shared).
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench._common import (
    PYTHON,
    ROOT,
    bench_env,
    load_average,
    print_machine,
    process_tree,
    psql,
    recreate_database,
)

DATABASE = "bench_import_zoho"
LIST_KEY = "3zbenchlist00001"


def serve(contacts: int) -> None:
    """Child process: the sim's state, served until stdin closes."""
    from zohosim import LiveServer, SimConfig, seed

    state = seed.generate(
        contacts=contacts,
        lists=0,
        campaigns=0,
        opt_out_ratio=0.1,
        details_ratio=0.2,
        seed=1,
        config=SimConfig(credits_limit=50_000_000, bulk_read_polls_to_complete=0),
    )
    seed.load(
        state,
        {
            "lists": [
                {
                    "listkey": LIST_KEY,
                    "name": "Newsletter",
                    "subscribers": [
                        {"email": f"contact{i}@example.com", "status": "unsub" if i % 20 == 0 else "active"}
                        for i in range(min(contacts, 10_000))
                    ],
                }
            ]
        },
    )
    with LiveServer(state=state) as sim:
        print(json.dumps({"url": sim.url}), flush=True)
        sys.stdin.read()


def rss_kb(pids: list[int]) -> int:
    total = 0
    for pid in pids:
        try:
            for line in Path(f"/proc/{pid}/status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    total += int(line.split()[1])
        except OSError:
            pass
    return total


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--contacts", type=int, default=1_000_000)
    parser.add_argument("--method", choices=["auto", "coql", "bulk"], default="auto")
    parser.add_argument("--batch", type=int, default=500)
    parser.add_argument("--profile", help="write a cProfile of the command to this file")
    args = parser.parse_args()

    print(f"zohosim: generating {args.contacts:,} contacts ...", flush=True)
    started = time.monotonic()
    sim = subprocess.Popen(
        [PYTHON, __file__, "--serve", str(args.contacts)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    assert sim.stdout is not None and sim.stdin is not None
    url = json.loads(sim.stdout.readline())["url"]
    print(f"zohosim ready at {url} in {time.monotonic() - started:.1f} s", flush=True)
    try:
        recreate_database(DATABASE)
        env = bench_env(
            DATABASE,
            ZOHO_ACCOUNTS_URL=url,
            ZOHO_API_DOMAIN=url,
            ZOHO_CAMPAIGNS_URL=url,
            ZOHO_CLIENT_ID="zohosim-client",
            ZOHO_CLIENT_SECRET="zohosim-secret",
            ZOHO_REFRESH_TOKEN="zohosim-refresh-token",
            ZOHO_CAMPAIGNS_LIST_KEYS=LIST_KEY,
            ZOHO_RATE_LIMIT_PER_S="1000",
            RECONCILE_BULK_POLL_S="0.5",
            PYTHONUNBUFFERED="1",
        )
        subprocess.run(
            [
                PYTHON,
                "manage.py",
                "shell",
                "-c",
                "from compliance import services; services.policy_version_publish("
                "label='2023-06', effective_at='2023-06-01', text='Offers you chose, by the channels you chose.')",
            ],
            cwd=ROOT,
            env=env,
            check=True,
        )
        load_before = load_average()
        profile = ["-m", "cProfile", "-o", args.profile] if args.profile else []
        command = [
            PYTHON,
            *profile,
            "manage.py",
            "import_zoho_consent",
            "--method",
            args.method,
            "--batch",
            str(args.batch),
        ]
        print(f"running: {' '.join(command[1:])} (load average {load_before})", flush=True)
        started = time.monotonic()
        process = subprocess.Popen(
            command, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
        )
        peak = 0
        lines: list[str] = []

        def relay() -> None:
            assert process.stdout is not None
            for line in process.stdout:
                lines.append(line)
                if len(lines) < 200 or not line.startswith(("crm ", "campaigns ")):
                    print("  | " + line.rstrip(), flush=True)

        reader = threading.Thread(target=relay, daemon=True)
        reader.start()
        shown = time.monotonic()
        while process.poll() is None:
            peak = max(peak, rss_kb(process_tree(process.pid)))
            if time.monotonic() - shown > 30:
                shown = time.monotonic()
                print(f"  peak RSS so far: {peak / 1024:.1f} MiB (load average {load_average()})", flush=True)
            time.sleep(0.2)
        reader.join(timeout=10)
        seconds = time.monotonic() - started
        child_max = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
        counts = psql(
            "select method, status, records_read, records_bad, list_rows_read, events_recorded, events_existing, "
            "refused from sync_importrun order by id desc limit 1",
            DATABASE,
        )
        events = psql("select count(*) from compliance_consentevent", DATABASE)
        contacts = psql("select count(*) from compliance_contact", DATABASE)
        print()
        print(f"contacts in CRM: {args.contacts:,}; exit code {process.returncode}")
        print(f"wall clock: {seconds:.1f} s; peak RSS (command and children, sampled): {peak / 1024:.1f} MiB")
        print(f"largest child ru_maxrss: {child_max / 1024:.1f} MiB")
        print(f"run (method|status|read|bad|list rows|recorded|existing|refused): {counts}")
        print(f"ledger: {events} events, {contacts} contacts")
        print(f"load average before {load_before}, after {load_average()}")
        print_machine()
    finally:
        sim.stdin.close()
        sim.wait(timeout=60)


if __name__ == "__main__":
    if len(sys.argv) > 2 and sys.argv[1] == "--serve":
        sys.path.insert(0, str(ROOT))
        serve(int(sys.argv[2]))
    else:
        main()
