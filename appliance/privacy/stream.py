"""Streamed, chunked AES-256-GCM file encryption (recordings; later exports and backups).

File format `CVAE1` (all integers big-endian):

    header  = magic "CVAULTE1" (8) | chunk_size u32 (4) | salt (32)          44 bytes
    chunk_i = nonce (12) | AES-GCM(plaintext_i) with 16-byte tag             chunk_size+28
              every chunk holds chunk_size plaintext bytes except the last (0..chunk_size)
    AAD_i   = header | i u64 | final u8 (1 on the last chunk, else 0)

The file key is derived by the caller from the salt (HKDF over the data keys of the file's
subjects, so erasing any of them shreds the file). Binding the header and the chunk index in
every chunk's AAD means chunks cannot be reordered, dropped or moved between files; the `final`
flag means a file cut anywhere (even on a chunk boundary) or extended fails to decrypt. Chunks
are authenticated one by one, so a reader yields verified plaintext as it goes and learns of a
truncation at the end: consumers that must not act on partial data check for `StreamError`.
"""

from __future__ import annotations

import hashlib
import os
import struct
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import BinaryIO

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from appliance.privacy.crypto import NONCE_BYTES, TAG_BYTES, CryptoError

CIPHER = "cvae1"
MAGIC = b"CVAULTE1"
SALT_BYTES = 32
HEADER = struct.Struct(">8sI32s")
DEFAULT_CHUNK = 64 * 1024
MAX_CHUNK = 16 * 1024 * 1024


class StreamError(CryptoError):
    pass


@dataclass(frozen=True)
class Sealed:
    """What encrypting a stream produced: plaintext digest and sizes."""

    sha256: str
    plain_bytes: int
    stored_bytes: int


def new_salt() -> bytes:
    return os.urandom(SALT_BYTES)


def _aad(header: bytes, index: int, final: bool) -> bytes:
    return header + struct.pack(">QB", index, 1 if final else 0)


def encrypt_stream(
    src: BinaryIO, dst: BinaryIO, key: bytes, salt: bytes, chunk_size: int = DEFAULT_CHUNK
) -> Sealed:
    if len(salt) != SALT_BYTES or not 0 < chunk_size <= MAX_CHUNK:
        raise ValueError("salt must be 32 bytes and chunk_size 1..16 MiB")
    aead = AESGCM(key)
    header = HEADER.pack(MAGIC, chunk_size, salt)
    dst.write(header)
    digest = hashlib.sha256()
    plain = 0
    stored = len(header)
    index = 0
    chunk = src.read(chunk_size)
    while True:
        # Read one chunk ahead: only then is it known whether this one is the last.
        following = src.read(chunk_size) if len(chunk) == chunk_size else b""
        final = not following
        digest.update(chunk)
        nonce = os.urandom(NONCE_BYTES)
        body = aead.encrypt(nonce, chunk, _aad(header, index, final))
        dst.write(nonce)
        dst.write(body)
        plain += len(chunk)
        stored += NONCE_BYTES + len(body)
        if final:
            return Sealed(sha256=digest.hexdigest(), plain_bytes=plain, stored_bytes=stored)
        chunk = following
        index += 1


def read_header(src: BinaryIO) -> tuple[bytes, int, bytes]:
    """(header bytes, chunk size, salt); a clear error for anything not in this format."""
    header = src.read(HEADER.size)
    if len(header) < HEADER.size:
        raise StreamError("not an encrypted Callvault file (too short for a header)")
    magic, chunk_size, salt = HEADER.unpack(header)
    if magic != MAGIC:
        raise StreamError(f"not an encrypted Callvault file (magic {magic!r})")
    if not 0 < chunk_size <= MAX_CHUNK:
        raise StreamError(f"corrupt header: chunk size {chunk_size}")
    return header, chunk_size, salt


def decrypt_stream(src: BinaryIO, key_for_salt: Callable[[bytes], bytes]) -> Iterator[bytes]:
    """Yield verified plaintext chunks; raises StreamError on tampering or truncation."""
    header, chunk_size, salt = read_header(src)
    aead = AESGCM(key_for_salt(salt))
    record = NONCE_BYTES + chunk_size + TAG_BYTES
    index = 0
    block = src.read(record)
    while True:
        if len(block) < NONCE_BYTES + TAG_BYTES:
            raise StreamError(f"truncated: chunk {index} is missing or cut short")
        following = src.read(record) if len(block) == record else b""
        final = not following
        try:
            yield aead.decrypt(block[:NONCE_BYTES], block[NONCE_BYTES:], _aad(header, index, final))
        except InvalidTag:
            raise StreamError(
                f"chunk {index} failed authentication (wrong key, or the file was tampered "
                "with, reordered, truncated or extended)"
            ) from None
        if final:
            return
        block = following
        index += 1
