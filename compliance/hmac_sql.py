"""HMAC-SHA256 (RFC 2104) written in PostgreSQL's SQL, for the commitments the database confirms
itself (`chain_fingerprint` for the consent events' side rows, `personal_verification` for the
identity events'): two `sha256()` calls over the contact's secret padded and xored with the inner
and the outer pad. Python's `hmac.digest(secret, text, "sha256")` gives the same bytes.
"""

from __future__ import annotations

# The key: the secret (hashed first if longer than SHA-256's block), padded with zeros to 64 bytes;
# bytea has no xor, bit strings do (varbit_send gives the bytes back after a 4-byte length).
_BLOCK_KEY = (
    "('x' || encode(substring(CASE WHEN length({secret}) > 64 THEN sha256({secret}) ELSE {secret} END"
    " || '\\x" + "00" * 64 + "'::bytea from 1 for 64), 'hex'))::bit(512)"
)


def padded_key_sql(secret: str, pad: str) -> str:
    """The bytea of the secret's block key xored with `pad` ("36": inner, "5c": outer)."""
    key = _BLOCK_KEY.format(secret=secret)
    return f"substring(varbit_send({key} # ('x' || repeat('{pad}', 64))::bit(512)) from 5)"


def hmac_hex_sql(inner_key: str, outer_key: str, message: str) -> str:
    """HMAC-SHA256 in hex of the bytea `message` from the padded keys (padded_key_sql)."""
    return f"encode(sha256({outer_key} || sha256({inner_key} || {message})), 'hex')"
