"""AES-256-GCM envelope encryption: sealing values, wrapping keys, deriving keys.

Every key is 32 random bytes. A sealed blob is `version(1) | nonce(12) | ciphertext+tag`; the
associated data (AAD) names what the blob is (e.g. `subject-key:phone`), so a blob copied into
another column or row fails to open instead of decrypting to the wrong thing. All primitives
come from `cryptography`; nothing here is hand-rolled beyond the framing.
"""

from __future__ import annotations

import hashlib
import hmac
import os

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from appliance.errors import CallvaultError

KEY_BYTES = 32
NONCE_BYTES = 12
TAG_BYTES = 16
_VERSION = b"\x01"


class CryptoError(CallvaultError):
    """A blob would not open: wrong key, tampered data, or a destroyed (shredded) key."""


def new_key() -> bytes:
    return os.urandom(KEY_BYTES)


def seal(key: bytes, plaintext: bytes, aad: bytes) -> bytes:
    nonce = os.urandom(NONCE_BYTES)
    return _VERSION + nonce + AESGCM(key).encrypt(nonce, plaintext, aad)


def open_sealed(key: bytes, blob: bytes, aad: bytes, what: str) -> bytes:
    """Open a `seal` blob; `what` names it in the error (never its content)."""
    if len(blob) < 1 + NONCE_BYTES + TAG_BYTES or blob[:1] != _VERSION:
        raise CryptoError(f"{what}: not a sealed value (wrong format or version)")
    nonce, body = blob[1 : 1 + NONCE_BYTES], blob[1 + NONCE_BYTES :]
    try:
        return AESGCM(key).decrypt(nonce, body, aad)
    except InvalidTag:
        raise CryptoError(f"{what}: authentication failed (wrong key or tampered data)") from None


def wrap_key(kek: bytes, key: bytes, aad: bytes) -> bytes:
    # AES-GCM rather than RFC 3394 key wrap: one primitive, and the AAD binds the key's purpose.
    return seal(kek, key, aad)


def unwrap_key(kek: bytes, wrapped: bytes, aad: bytes, what: str) -> bytes:
    key = open_sealed(kek, wrapped, aad, what)
    if len(key) != KEY_BYTES:
        raise CryptoError(f"{what}: unwrapped key has {len(key)} bytes, expected {KEY_BYTES}")
    return key


def derive_key(ikm: bytes, *, salt: bytes, info: bytes) -> bytes:
    return HKDF(algorithm=hashes.SHA256(), length=KEY_BYTES, salt=salt, info=info).derive(ikm)


def keyed_hash(key: bytes, data: bytes) -> bytes:
    return hmac.new(key, data, hashlib.sha256).digest()


def key_id(key: bytes) -> str:
    """A public name for a key (which master key wrapped a row) that reveals nothing about it."""
    return keyed_hash(key, b"callvault key id")[:8].hex()
