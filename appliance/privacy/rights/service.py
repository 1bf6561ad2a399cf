"""`Rights`: the Python API for data subject requests (the CLI and, later, the JSON API use it).

    create → identity_unverified ─ attest(note) / send_code + verify_code ─→ pending
    pending ─ process ─→ in_processing ─ steps ─→ complete
                                         └ a step fails → error ─ process (resumes) ─→ …
    identity_unverified / pending / error ─ refuse(reason) ─→ denied

Deadline: one month from receipt, extendable once by two months with a recorded reason.
"""

from __future__ import annotations

import hmac
import json
import secrets
import time
from collections.abc import Awaitable, Callable, Sequence
from pathlib import Path
from typing import Any, Protocol

from appliance.config import Config
from appliance.privacy import crypto
from appliance.privacy.audit import Actor
from appliance.privacy.holds import LegalHolds
from appliance.privacy.identifiers import Identifier
from appliance.privacy.rights.context import Context, run_steps
from appliance.privacy.rights.model import (
    EXTENSION_MONTHS,
    MAY_PROCESS,
    MAY_REFUSE,
    MAY_VERIFY,
    RESPONSE_MONTHS,
    Kind,
    RightsError,
    RightsRequest,
    Status,
    VerificationError,
    add_months,
    text,
)
from appliance.privacy.rights.steps import PIPELINES, RECTIFIABLE
from appliance.privacy.service import Privacy
from appliance.store import Database

CODE_DIGITS = 6
CODE_TTL_S = 15 * 60
CODE_MAX_ATTEMPTS = 5
CHANNELS = frozenset({"cli", "api", "ui", "phone", "email", "letter"})


class CodeSender(Protocol):
    """Delivers a one-time code to the subject's own number or address.

    The telephony side implements it by an outbound call that speaks the code (issue: spoken
    verification); until then an operator can read it out, or attest instead.
    """

    async def deliver(self, ident: Identifier, code: str, request_id: int) -> None: ...


BookingsErased = Callable[[Sequence[tuple[int, str]]], Awaitable[None]]
"""Told (booking id, line) of the bookings an erasure deleted, so a copy kept off the box's
database (a line's CalDAV calendar) goes at once; a failure is logged, not fatal."""


def _aad(request_id: int) -> bytes:
    return f"callvault request|{request_id}".encode()


def _view(r: dict[str, Any]) -> RightsRequest:
    return RightsRequest(
        id=int(r["id"]),
        kind=Kind(r["kind"]),
        status=Status(r["status"]),
        subject_kind=str(r["subject_kind"]),
        channel=str(r["channel"]),
        received_at=float(r["received_at"]),
        due_at=float(r["due_at"]),
        extended=bool(r["extended"]),
        extension_reason=str(r["extension_reason"]),
        verified_at=r["verified_at"],
        verified_by=str(r["verified_by"]),
        verification=str(r["verification"]),
        refused_reason=str(r["refused_reason"]),
        response=json.loads(r["response"]) if r["response"] else {},
        export_path=str(r["export_path"]),
        closed_at=r["closed_at"],
    )


class Rights:
    def __init__(
        self,
        privacy: Privacy,
        *,
        clock: Callable[[], float] = time.time,
        code_sender: CodeSender | None = None,
        exports_dir: Path | None = None,
        on_bookings_erased: BookingsErased | None = None,
    ) -> None:
        self.privacy = privacy
        self.on_bookings_erased = on_bookings_erased
        self.cfg: Config = privacy.cfg
        self.db: Database = privacy.db
        self.clock = clock
        self.code_sender = code_sender
        self.exports_dir = exports_dir or privacy.cfg.state_dir / "exports"
        self.holds = LegalHolds(privacy.db, privacy.keyring, privacy.audit, clock)

    # ---- intake
    async def create(
        self,
        kind: Kind | str,
        identifier: str,
        actor: Actor,
        *,
        channel: str = "cli",
        params: dict[str, str] | None = None,
    ) -> RightsRequest:
        """Record a request; bad input (kind, identifier, parameters) stores nothing."""
        try:
            k = Kind(kind)
        except ValueError:
            raise RightsError(
                f"unknown request kind {kind!r} (one of {', '.join(k.value for k in Kind)})"
            ) from None
        if channel not in CHANNELS:
            raise RightsError(f"unknown channel {channel!r} ({', '.join(sorted(CHANNELS))})")
        ident = self.privacy.subjects.parse(identifier)
        params = dict(params or {})
        if k is Kind.RECTIFICATION:
            if params.get("field") not in RECTIFIABLE:
                raise RightsError(
                    f"rectification needs field= one of {', '.join(sorted(RECTIFIABLE))}"
                )
            params["value"] = text(params.get("value", ""), "value")
        elif params:
            raise RightsError(f"{k.value} requests take no parameters")
        keyring = self.privacy.keyring
        bi = await keyring.blind_index(ident)
        now = self.clock()
        # The request's id is not known before the insert: seal under the blind index instead.
        row = {
            "kind": k.value,
            "status": Status.IDENTITY_UNVERIFIED.value,
            "subject_kind": ident.kind,
            "blind_index": bi,
            "identifier_enc": await keyring.seal_value(ident.value, b"request-id|" + bi),
            "params_enc": (
                await keyring.seal_value(json.dumps(params), b"request-params|" + bi)
                if params
                else b""
            ),
            "channel": channel,
            "received_at": now,
            "due_at": add_months(now, RESPONSE_MONTHS),
            "updated_at": now,
        }
        entry = await self.privacy.audit.entry(
            actor, "request.create", "request", "data subject request", f"kind={k.value}"
        )
        return await self.get(await self.db.rr_insert(row, entry))

    async def get(self, request_id: int) -> RightsRequest:
        return _view(await self._row(request_id))

    async def _row(self, request_id: int) -> dict[str, Any]:
        row = await self.db.rr_get(request_id)
        if row is None:
            raise RightsError(f"no rights request {request_id}")
        return row

    async def _identifier(self, row: dict[str, Any]) -> Identifier:
        if not row["identifier_enc"]:
            raise RightsError(f"request {row['id']}: the subject was erased")
        bi = bytes(row["blind_index"])
        value = await self.privacy.keyring.open_value(
            bytes(row["identifier_enc"]), b"request-id|" + bi, f"request {row['id']}"
        )
        return Identifier(row["subject_kind"], value)

    async def _params(self, row: dict[str, Any]) -> dict[str, Any]:
        if not row["params_enc"]:
            return {}
        bi = bytes(row["blind_index"])
        raw = await self.privacy.keyring.open_value(
            bytes(row["params_enc"]), b"request-params|" + bi, f"request {row['id']}"
        )
        return dict(json.loads(raw))

    async def log(self, request_id: int) -> list[dict[str, Any]]:
        await self._row(request_id)
        return await self.db.rr_log(request_id)

    async def all(self, *, open_only: bool = False) -> list[RightsRequest]:
        return [_view(r) for r in await self.db.rr_list(open_only=open_only)]

    async def overdue(self) -> list[RightsRequest]:
        return [_view(r) for r in await self.db.rr_list(open_only=True, due_before=self.clock())]

    # ---- identity verification
    def _require(self, row: dict[str, Any], allowed: frozenset[Status], action: str) -> None:
        if Status(row["status"]) not in allowed:
            raise RightsError(f"request {row['id']} is {row['status']}: cannot {action}")

    async def _verified(self, row: dict[str, Any], actor: Actor, how: str, step: str) -> None:
        now = self.clock()
        await self.db.rr_update(
            int(row["id"]),
            {
                "status": Status.PENDING,
                "verified_at": now,
                "verified_by": actor.name,
                "verification": how,
                "code_hash": None,
                "updated_at": now,
            },
            log=(now, step, "ok", "identity verified"),
            audit=await self.privacy.audit.entry(
                actor, "request.verify", f"request:{row['id']}", "identity verification", step
            ),
            expect_status=Status.IDENTITY_UNVERIFIED,
        )

    async def attest(self, request_id: int, actor: Actor, note: str) -> RightsRequest:
        """An admin attests the requester's identity; the note says how it was checked."""
        row = await self._row(request_id)
        self._require(row, MAY_VERIFY, "verify")
        try:
            note = text(note, "an attestation note (how the identity was checked)")
        except RightsError as exc:
            raise VerificationError(str(exc)) from None
        await self._verified(row, actor, f"attested: {note}", "attest")
        return await self.get(request_id)

    async def send_code(self, request_id: int, actor: Actor) -> None:
        """Issue a one-time code and hand it to the CodeSender (spoken to the subject)."""
        row = await self._row(request_id)
        self._require(row, MAY_VERIFY, "send a code")
        if self.code_sender is None:
            raise VerificationError("no code sender is configured: attest verification instead")
        code = f"{secrets.randbelow(10**CODE_DIGITS):0{CODE_DIGITS}d}"
        now = self.clock()
        await self.db.rr_update(
            request_id,
            {
                "code_hash": self._code_hash(request_id, code),
                "code_attempts": 0,
                "code_expires_at": now + CODE_TTL_S,
                "updated_at": now,
            },
            log=(now, "send_code", "info", "one-time code issued"),
            audit=await self.privacy.audit.entry(
                actor, "request.code", f"request:{request_id}", "identity verification"
            ),
        )
        await self.code_sender.deliver(await self._identifier(row), code, request_id)

    def _code_hash(self, request_id: int, code: str) -> bytes:
        # Keyed by the request: a code for one request is worthless for another.
        return crypto.keyed_hash(_aad(request_id), code.encode())

    async def verify_code(self, request_id: int, code: str, actor: Actor) -> RightsRequest:
        row = await self._row(request_id)
        self._require(row, MAY_VERIFY, "verify")
        now = self.clock()
        if row["code_hash"] is None:
            raise VerificationError(f"request {request_id}: no code was sent")
        if row["code_attempts"] >= CODE_MAX_ATTEMPTS:
            raise VerificationError(f"request {request_id}: too many wrong codes; send a new one")
        if now > float(row["code_expires_at"]):
            raise VerificationError(f"request {request_id}: the code has expired; send a new one")
        if not hmac.compare_digest(bytes(row["code_hash"]), self._code_hash(request_id, code)):
            await self.db.rr_update(
                request_id,
                {"code_attempts": int(row["code_attempts"]) + 1, "updated_at": now},
                log=(now, "verify_code", "error", "wrong code"),
            )
            raise VerificationError(f"request {request_id}: wrong code")
        await self._verified(row, actor, "one-time code", "verify_code")
        return await self.get(request_id)

    # ---- deadline, refusal
    async def extend(self, request_id: int, reason: str, actor: Actor) -> RightsRequest:
        row = await self._row(request_id)
        if row["closed_at"] is not None:
            raise RightsError(f"request {request_id} is closed")
        if row["extended"]:
            raise RightsError(f"request {request_id} was already extended (once is the limit)")
        reason = text(reason, "an extension reason")
        now = self.clock()
        await self.db.rr_update(
            request_id,
            {
                "extended": 1,
                "extension_reason": reason,
                "updated_at": now,
                "due_at": add_months(float(row["due_at"]), EXTENSION_MONTHS),
            },
            log=(now, "extend", "info", "deadline extended by two months"),
            audit=await self.privacy.audit.entry(
                actor, "request.extend", f"request:{request_id}", "data subject request"
            ),
        )
        return await self.get(request_id)

    async def refuse(self, request_id: int, reason: str, actor: Actor) -> RightsRequest:
        row = await self._row(request_id)
        self._require(row, MAY_REFUSE, "refuse")
        reason = text(reason, "a refusal reason")
        now = self.clock()
        await self.db.rr_update(
            request_id,
            {
                "status": Status.DENIED,
                "refused_reason": reason,
                "closed_at": now,
                "updated_at": now,
            },
            log=(now, "refuse", "info", "refused"),
            audit=await self.privacy.audit.entry(
                actor, "request.refuse", f"request:{request_id}", "data subject request"
            ),
            expect_status=str(row["status"]),
        )
        return await self.get(request_id)

    async def forward(
        self, request_id: int, controller: str, note: str, actor: Actor, *, export: bool = True
    ) -> RightsRequest:
        """Hand a request about data processed for another controller to that controller.

        Recorded on the request (to whom, why); with `export`, an access export of what the
        box holds about the subject is made (as its own, system-attested access request) and
        attached, so the controller can answer. The request is then closed as forwarded.
        """
        row = await self._row(request_id)
        self._require(row, MAY_REFUSE, "forward")
        controller = text(controller, "the controller it is forwarded to")
        note = text(note, "a forwarding note")
        response: dict[str, Any] = {"outcome": "forwarded", "forwarded_to": controller}
        export_path = ""
        if export:
            system = Actor.system("rights-forward")
            ident = await self._identifier(row)
            child = await self.create("access", ident.value, system, channel="cli")
            await self.attest(child.id, system, f"export for forwarding request {request_id}")
            done = await self.process(child.id, system)
            export_path = done.export_path
            response["export_request"] = child.id
        now = self.clock()
        await self.db.rr_update(
            request_id,
            {
                "status": Status.FORWARDED,
                "response": json.dumps(response),
                "export_path": export_path,
                "closed_at": now,
                "updated_at": now,
            },
            log=(now, "forward", "info", f"forwarded to {controller}: {note}"),
            audit=await self.privacy.audit.entry(
                actor,
                "request.forward",
                f"request:{request_id}",
                "data subject request",
                f"to={controller}",
            ),
            expect_status=str(row["status"]),
        )
        return await self.get(request_id)

    # ---- processing
    async def process(self, request_id: int, actor: Actor) -> RightsRequest:
        """Run the request's remaining steps; RightsError (logged) if one fails."""
        row = await self._row(request_id)
        self._require(row, MAY_PROCESS, "process")
        now = self.clock()
        await self.db.rr_update(
            request_id,
            {"status": Status.IN_PROCESSING, "updated_at": now},
            log=(now, "process", "info", f"from step {row['checkpoint']}"),
            expect_status=str(row["status"]),
        )
        kind = Kind(row["kind"])
        ctx = Context(
            rights=self,
            request_id=request_id,
            kind=kind.value,
            ident=await self._identifier(row),
            actor=actor,
            params=await self._params(row),
            state=json.loads(row["response"]) if row["response"] else {},
        )
        await run_steps(ctx, PIPELINES[kind], int(row["checkpoint"]))
        return await self.get(request_id)
