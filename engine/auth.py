"""API keys: shown once, stored as a hash, found by prefix, compared in constant time."""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
from dataclasses import dataclass

from sqlalchemy import bindparam, select
from sqlalchemy.orm import Session

from engine.clock import utcnow
from engine.db.models import ApiKey, Organization
from engine.store.dialects import store_for

KEY_SCHEME = "qk"
# PostgreSQL NOTIFY channel: the prefix of every key revoked, as its transaction commits,
# so that API processes drop the key from their caches (see api.keycache).
REVOKED_CHANNEL = "quorum_api_key_revoked"
PREFIX_BYTES = 6
SECRET_BYTES = 24


@dataclass(frozen=True, kw_only=True)
class Principal:
    organization_id: str
    organization_name: str
    key_prefix: str


@dataclass(frozen=True, kw_only=True)
class IssuedKey:
    key: str
    prefix: str
    organization_id: str


def hash_secret(secret: str) -> str:
    # The secret has 192 bits of entropy, so a fast hash is enough; no stretching needed.
    return hashlib.sha256(secret.encode()).hexdigest()


# What issue_key can produce (hex prefix, URL-safe secret without "_"); anything else is
# refused before it reaches the database, so no odd byte (NUL, non-ASCII) is ever queried.
_KEY_SHAPE = re.compile(rf"({KEY_SCHEME}_[0-9a-f]{{1,28}})_([A-Za-z0-9-]{{1,256}})")


def _split(key: str) -> tuple[str, str] | None:
    match = _KEY_SHAPE.fullmatch(key)
    if match is None:
        return None
    return match.group(1), match.group(2)


def issue_key(s: Session, org_name: str, *, name: str | None = None) -> IssuedKey:
    org = s.scalar(select(Organization).where(Organization.name == org_name))
    if org is None:
        org = Organization(name=org_name)
        s.add(org)
        s.flush()
    prefix = f"{KEY_SCHEME}_{secrets.token_hex(PREFIX_BYTES)}"
    secret = secrets.token_urlsafe(SECRET_BYTES).replace("_", "-")
    s.add(ApiKey(organization_id=org.id, prefix=prefix, key_hash=hash_secret(secret), name=name))
    s.flush()
    return IssuedKey(key=f"{prefix}_{secret}", prefix=prefix, organization_id=org.id)


def revoke_key(s: Session, prefix: str) -> bool:
    key = s.scalar(select(ApiKey).where(ApiKey.prefix == prefix))
    if key is None or key.revoked_at is not None:
        return False
    key.revoked_at = utcnow()
    # Delivered when (and only if) the revocation commits (where the database notifies).
    store_for(s).notify(s, REVOKED_CHANNEL, prefix)
    return True


# Built once: every authenticated request runs it.
_LOOKUP = (
    select(ApiKey.key_hash, ApiKey.revoked_at, Organization.id, Organization.name)
    .join(Organization, Organization.id == ApiKey.organization_id)
    .where(ApiKey.prefix == bindparam("prefix"))
)


def authenticate(s: Session, key: str) -> Principal | None:
    split = _split(key)
    if split is None:
        return None
    prefix, secret = split
    row = s.connection().execute(_LOOKUP, {"prefix": prefix}).first()
    if row is None:
        # Compare anyway so that unknown and wrong keys take the same time.
        hmac.compare_digest(hash_secret(secret), hash_secret(""))
        return None
    key_hash, revoked_at, org_id, org_name = row
    if not hmac.compare_digest(hash_secret(secret), key_hash) or revoked_at is not None:
        return None
    return Principal(organization_id=org_id, organization_name=org_name, key_prefix=prefix)
