"""The keyed digest of a chain's links that the database's quick checks sum
(`compliance/chain_fingerprint.py` for the consent chains, `compliance/identity_verification.py`
for the identity chains): a link's member is (chain, version, hash), and two multisets of members
are the same, but with odds of about 2^-63, when the sums of their digests under a key drawn for
the run are."""

from __future__ import annotations

import secrets

KEY_BYTES = 16


def new_key() -> bytes:
    """A run's key for the digests (the queries' parameter `key`)."""
    return secrets.token_bytes(KEY_BYTES)


def link_digest_sql(contact: str, purpose: str, version: str, link: str) -> str:
    """SQL for the keyed 64-bit digest (a bigint: the first 8 bytes of SHA-256 under the run's key,
    the query's parameter `key`) of a link's member, (chain, version, hash): the contact, the
    purpose and the version as 8-byte integers (integers as bytes, not text: a fifth of the
    digests' cost), then the hash's text."""
    member = (
        f"int8send(({contact})::bigint) || int8send(({purpose})::bigint) || int8send(({version})::bigint)"
        f" || convert_to({link}, 'UTF8')"
    )
    return f"('x' || encode(substring(sha256(%(key)s || {member}) from 1 for 8), 'hex'))::bit(64)::bigint"
