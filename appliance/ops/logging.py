"""Structured logs: one JSON object per line on stderr, for journald to keep and rotate.

- Each line has `ts`, `level`, `logger`, `msg`, the `call_id` when the code runs for a call
  (`with call_context(call_id):` or `extra={"call_id": …}`), and any other `extra` fields.
- Personal data is masked by type before anything is written: phone numbers
  (`<phone:+46*******67>`), e-mail addresses (`<email:a***@e***>`) and names — fields named
  like a name (`caller_name`, `CallerIDName: …`, a SIP display name in quotes) become
  `<name:A***>`. `appliance.privacy.pii.Pii` values print masked already.
- Under journald (`$JOURNAL_STREAM`) each line starts with the syslog priority (`<3>`), which
  journald turns into the entry's PRIORITY, so `journalctl -p warning` works.
- The level changes at run time: `callvault log-level debug` stores it in the database and
  every process of the box picks it up within `LevelWatcher`'s interval.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import json
import logging
import os
import re
import sys
from collections.abc import Callable, Iterator
from typing import Any, Protocol

from appliance.privacy.pii import mask

LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")
SETTING = "log_level"
_call_id: contextvars.ContextVar[str | None] = contextvars.ContextVar("call_id", default=None)

# Attributes every LogRecord has; anything else came in through `extra`.
_STANDARD = set(vars(logging.LogRecord("", 0, "", 0, "", None, None))) | {"message", "asctime"}
_NAME_KEYS = re.compile(r"(?:^|_)(?:name|caller_name|display_name|first_name|last_name)$", re.I)
_EMAIL = re.compile(r"[A-Za-z0-9._%+-]+@[A-Za-z0-9.-]+\.[A-Za-z]{2,}")
# A run of digits with phone separators: at least 7 digits, not part of a longer token (call
# ids such as 1700000001.12 and addresses such as 10.0.0.1 are kept).
_PHONE = re.compile(r"(?<![\w.+/-])\+?\(?\d[\d ()\-]{5,18}\d(?![\w.])")
# `CallerIDName: Anna Svensson` in AMI dumps, `caller_name=Anna` in key=value text.
_NAME_FIELD = re.compile(
    r"(?P<k>\b(?:CallerIDName|ConnectedLineName|caller_name|display_name)\b\s*[:=]\s*)"
    r"(?P<v>[^\r\n,;]+?)(?=\s*(?:$|[\r\n,;]))",
    re.MULTILINE,
)
# A SIP display name: "Anna Svensson" <sip:…>
_SIP_DISPLAY = re.compile(r'"(?P<v>[^"]{1,64})"(?=\s*<sips?:)')


def _phone(m: re.Match[str]) -> str:
    raw = m.group(0)
    digits = sum(c.isdigit() for c in raw)
    if digits < 7 or digits > 15:
        return raw
    return f"<phone:{mask(re.sub(r'[^0-9+]', '', raw))}>"


def _name(value: str) -> str:
    value = value.strip()
    return f"<name:{value[:1]}***>" if value else value


def mask_text(text: str) -> str:
    """Phone numbers, e-mail addresses and named name fields in free text, masked by type."""
    text = _EMAIL.sub(lambda m: f"<email:{mask(m.group(0))}>", text)
    text = _NAME_FIELD.sub(lambda m: m.group("k") + _name(m.group("v")), text)
    text = _SIP_DISPLAY.sub(lambda m: f'"{_name(m.group("v"))}"', text)
    return _PHONE.sub(_phone, text)


def mask_value(key: str, value: Any) -> Any:
    if isinstance(value, str):
        return _name(value) if _NAME_KEYS.search(key) else mask_text(value)
    if isinstance(value, bool | int | float) or value is None:
        return value
    return mask_text(str(value))


class CallContext(logging.Filter):
    """Adds the current call's id (from `call_context`) to records that carry none."""

    def filter(self, record: logging.LogRecord) -> bool:
        if getattr(record, "call_id", None) is None:
            record.call_id = _call_id.get()
        return True


@contextlib.contextmanager
def call_context(call_id: str) -> Iterator[None]:
    token = _call_id.set(call_id)
    try:
        yield
    finally:
        _call_id.reset(token)


_PRIORITY = {"DEBUG": 7, "INFO": 6, "WARNING": 4, "ERROR": 3, "CRITICAL": 2}


class JsonFormatter(logging.Formatter):
    def __init__(self, *, syslog_prefix: bool = False) -> None:
        super().__init__()
        self.syslog_prefix = syslog_prefix

    def format(self, record: logging.LogRecord) -> str:
        out: dict[str, Any] = {
            "ts": round(record.created, 3),
            "level": record.levelname,
            "logger": record.name,
            "msg": mask_text(record.getMessage()),
        }
        call_id = getattr(record, "call_id", None)
        if call_id:
            out["call_id"] = str(call_id)
        for key, value in vars(record).items():
            if key not in _STANDARD and key not in out and key != "call_id":
                out[key] = mask_value(key, value)
        if record.exc_info:
            out["exc"] = mask_text(self.formatException(record.exc_info))
        line = json.dumps(out, ensure_ascii=False, default=str)
        if self.syslog_prefix:
            return f"<{_PRIORITY.get(record.levelname, 6)}>{line}"
        return line


class TextFormatter(logging.Formatter):
    """The human format (a terminal), masked the same way."""

    def __init__(self) -> None:
        super().__init__("%(asctime)s %(levelname)s %(name)s: %(message)s")

    def format(self, record: logging.LogRecord) -> str:
        text = mask_text(super().format(record))
        call_id = getattr(record, "call_id", None)
        return f"{text} [call {call_id}]" if call_id else text


def under_journald() -> bool:
    """stderr is connected to journald (systemd sets JOURNAL_STREAM=dev:inode for it)."""
    stream = os.environ.get("JOURNAL_STREAM", "")
    if not stream:
        return False
    try:
        st = os.fstat(sys.stderr.fileno())
    except (OSError, ValueError):
        return False
    return stream == f"{st.st_dev}:{st.st_ino}"


def configure(fmt: str = "json", level: str = "INFO") -> logging.Handler:
    """Replace the root logger's handlers with one masked handler on stderr."""
    handler = logging.StreamHandler(sys.stderr)
    handler.addFilter(CallContext())
    handler.setFormatter(
        JsonFormatter(syslog_prefix=under_journald()) if fmt == "json" else TextFormatter()
    )
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    set_level(level)
    return handler


def set_level(level: str) -> str:
    name = level.upper()
    if name not in LEVELS:
        raise ValueError(f"log level {level!r}: expected one of {', '.join(LEVELS)}")
    logging.getLogger().setLevel(name)
    return name


class SettingStore(Protocol):
    async def ops_setting(self, name: str) -> str | None: ...


class LevelWatcher:
    """Follows the `log_level` setting in the database (set by `callvault log-level`)."""

    def __init__(
        self, db: SettingStore, *, default: str, interval_s: float = 5.0,
        on_change: Callable[[str], None] | None = None,
    ) -> None:  # fmt: skip
        self.db = db
        self.default = default.upper()
        self.interval_s = interval_s
        self.on_change = on_change
        self.current = ""

    async def poll(self) -> str:
        wanted = (await self.db.ops_setting(SETTING) or self.default).upper()
        if wanted not in LEVELS:
            wanted = self.default
        if wanted != self.current:
            set_level(wanted)
            if self.current:  # not at start: say so
                logging.getLogger(__name__).warning("log level now %s", wanted)
            self.current = wanted
            if self.on_change is not None:
                self.on_change(wanted)
        return wanted

    async def run(self) -> None:
        while True:
            with contextlib.suppress(Exception):
                await self.poll()
            await asyncio.sleep(self.interval_s)
