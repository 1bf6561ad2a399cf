"""The key hierarchy: master key → (system keys, per-subject data keys) → data.

    master key (file 0600 or scrypt(passphrase); never in the database)
      ├─ keyring 'index'  HMAC key of the blind indexes (phone numbers, e-mails)
      ├─ keyring 'values' seals values the box keeps beyond erasure (do-not-call numbers)
      ├─ keyring 'audit'  HMAC key of the audit chain
      ├─ keyring 'search' HMAC key of the transcript search tokens (words never stored)
      └─ subjects.wrapped_key, one data key per subject
            └─ file keys: HKDF(data keys of all the file's subjects, per-file salt, context)

Rotating the master key re-wraps the rows above and changes nothing below, so blind indexes,
audit hashes and encrypted files stay valid. Erasing a subject deletes its wrapped key: every
file whose key was derived from it, in any copy, can no longer be opened.

Data keys are unwrapped per use and not cached, so an erased subject's key does not linger in a
long-running process; the system keys are cached (they are needed on every call).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

from appliance.privacy import crypto
from appliance.privacy.identifiers import Identifier
from appliance.privacy.master import MasterKeyError, MasterKeySource
from appliance.store import Database, SubjectDraft

log = logging.getLogger(__name__)

SystemKey = Literal["index", "values", "audit", "search"]


class KeyShreddedError(crypto.CryptoError):
    """The data key is gone: the subject was erased, so this data is unreadable by design."""


@dataclass(frozen=True)
class Rotation:
    old_kek: str
    new_kek: str
    rewrapped: int


def _subject_aad(blind_index: bytes) -> bytes:
    # Bound to the subject's blind index: a wrapped key copied onto another row won't open.
    return b"callvault subject-key|" + blind_index


def _keyring_aad(name: bytes) -> bytes:
    return b"callvault keyring|" + name


class Keyring:
    def __init__(self, db: Database, source: MasterKeySource) -> None:
        self.db = db
        self.source = source
        self._master: tuple[bytes, str] | None = None
        self._system: dict[str, bytes] = {}

    # ---- master key
    async def master(self) -> tuple[bytes, str]:
        """(master key, its id), checked against the database; finishes a crashed rotation."""
        if self._master is None:
            key = self.source.load()
            kid = crypto.key_id(key)
            used = await self.db.keyring_kek_ids()
            if used and used != {kid}:
                staged = self.source.staged()
                if staged is not None and used == {crypto.key_id(staged)}:
                    log.warning("finishing an interrupted master key rotation")
                    self.source.commit()
                    key, kid = staged, crypto.key_id(staged)
                else:
                    raise MasterKeyError(
                        f"the master key (id {kid}) does not open this database, whose keys "
                        f"are wrapped under {', '.join(sorted(used))}: wrong key file or "
                        "passphrase"
                    )
            self._master = (key, kid)
        return self._master

    def forget(self) -> None:
        """Drop cached keys (after another process rotated the master key)."""
        self._master = None
        self._system.clear()

    async def system_key(self, name: SystemKey) -> bytes:
        if name in self._system:
            return self._system[name]
        master, kid = await self.master()
        stored = await self.db.keyring_get(name)
        if stored is None:
            fresh = crypto.wrap_key(master, crypto.new_key(), _keyring_aad(name.encode()))
            stored = await self.db.keyring_add(name, fresh, kid)
        wrapped, kek = stored
        if kek != kid:
            raise MasterKeyError(f"keyring {name!r} is wrapped under {kek}, the master is {kid}")
        key = crypto.unwrap_key(master, wrapped, _keyring_aad(name.encode()), f"keyring {name}")
        self._system[name] = key
        return key

    # ---- blind index and system-held values
    async def blind_index(self, ident: Identifier) -> bytes:
        return crypto.keyed_hash(await self.system_key("index"), ident.canonical.encode())

    async def seal_value(self, plaintext: str, aad: bytes) -> bytes:
        return crypto.seal(await self.system_key("values"), plaintext.encode(), aad)

    async def open_value(self, blob: bytes, aad: bytes, what: str) -> str:
        return crypto.open_sealed(await self.system_key("values"), blob, aad, what).decode()

    # ---- subjects
    async def draft_subject(self, ident: Identifier) -> SubjectDraft:
        """A new subject's row: fresh data key, the identifier sealed under it."""
        await self.system_key("index")  # the key ring exists before any subject refers to it
        master, kid = await self.master()
        bi = await self.blind_index(ident)
        data_key = crypto.new_key()
        return SubjectDraft(
            kind=ident.kind,
            blind_index=bi,
            value_enc=crypto.seal(data_key, ident.canonical.encode(), b"callvault subject-value"),
            wrapped_key=crypto.wrap_key(master, data_key, _subject_aad(bi)),
            kek_id=kid,
        )

    async def subject_key(self, subject_id: int) -> bytes:
        stored = await self.db.subject_key(subject_id)
        if stored is None:
            raise KeyShreddedError(f"subject {subject_id} was erased: its data key is destroyed")
        bi, wrapped, kek = stored
        master, kid = await self.master()
        if kek != kid:
            self.forget()  # rotated by another process since this one loaded the master key
            master, kid = await self.master()
        return crypto.unwrap_key(master, wrapped, _subject_aad(bi), f"subject {subject_id} key")

    async def subject_value(self, subject_id: int, value_enc: bytes) -> str:
        key = await self.subject_key(subject_id)
        return crypto.open_sealed(
            key, value_enc, b"callvault subject-value", f"subject {subject_id}"
        ).decode()

    async def file_key(self, subject_ids: Sequence[int], salt: bytes, context: str) -> bytes:
        """A file's key: needs every one of its subjects' data keys (erasing any shreds it)."""
        if not subject_ids:
            raise ValueError("a file key needs at least one subject")
        keys = [await self.subject_key(sid) for sid in subject_ids]
        info = b"callvault file|" + context.encode()
        return crypto.derive_key(b"".join(keys), salt=salt, info=info)

    # ---- rotation
    async def rotate(self, new_passphrase: bytes | None = None) -> Rotation:
        old, old_kid = await self.master()
        await self.system_key("index")  # nothing to rotate is still a ring to start
        new = self.source.stage(new_passphrase)
        new_kid = crypto.key_id(new)

        def rewrap(table: str, ident: bytes, wrapped: bytes) -> bytes:
            aad = _keyring_aad(ident) if table == "keyring" else _subject_aad(ident)
            key = crypto.unwrap_key(old, wrapped, aad, f"{table} key")
            return crypto.wrap_key(new, key, aad)

        count = await self.db.rewrap_all(old_kid, new_kid, rewrap)
        self.source.commit()
        self.forget()
        self._master = (new, new_kid)
        return Rotation(old_kek=old_kid, new_kek=new_kid, rewrapped=count)
