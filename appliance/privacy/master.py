"""Where the master key comes from: a 0600 key file, or a passphrase stretched with scrypt.

The master key only wraps other keys (see `keyring`); it never encrypts data, so rotating it
re-wraps a few hundred bytes per subject instead of re-encrypting recordings.

Rotation is two-phase so a crash cannot lose the key: `stage()` writes the new key (or the new
scrypt salt) next to the current one as `*.new`, the database re-wraps every key in one
transaction, then `commit()` renames `*.new` over the current file. A process that later finds
the database wrapped under the staged key finishes the rename (`Keyring` does this on load).

Passphrase mode uses scrypt (in `cryptography`, no extra dependency; memory-hard like argon2)
with n=2**17, r=8, p=1 (128 MiB, about 0.3 s here); the salt and parameters live in
`<keys>/master.scrypt` (JSON, not secret), the passphrase in a file only root can read, e.g. a
systemd credential.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from cryptography.hazmat.primitives.kdf.scrypt import Scrypt

from appliance.errors import CallvaultError
from appliance.privacy.crypto import KEY_BYTES, new_key

SCRYPT_N = 2**17
SCRYPT_R = 8
SCRYPT_P = 1


class MasterKeyError(CallvaultError):
    pass


class MasterKeySource(Protocol):
    def load(self) -> bytes:
        """The current master key, created on first use."""
        ...

    def stage(self, new_passphrase: bytes | None = None) -> bytes:
        """Write the next master key beside the current one; return it."""
        ...

    def staged(self) -> bytes | None:
        """The staged key of an unfinished rotation, if any."""
        ...

    def commit(self) -> None:
        """Make the staged key current (atomic rename)."""
        ...


def _write_private(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    tmp = path.with_name(path.name + ".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as fh:
        fh.write(data)
        fh.flush()
        os.fsync(fh.fileno())
    tmp.replace(path)
    _fsync_dir(path.parent)


def _fsync_dir(directory: Path) -> None:
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _promote(staged: Path, current: Path) -> None:
    try:
        staged.replace(current)
    except FileNotFoundError:
        # Another process (the server or the CLI) finished the same rotation first.
        if not current.exists():
            raise
    _fsync_dir(current.parent)


@dataclass(frozen=True)
class KeyFile:
    """32 random bytes in a 0600 file, created on first use."""

    path: Path

    @property
    def _staged_path(self) -> Path:
        return self.path.with_name(self.path.name + ".new")

    def load(self) -> bytes:
        try:
            key = self.path.read_bytes()
        except FileNotFoundError:
            key = self._create()
        except OSError as exc:
            raise MasterKeyError(f"cannot read master key {self.path}: {exc}") from None
        if len(key) != KEY_BYTES:
            raise MasterKeyError(
                f"master key {self.path} has {len(key)} bytes, expected {KEY_BYTES}"
            )
        mode = self.path.stat().st_mode & 0o777
        if mode & 0o077:
            raise MasterKeyError(
                f"master key {self.path} is readable by others (mode {mode:o}); chmod 600 it"
            )
        return key

    def _create(self) -> bytes:
        self.path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        key = new_key()
        # O_EXCL: two processes starting at once must agree on one key.
        try:
            fd = os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        except FileExistsError:
            return self.path.read_bytes()
        with os.fdopen(fd, "wb") as fh:
            fh.write(key)
            fh.flush()
            os.fsync(fh.fileno())
        _fsync_dir(self.path.parent)
        return key

    def stage(self, new_passphrase: bytes | None = None) -> bytes:
        if new_passphrase is not None:
            raise MasterKeyError("privacy.key_source is 'file': a new passphrase makes no sense")
        key = new_key()
        _write_private(self._staged_path, key)
        return key

    def staged(self) -> bytes | None:
        try:
            key = self._staged_path.read_bytes()
        except FileNotFoundError:
            return None
        return key if len(key) == KEY_BYTES else None

    def commit(self) -> None:
        _promote(self._staged_path, self.path)


@dataclass(frozen=True)
class PassphraseKey:
    """scrypt(passphrase, salt); the salt is created on first use and rotated with the key."""

    params_path: Path
    passphrase_file: Path

    @property
    def _staged_path(self) -> Path:
        return self.params_path.with_name(self.params_path.name + ".new")

    def _passphrase(self, path: Path) -> bytes:
        try:
            value = path.read_bytes().rstrip(b"\r\n")
        except OSError as exc:
            raise MasterKeyError(f"cannot read the passphrase file {path}: {exc}") from None
        if len(value) < 12:
            raise MasterKeyError(f"the passphrase in {path} is shorter than 12 characters")
        return value

    def _derive(self, params_path: Path, passphrase: bytes) -> bytes:
        try:
            params = json.loads(params_path.read_text())
            salt = bytes.fromhex(params["salt"])
            n, r, p = int(params["n"]), int(params["r"]), int(params["p"])
        except (OSError, ValueError, KeyError, TypeError) as exc:
            raise MasterKeyError(f"unreadable scrypt parameters {params_path}: {exc}") from None
        return Scrypt(salt=salt, length=KEY_BYTES, n=n, r=r, p=p).derive(passphrase)

    def _new_params(self, path: Path) -> None:
        params = {"kdf": "scrypt", "salt": os.urandom(16).hex(), "n": SCRYPT_N, "r": SCRYPT_R}
        params["p"] = SCRYPT_P
        _write_private(path, json.dumps(params).encode())

    def load(self) -> bytes:
        passphrase = self._passphrase(self.passphrase_file)
        if not self.params_path.exists():
            self._new_params(self.params_path)
        return self._derive(self.params_path, passphrase)

    def stage(self, new_passphrase: bytes | None = None) -> bytes:
        passphrase = new_passphrase or self._passphrase(self.passphrase_file)
        self._new_params(self._staged_path)
        return self._derive(self._staged_path, passphrase)

    def staged(self) -> bytes | None:
        # Only a staged salt with the current passphrase can be finished automatically; a
        # rotation to a new passphrase is finished by the command that started it.
        if not self._staged_path.exists():
            return None
        return self._derive(self._staged_path, self._passphrase(self.passphrase_file))

    def commit(self) -> None:
        _promote(self._staged_path, self.params_path)
