"""API tokens: bearer secrets with scopes for the JSON API.

A token reads `cvt_<id>_<secret>`; only SHA-256 of the 256-bit random secret is stored (a slow
password hash buys nothing against a secret that cannot be guessed), so the token is shown
once, at creation. Creation and revocation are audited; every use updates `last_used_at`.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass

from appliance.errors import CallvaultError
from appliance.privacy.audit import Actor, AuditLog
from appliance.store import Database

# Deny by default: a token can do only what its scopes name.
SCOPES: dict[str, str] = {
    "calls:read": "calls, recordings and transcripts (operators: of their lines)",
    "system:read": "system status",
    "system:write": "system settings",
    "metrics:read": "Prometheus metrics (/api/v1/metrics; no personal data)",
    "alerts:read": "list alerts",
    "alerts:write": "acknowledge alerts",
    "lines:read": "lines and agent profiles",
    "lines:write": "change lines and agent profiles",
    "pbx:read": "PBX trunks, extensions, routes, versions and live status",
    "pbx:write": "change and roll back the PBX configuration, unblock SIP addresses",
    "users:read": "list users",
    "users:write": "create, reset and disable users",
    "rights:read": "list and read data subject requests",
    "rights:write": "create, verify, process, refuse and extend requests",
    "rights:export": "download access exports (personal data)",
    "holds:read": "list legal holds",
    "holds:write": "place and release legal holds",
    "dnc:read": "list the do-not-call list (phone numbers)",
    "dnc:write": "add to and remove from the do-not-call list",
    "retention:read": "show retention policies and dry runs",
    "retention:run": "run the retention purge",
    "audit:read": "verify the audit chain",
    "ropa:read": "records of processing",
    "review:read": "list the human review queue",
    "review:write": "decide review items",
    "breach:read": "list the breach register",
    "breach:write": "record and update breaches",
    "leads:read": "lead lists and their leads (phone numbers; the read is audited)",
    "leads:write": "import lead lists",
    "campaigns:read": "outbound campaigns and their reports",
    "campaigns:write": "create, start, pause, resume and stop outbound campaigns",
}
_TOKEN = re.compile(r"^cvt_(\d{1,12})_([A-Za-z0-9_-]{43})$")
_NAME = re.compile(r"^[a-z0-9][a-z0-9_.-]{0,63}$")


class TokenError(CallvaultError):
    pass


@dataclass(frozen=True)
class Principal:
    """Who calls the API: the token's name and what it may do."""

    token_id: int
    name: str
    scopes: frozenset[str]

    @property
    def actor(self) -> Actor:
        return Actor(name=f"api:{self.name}", role="api")


@dataclass(frozen=True)
class TokenView:
    id: int
    name: str
    scopes: tuple[str, ...]
    created_at: float
    created_by: str
    expires_at: float | None
    last_used_at: float | None
    revoked_at: float | None


def _digest(secret: str) -> bytes:
    return hashlib.sha256(secret.encode()).digest()


def check_scopes(scopes: Iterable[str]) -> tuple[str, ...]:
    out = tuple(sorted(set(scopes)))
    if not out:
        raise TokenError("a token needs at least one scope")
    unknown = [s for s in out if s not in SCOPES]
    if unknown:
        raise TokenError(f"unknown scope {unknown[0]!r} (known: {', '.join(sorted(SCOPES))})")
    return out


class ApiTokens:
    def __init__(
        self, db: Database, audit: AuditLog, clock: Callable[[], float] = time.time
    ) -> None:
        self.db = db
        self.audit = audit
        self.clock = clock

    async def create(
        self,
        name: str,
        scopes: Iterable[str],
        actor: Actor,
        *,
        ttl_days: int | None = None,
    ) -> str:
        """A new token's full text, shown to the caller once."""
        if not _NAME.match(name):
            raise TokenError(f"token name {name!r} is not valid (lowercase letters, digits, _ . -)")
        wanted = check_scopes(scopes)
        if await self.db.token_by_name(name) is not None:
            raise TokenError(f"a token named {name!r} exists (revoke it or pick another name)")
        if ttl_days is not None and ttl_days <= 0:
            raise TokenError("ttl_days must be positive")
        now = self.clock()
        secret = secrets.token_urlsafe(32)
        entry = await self.audit.entry(
            actor, "token.create", "token", "API access", f"name={name} scopes={' '.join(wanted)}"
        )
        token_id = await self.db.token_add(
            name=name,
            scopes=" ".join(wanted),
            secret_sha256=_digest(secret),
            created_at=now,
            created_by=actor.name,
            expires_at=None if ttl_days is None else now + ttl_days * 86400,
            audit=entry,
        )
        return f"cvt_{token_id}_{secret}"

    async def authenticate(self, token: str) -> Principal:
        """The token's principal; TokenError (no detail on why, to callers) otherwise."""
        m = _TOKEN.match(token.strip())
        if m is None:
            raise TokenError("malformed token")
        row = await self.db.token_get(int(m.group(1)))
        # Compare even when the row is missing, so timing does not tell which ids exist.
        stored = bytes(row["secret_sha256"]) if row else b"\0" * 32
        if not hmac.compare_digest(stored, _digest(m.group(2))) or row is None:
            raise TokenError("unknown token")
        now = self.clock()
        if row["revoked_at"] is not None:
            raise TokenError("token revoked")
        if row["expires_at"] is not None and now >= float(row["expires_at"]):
            raise TokenError("token expired")
        await self.db.token_used(int(row["id"]), now)
        return Principal(
            token_id=int(row["id"]),
            name=str(row["name"]),
            scopes=frozenset(str(row["scopes"]).split()),
        )

    async def all(self) -> list[TokenView]:
        return [
            TokenView(
                id=int(r["id"]),
                name=str(r["name"]),
                scopes=tuple(str(r["scopes"]).split()),
                created_at=float(r["created_at"]),
                created_by=str(r["created_by"]),
                expires_at=r["expires_at"],
                last_used_at=r["last_used_at"],
                revoked_at=r["revoked_at"],
            )
            for r in await self.db.tokens()
        ]

    async def revoke(self, name: str, actor: Actor) -> None:
        row = await self.db.token_by_name(name)
        if row is None:
            raise TokenError(f"no token named {name!r}")
        if row["revoked_at"] is not None:
            raise TokenError(f"token {name!r} is already revoked")
        entry = await self.audit.entry(actor, "token.revoke", f"token:{row['id']}", "API access")
        await self.db.token_revoke(int(row["id"]), self.clock(), entry)
