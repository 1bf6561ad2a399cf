"""Secrets generated on the box, never shipped as defaults.

A config value of "" for a secret means "generate one on first use and keep it here": one
0600 file per secret under `<state_dir>/secrets`.
"""

from __future__ import annotations

import os
import re
import secrets
from pathlib import Path

_NAME = re.compile(r"^[a-z0-9][a-z0-9_.-]{0,63}$")


class SecretStore:
    def __init__(self, directory: Path) -> None:
        self.directory = directory

    def get_or_create(self, name: str, nbytes: int = 18) -> str:
        if not _NAME.match(name):
            raise ValueError(f"invalid secret name {name!r}")
        path = self.directory / name
        try:
            return path.read_text().strip()
        except FileNotFoundError:
            pass
        self.directory.mkdir(parents=True, exist_ok=True, mode=0o700)
        value = secrets.token_urlsafe(nbytes)
        # O_EXCL: two processes starting at once must agree on one value.
        try:
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        except FileExistsError:
            return path.read_text().strip()
        with os.fdopen(fd, "w") as fh:
            fh.write(value + "\n")
        return value
