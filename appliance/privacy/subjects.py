"""Data subjects: who each call (and later transcript, report, lead, consent) is about.

A subject is found by the blind index of its normalised identifier, so "everything about
+46 70 123 45 67" is `items(parse("+46 70 123 45 67"))`: one indexed query.
"""

from __future__ import annotations

from collections.abc import Collection
from typing import Any

from appliance.privacy import identifiers
from appliance.privacy.identifiers import Identifier
from appliance.privacy.keyring import Keyring
from appliance.store import CdrRow, Database, StaleKeyError, SubjectDraft


class Subjects:
    def __init__(
        self,
        db: Database,
        keyring: Keyring,
        *,
        region: str,
        extensions: Collection[str],
        own_numbers: Collection[str],
    ) -> None:
        self.db = db
        self.keyring = keyring
        self.region = region
        self.extensions = frozenset(extensions)
        # The box's own line numbers are not people.
        self.own_numbers = frozenset(own_numbers)

    def parse(self, raw: str) -> Identifier:
        """An operator's input (number or e-mail); IdentifierError names what is wrong."""
        return identifiers.parse(raw, self.region, self.extensions)

    def from_caller_id(self, raw: str) -> Identifier | None:
        if raw.strip() in self.own_numbers:
            return None
        return identifiers.from_caller_id(raw, self.region, self.extensions)

    async def cdr_drafts(self, cdr: CdrRow) -> list[tuple[SubjectDraft, str]]:
        """The call's people (caller, callee) as subject drafts, for `Database.add_cdr`."""
        out = []
        for raw, role in ((cdr.calling_number, "caller"), (cdr.dialed_number, "callee")):
            ident = self.from_caller_id(raw)
            if ident is not None:
                out.append((await self.keyring.draft_subject(ident), role))
        return out

    async def add_cdr(self, cdr: CdrRow) -> bool:
        """`Database.add_cdr` with the call linked to its subjects, in one transaction."""
        try:
            return await self.db.add_cdr(cdr, await self.cdr_drafts(cdr))
        except StaleKeyError:
            self.keyring.forget()  # the master key was rotated by another process
            return await self.db.add_cdr(cdr, await self.cdr_drafts(cdr))

    async def ensure(self, ident: Identifier) -> int:
        try:
            return await self.db.ensure_subject(await self.keyring.draft_subject(ident))
        except StaleKeyError:
            self.keyring.forget()
            return await self.db.ensure_subject(await self.keyring.draft_subject(ident))

    async def call_key_subjects(self, call_id: str) -> list[int]:
        """Whose data keys a call's files are encrypted under: the call's subjects, or — for a
        call that names nobody — a subject of its own, so it can still be shredded."""
        found = await self.db.call_subject_ids(call_id)
        return found or [await self.ensure(Identifier("call", call_id))]

    async def items(self, ident: Identifier) -> list[dict[str, Any]]:
        return await self.db.subject_items(await self.keyring.blind_index(ident))
