"""Admin UI users: roles, argon2id passwords, one-time first passwords, lockout, sessions.

Roles map to the same scopes API tokens carry, so one guard (`appliance.admin.auth.scope`)
decides for both and the authorisation matrix is a table, not scattered `if`s:

- admin: the system, lines and users;
- dpo: rights requests, holds, retention, audit, breaches, ROPA, review, do-not-call, calls;
- operator: calls and transcripts of their own lines, the do-not-call list;
- auditor: read-only registers and the audit log.
"""

from __future__ import annotations

import contextlib
import hashlib
import re
import secrets
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Literal, cast, get_args

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError

from appliance.errors import CallvaultError
from appliance.privacy.audit import Actor, AuditLog
from appliance.store import Database

Role = Literal["admin", "dpo", "operator", "auditor"]
ROLES: tuple[str, ...] = get_args(Role)
ROLE_SCOPES: dict[str, frozenset[str]] = {
    "admin": frozenset(
        {"system:read", "system:write", "lines:read", "lines:write", "users:read", "users:write"}
        | {"metrics:read", "alerts:read", "alerts:write"}
        | {"pbx:read", "pbx:write"}
    ),
    "dpo": frozenset(
        {
            "calls:read",
            "rights:read",
            "rights:write",
            "rights:export",
            "holds:read",
            "holds:write",
            "dnc:read",
            "dnc:write",
            "retention:read",
            "retention:run",
            "audit:read",
            "ropa:read",
            "review:read",
            "review:write",
            "breach:read",
            "breach:write",
            "alerts:read",
            "leads:read",
            "campaigns:read",
        }
    ),
    "operator": frozenset(
        {"calls:read", "dnc:read", "dnc:write"}
        | {"leads:read", "leads:write", "campaigns:read", "campaigns:write"}
    ),
    "auditor": frozenset(
        {"audit:read", "ropa:read", "breach:read", "rights:read", "holds:read", "retention:read"}
    ),
}
LOCK_AFTER = 5
LOCK_S = 15 * 60
IDLE_S = 30 * 60
ABSOLUTE_S = 12 * 3600
MIN_PASSWORD = 12
_USERNAME = re.compile(r"^[a-z][a-z0-9_.-]{1,31}$")
_COMMON = {"password", "passw0rd", "123456789012", "qwertyuiopas", "callvault", "administrator"}


class AuthError(CallvaultError):
    """Login failed; the message is safe to show (it never says which part was wrong)."""


class UserError(CallvaultError):
    pass


@dataclass(frozen=True)
class User:
    id: int
    username: str
    role: Role
    must_change: bool
    lines: tuple[str, ...]

    @property
    def scopes(self) -> frozenset[str]:
        return ROLE_SCOPES[self.role]

    @property
    def actor(self) -> Actor:
        return Actor(name=f"user:{self.username}", role=self.role)

    def sees_line(self, line: str | None) -> bool:
        """Operators see only their lines; other roles with calls:read see every line."""
        return self.role != "operator" or (line is not None and line in self.lines)


def _user(row: dict[str, object]) -> User:
    lines = str(row["lines"] or "")
    return User(
        id=int(cast(int, row["id"])),
        username=str(row["username"]),
        role=cast(Role, row["role"]),
        must_change=bool(row["must_change"]),
        lines=tuple(x for x in lines.split(",") if x),
    )


def session_digest(cookie: str) -> bytes:
    return hashlib.sha256(cookie.encode()).digest()


def one_time_password() -> str:
    # Four groups of five from an unambiguous alphabet: easy to read aloud, 100 bits.
    alphabet = "abcdefghjkmnpqrstuvwxyz23456789"
    return "-".join("".join(secrets.choice(alphabet) for _ in range(5)) for _ in range(4))


def check_password(password: str, username: str) -> None:
    if len(password) < MIN_PASSWORD:
        raise UserError(f"the password must have at least {MIN_PASSWORD} characters")
    if password.lower() in _COMMON or username.lower() in password.lower():
        raise UserError("the password is too easy to guess")
    if len(set(password)) < 6:
        raise UserError("the password repeats too few characters")


class Users:
    def __init__(
        self,
        db: Database,
        audit: AuditLog,
        clock: Callable[[], float] = time.time,
        hasher: PasswordHasher | None = None,
    ) -> None:
        self.db = db
        self.audit = audit
        self.clock = clock
        self.hasher = hasher or PasswordHasher()
        # A dummy hash to verify against for unknown users, so timing does not reveal them.
        self._dummy = self.hasher.hash(secrets.token_hex(16))

    async def create(
        self, username: str, role: str, actor: Actor, *, lines: Sequence[str] = ()
    ) -> str:
        """Create a user; returns the one-time password (changed at first login)."""
        if not _USERNAME.match(username):
            raise UserError(
                f"user name {username!r} is not valid (2-32 lowercase letters, digits, _ . -)"
            )
        if role not in ROLES:
            raise UserError(f"unknown role {role!r} (one of {', '.join(ROLES)})")
        if await self.db.user_by_name(username) is not None:
            raise UserError(f"user {username!r} exists")
        if role == "operator" and not lines:
            raise UserError("an operator needs the lines they work on")
        password = one_time_password()
        entry = await self.audit.entry(
            actor, "user.create", "user", "administration", f"name={username} role={role}"
        )
        await self.db.user_add(
            {
                "username": username,
                "role": role,
                "password_hash": self.hasher.hash(password),
                "must_change": 1,
                "lines": ",".join(lines),
                "created_at": self.clock(),
                "created_by": actor.name,
            },
            entry,
        )
        return password

    async def first_admin(self, actor: Actor, name: str = "admin") -> tuple[str, str] | None:
        """At install: the first admin and its one-time password; None if users exist."""
        if await self.db.count_users() > 0:
            return None
        return name, await self.create(name, "admin", actor)

    async def demo_login(self, actor: Actor) -> tuple[str, str | None]:
        """For `callvault demo`: the admin's name and a one-time password while the admin has
        not chosen their own yet (None once they have: the demo never overrides it)."""
        first = await self.first_admin(actor)
        if first is not None:
            return first
        row = await self.db.user_by_name("admin")
        if row is None or row["disabled_at"] is not None:
            raise UserError("the demo's user `admin` is missing or disabled")
        if not row["must_change"]:
            return "admin", None
        return "admin", await self.reset("admin", actor)

    async def all(self) -> list[User]:
        return [_user(r) for r in await self.db.users()]

    async def get(self, user_id: int) -> User:
        row = await self.db.user_get(user_id)
        if row is None:
            raise UserError(f"no user #{user_id}")
        return _user(row)

    async def login(self, username: str, password: str) -> tuple[User, str]:
        """Check the password; on success a new session (cookie value, shown once)."""
        now = self.clock()
        row = await self.db.user_by_name(username.strip().lower())
        if row is None or row["disabled_at"] is not None:
            self._burn(password)
            raise AuthError("wrong user name or password")
        if row["locked_until"] is not None and float(row["locked_until"]) > now:
            raise AuthError("too many failed logins: the account is locked for a while")
        try:
            self.hasher.verify(str(row["password_hash"]), password)
        except (VerificationError, InvalidHashError):
            failed = int(row["failed_logins"]) + 1
            changes: dict[str, object] = {"failed_logins": failed}
            audit = None
            if failed >= LOCK_AFTER:
                changes = {"failed_logins": 0, "locked_until": now + LOCK_S}
                audit = await self.audit.entry(
                    Actor.system("admin-login"), "user.lock", f"user:{row['id']}", "security",
                    f"after {failed} failed logins",
                )  # fmt: skip
            await self.db.user_update(int(row["id"]), changes, audit)
            raise AuthError("wrong user name or password") from None
        user = _user(row)
        return user, await self._new_session(user, "user.login")

    def _burn(self, password: str) -> None:
        with contextlib.suppress(VerificationError, InvalidHashError):
            self.hasher.verify(self._dummy, password)

    async def _new_session(self, user: User, action: str, replaces: bytes | None = None) -> str:
        cookie = secrets.token_urlsafe(32)
        now = self.clock()
        entry = await self.audit.entry(user.actor, action, f"user:{user.id}", "administration")
        await self.db.session_add(
            session_digest(cookie), user.id, now, now + IDLE_S, entry, replaces=replaces
        )
        return cookie

    async def session(self, cookie: str) -> User | None:
        """The session's user, sliding its idle expiry; None when unknown or expired."""
        digest = session_digest(cookie)
        row = await self.db.session_get(digest)
        now = self.clock()
        if row is None or row["disabled_at"] is not None:
            return None
        if float(row["expires_at"]) <= now or now - float(row["last_login_at"] or 0) > ABSOLUTE_S:
            await self.db.session_delete(digest)
            return None
        if now - float(row["last_seen_at"]) > 60:  # write at most once a minute per session
            await self.db.session_touch(digest, now, now + IDLE_S)
        return _user(row)

    async def logout(self, cookie: str) -> None:
        await self.db.session_delete(session_digest(cookie))

    async def change_password(self, user: User, old: str, new: str, cookie: str) -> str:
        """Set a new password; every other session ends and this one gets a new id."""
        row = await self.db.user_get(user.id)
        if row is None:
            raise UserError("the user no longer exists")
        try:
            self.hasher.verify(str(row["password_hash"]), old)
        except (VerificationError, InvalidHashError):
            raise UserError("the current password is wrong") from None
        if new == old:
            raise UserError("the new password must differ from the current one")
        check_password(new, user.username)
        entry = await self.audit.entry(user.actor, "user.password", f"user:{user.id}", "security")
        await self.db.user_update(
            user.id,
            {"password_hash": self.hasher.hash(new), "must_change": 0},
            entry,
            end_sessions=True,
        )
        refreshed = await self.get(user.id)
        return await self._new_session(refreshed, "user.session.renew")

    async def reset(self, username: str, actor: Actor) -> str:
        """A new one-time password (an admin's action); the user's sessions end."""
        row = await self.db.user_by_name(username)
        if row is None:
            raise UserError(f"no user {username!r}")
        password = one_time_password()
        entry = await self.audit.entry(actor, "user.reset", f"user:{row['id']}", "administration")
        await self.db.user_update(
            int(row["id"]),
            {
                "password_hash": self.hasher.hash(password),
                "must_change": 1,
                "failed_logins": 0,
                "locked_until": None,
            },
            entry,
            end_sessions=True,
        )
        return password

    async def disable(self, username: str, actor: Actor) -> None:
        row = await self.db.user_by_name(username)
        if row is None:
            raise UserError(f"no user {username!r}")
        entry = await self.audit.entry(actor, "user.disable", f"user:{row['id']}", "administration")
        await self.db.user_update(
            int(row["id"]), {"disabled_at": self.clock()}, entry, end_sessions=True
        )
