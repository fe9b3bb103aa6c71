"""``python -m zohosim --port 8765``: run the simulator by hand."""

from __future__ import annotations

import argparse
import sys

from werkzeug.serving import run_simple

from zohosim.app import create_app
from zohosim.config import EDITION_CREDITS, SimConfig
from zohosim.seed import load_file
from zohosim.state import SimState


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m zohosim", description="Local Zoho Accounts + CRM + Campaigns"
    )
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8765)
    parser.add_argument("--seed-file", help="JSON seed document (see docs/zohosim.md)")
    parser.add_argument("--edition", default="enterprise", choices=sorted(EDITION_CREDITS))
    parser.add_argument("--users", type=int, default=10, help="licensed users (drives the daily credits)")
    parser.add_argument("--fault-seed", type=int, default=None, help="seed for fault randomness")
    parser.add_argument("--credits-limit", type=int, default=None, help="override the daily credits")
    parser.add_argument("--api-domain", default=None, help="api_domain to return (default: own URL)")
    args = parser.parse_args(argv)

    config = SimConfig(
        edition=args.edition,
        users=args.users,
        fault_seed=args.fault_seed,
        credits_limit=args.credits_limit,
        api_domain=args.api_domain,
    )
    config.update({})
    state = SimState(config)
    if args.seed_file:
        summary = load_file(state, args.seed_file)
        print(
            f"seeded from {args.seed_file}: {len(state.modules['Contacts'])} contacts, {len(state.lists)} lists"
        )
        del summary
    app = create_app(state)
    url = f"http://{args.host}:{args.port}"
    print(f"zohosim listening on {url}  (edition {config.edition}, {config.daily_credits()} credits/24h)")
    print(f"  accounts/api base URL : {url}")
    print(f"  client_id             : {config.client_id}")
    print(f"  client_secret         : {config.client_secret}")
    print(f"  refresh_token         : {config.refresh_tokens[0]}")
    print(f"  control API           : {url}/_sim/stats")
    sys.stdout.flush()
    run_simple(args.host, args.port, app, threaded=True, use_reloader=False)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
