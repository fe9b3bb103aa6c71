"""The consent lifecycle run by Consent Desk (issue 11): double opt-in mails, one-click unsubscribe
(RFC 8058) and the preference centre, at public token-signed URLs.

- `tokens`: what a link carries, signed with LINK_SIGNING_KEYS, revocable per contact;
- `mail`: each message recorded before it is sent, sent (and retried) by `tasks`;
- `services`: confirming, unsubscribing and changing preferences, each through the ledger's
  one write path (`compliance.services.consent_record`), and the periodic cycle;
- `views`, `urls`, `forms`: the public pages (no login) and the demo's sent-mail page;
- `ratelimit`: requests per client IP on the public pages.
"""
