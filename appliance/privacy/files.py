"""Encrypted files on disk: write from a plaintext source, read back as a verified stream.

A file's key is derived from the data keys of its subjects and a context string naming what
the file is (e.g. `recording:<call>:<line>:<leg>`), so a file renamed onto another row's path
will not open.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import AsyncIterator, Sequence
from pathlib import Path

from appliance.privacy import stream
from appliance.privacy.keyring import Keyring


def _encrypt_to(src: Path, dest: Path, key: bytes, salt: bytes) -> stream.Sealed:
    dest.parent.mkdir(parents=True, exist_ok=True, mode=0o750)
    tmp = dest.with_name(dest.name + ".part")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o640)
    try:
        with src.open("rb") as fin, os.fdopen(fd, "wb") as fout:
            sealed = stream.encrypt_stream(fin, fout, key, salt)
            fout.flush()
            os.fsync(fout.fileno())
        tmp.replace(dest)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return sealed


class FileVault:
    def __init__(self, keyring: Keyring) -> None:
        self.keyring = keyring

    async def encrypt(
        self, src: Path, dest: Path, subject_ids: Sequence[int], context: str
    ) -> stream.Sealed:
        """Encrypt `src` into `dest` (written as `dest.part`, fsynced, renamed)."""
        salt = stream.new_salt()
        key = await self.keyring.file_key(subject_ids, salt, context)
        return await asyncio.to_thread(_encrypt_to, src, dest, key, salt)

    async def decrypt(
        self, path: Path, subject_ids: Sequence[int], context: str
    ) -> AsyncIterator[bytes]:
        """Verified plaintext chunks; StreamError on tampering or truncation (possibly late)."""
        fh = await asyncio.to_thread(path.open, "rb")
        try:
            _, _, salt = await asyncio.to_thread(stream.read_header, fh)
            key = await self.keyring.file_key(subject_ids, salt, context)
            await asyncio.to_thread(fh.seek, 0)
            chunks = stream.decrypt_stream(fh, lambda _salt: key)
            while (chunk := await asyncio.to_thread(next, chunks, None)) is not None:
                yield chunk
        finally:
            await asyncio.to_thread(fh.close)
