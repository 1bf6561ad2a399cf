"""Users and lines as the admin pages and API show them, with the checks an admin console
needs beyond `Users` itself: nobody disables or resets their own account from here, the last
active admin stays, an operator's lines must exist, a disabled account is not reset.

Each refusal is a UserError naming why, raised before anything is written.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from appliance.admin.users import ROLE_SCOPES, UserError, Users
from appliance.config import Config, LineConfig
from appliance.models.manifest import Manifest, ModelError, load_manifest
from appliance.privacy import Actor
from appliance.privacy.retention import NOT_PER_LINE, Policies, RetentionError
from appliance.privacy.ropa import BASIS_ARTICLE


@dataclass(frozen=True)
class UserRow:
    username: str
    role: str
    lines: list[str]
    must_change: bool
    created_at: float
    created_by: str
    last_login_at: float | None
    locked: bool
    disabled: bool
    disabled_at: float | None


def _row(r: dict[str, Any], now: float) -> UserRow:
    return UserRow(
        username=str(r["username"]),
        role=str(r["role"]),
        lines=[x for x in str(r["lines"] or "").split(",") if x],
        must_change=bool(r["must_change"]),
        created_at=float(r["created_at"]),
        created_by=str(r["created_by"]),
        last_login_at=None if r["last_login_at"] is None else float(r["last_login_at"]),
        locked=r["locked_until"] is not None and float(r["locked_until"]) > now,
        disabled=r["disabled_at"] is not None,
        disabled_at=None if r["disabled_at"] is None else float(r["disabled_at"]),
    )


async def user_rows(users: Users) -> list[UserRow]:
    now = users.clock()
    return [_row(r, now) for r in await users.db.users()]


def roles() -> dict[str, list[str]]:
    return {role: sorted(scopes) for role, scopes in ROLE_SCOPES.items()}


async def create(
    users: Users, cfg: Config, *, username: str, role: str, lines: Sequence[str], actor: Actor
) -> str:
    """A new user; their one-time password (shown once)."""
    known = {ln.name for ln in cfg.lines}
    chosen = [ln for ln in dict.fromkeys(x.strip() for x in lines) if ln]
    unknown = [ln for ln in chosen if ln not in known]
    if unknown:
        raise UserError(f"no line named {unknown[0]!r} (lines: {', '.join(sorted(known))})")
    if role != "operator" and chosen:
        raise UserError("only operators are limited to lines; other roles see every line")
    return await users.create(username.strip().lower(), role, actor, lines=chosen)


async def _target(users: Users, username: str, by: str | None, verb: str) -> dict[str, Any]:
    if by is not None and username == by:
        raise UserError(
            f"you cannot {verb} your own account here"
            + (" (change your password on the password page)" if verb == "reset" else "")
        )
    row = await users.db.user_by_name(username)
    if row is None:
        raise UserError(f"no user {username!r}")
    return row


async def reset(users: Users, username: str, actor: Actor, *, by: str | None) -> str:
    row = await _target(users, username, by, "reset")
    if row["disabled_at"] is not None:
        raise UserError(f"user {username!r} is disabled; a disabled account is not reset")
    return await users.reset(username, actor)


async def disable(users: Users, username: str, actor: Actor, *, by: str | None) -> None:
    row = await _target(users, username, by, "disable")
    if row["disabled_at"] is not None:
        raise UserError(f"user {username!r} is already disabled")
    if row["role"] == "admin":
        admins = [
            r for r in await users.db.users() if r["role"] == "admin" and r["disabled_at"] is None
        ]
        if len(admins) <= 1:
            raise UserError("the last active admin cannot be disabled")
    await users.disable(username, actor)


# ---- lines (agent profiles): read-only, from the config
@dataclass(frozen=True)
class LineView:
    name: str
    extension: str
    kind: str
    language: str
    voice: str
    """The Piper voice it speaks with (the line's, or the manifest's for its language)."""
    voice_source: str
    system_prompt: str
    """Empty: the agent's built-in receptionist instructions."""
    greeting_text: str
    recording: str
    record_legs: list[str]
    consent_prompt: str
    transfer_to: str
    max_duration_s: int
    purpose: str
    lawful_basis: str
    lawful_basis_article: str
    summary_schema: str
    retention_days: dict[str, int]
    """Category -> days in force on this line (the categories kept per line)."""
    retention_overrides: dict[str, int]
    """The line's own figures (`[[lines]] retention_days`)."""


def _voice(line: LineConfig, manifest: Manifest | None) -> tuple[str, str]:
    if line.voice:
        return line.voice, "line"
    if line.kind != "agent":
        return "", "none"
    if manifest is None:
        return "", "model manifest unreadable"
    entry = manifest.voice_for("en" if line.language == "auto" else line.language)
    if entry is None:
        return "", "no voice for this language (English is used)"
    return entry.name, f"manifest voice for {line.language}"


def lines(cfg: Config) -> list[LineView]:
    try:
        policies: Policies | None = Policies.from_config(cfg)
    except RetentionError:
        policies = None
    try:
        manifest: Manifest | None = load_manifest()
    except ModelError:
        manifest = None
    out = []
    for ln in cfg.lines:
        voice, source = _voice(ln, manifest)
        days = {}
        if policies is not None:
            days = {c: policies.days(c, ln.name) for c in policies.default if c not in NOT_PER_LINE}
        out.append(
            LineView(
                name=ln.name,
                extension=ln.extension,
                kind=ln.kind,
                language=ln.language,
                voice=voice,
                voice_source=source,
                system_prompt=ln.system_prompt,
                greeting_text=ln.greeting_text,
                recording=ln.recording,
                record_legs=list(ln.record_legs),
                consent_prompt=ln.consent_prompt if ln.recording == "after-consent" else "",
                transfer_to=ln.transfer_to,
                max_duration_s=ln.max_duration_s,
                purpose=ln.purpose,
                lawful_basis=ln.lawful_basis,
                lawful_basis_article=BASIS_ARTICLE[ln.lawful_basis],
                summary_schema=str(ln.summary_schema) if ln.summary_schema else "",
                retention_days=days,
                retention_overrides=dict(ln.retention_days),
            )
        )
    return out
