"""JSON logs: call ids as fields, personal data masked by type, the level switched at run time
through the database (what `callvault log-level` writes)."""

from __future__ import annotations

import io
import json
import logging
import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from appliance.ops import logging as oplog
from appliance.ops.cli import add_parser
from appliance.privacy.pii import Pii
from appliance.store import Database
from tests.privacy.rights_fixtures import NAME, NATIONAL, NUMBER


@pytest.fixture
def captured() -> Iterator[io.StringIO]:
    buf = io.StringIO()
    handler = logging.StreamHandler(buf)
    handler.addFilter(oplog.CallContext())
    handler.setFormatter(oplog.JsonFormatter())
    root = logging.getLogger()
    old_level = root.level
    root.addHandler(handler)
    root.setLevel(logging.DEBUG)
    yield buf
    root.removeHandler(handler)
    root.setLevel(old_level)


def lines(buf: io.StringIO) -> list[dict[str, object]]:
    return [json.loads(x) for x in buf.getvalue().splitlines()]


def test_json_with_call_id_and_masked_personal_data(captured: io.StringIO) -> None:
    log = logging.getLogger("callvault.test")
    with oplog.call_context("1700000001.12"):
        log.warning("refused %s, also known as %s", NUMBER, NATIONAL)
    log.info(
        "caller %s wrote to anna.svensson@example.se",
        Pii(NUMBER),
        extra={"call_id": "1700000002.3", "caller_name": NAME, "line": "reception", "n": 3},
    )
    log.info('INVITE from "%s" <sip:201@10.0.0.5>; CallerIDName: %s', NAME, NAME)
    try:
        raise ValueError(f"bad number {NUMBER}")
    except ValueError:
        log.exception("failed at 10.0.0.1:5060 for call 1700000001.12")
    out = lines(captured)
    assert out[0]["call_id"] == "1700000001.12" and out[0]["level"] == "WARNING"
    assert out[0]["msg"] == "refused <phone:+46*******67>, also known as <phone:070*****67>"
    assert out[1]["call_id"] == "1700000002.3"
    assert out[1]["caller_name"] == "<name:A***>"
    assert out[1]["line"] == "reception" and out[1]["n"] == 3
    assert "<email:a***@e***>" in str(out[1]["msg"])
    assert out[2]["msg"] == (
        'INVITE from "<name:A***>" <sip:201@10.0.0.5>; CallerIDName: <name:A***>'
    )
    assert "call_id" not in out[2]
    # Addresses, ports and call ids are not phone numbers.
    assert out[3]["msg"] == "failed at 10.0.0.1:5060 for call 1700000001.12"
    assert "ValueError" in str(out[3]["exc"]) and "<phone:" in str(out[3]["exc"])
    text = captured.getvalue()
    for needle in (NUMBER, NATIONAL, NUMBER[3:], NAME, NAME.split()[1], "anna.svensson"):
        assert needle not in text, needle


def test_journald_priority_prefix() -> None:
    rec = logging.LogRecord("x", logging.ERROR, __file__, 1, "boom", None, None)
    assert oplog.JsonFormatter(syslog_prefix=True).format(rec).startswith("<3>{")
    rec = logging.LogRecord("x", logging.INFO, __file__, 1, "fine", None, None)
    assert oplog.JsonFormatter(syslog_prefix=True).format(rec).startswith("<6>{")


def test_under_journald_matches_stderr(monkeypatch: pytest.MonkeyPatch) -> None:
    import sys

    st = os.fstat(sys.stderr.fileno())
    monkeypatch.setenv("JOURNAL_STREAM", f"{st.st_dev}:{st.st_ino}")
    assert oplog.under_journald()
    monkeypatch.setenv("JOURNAL_STREAM", "1:2")
    assert not oplog.under_journald()


async def test_level_switch_at_run_time(tmp_path: Path) -> None:
    import argparse

    root = logging.getLogger()
    before = root.level
    cfgfile = tmp_path / "callvault.toml"
    cfgfile.write_text(f'state_dir = "{tmp_path}"\n[asterisk]\nami_secret = "x"\n')
    try:
        async with Database(tmp_path / "callvault.db") as db:
            watcher = oplog.LevelWatcher(db, default="INFO")
            assert await watcher.poll() == "INFO"
            assert root.level == logging.INFO
            # What `callvault log-level debug` does, from another process.
            from rich.console import Console

            p = argparse.ArgumentParser()
            p.add_argument("--config", default=str(cfgfile))
            add_parser(p.add_subparsers(dest="cmd"), Console(file=io.StringIO()))
            args = p.parse_args(["log-level", "debug"])
            await _run(args)
            assert await watcher.poll() == "DEBUG"
            assert root.level == logging.DEBUG
            await _run(p.parse_args(["log-level", "default"]))
            assert await watcher.poll() == "INFO"
    finally:
        root.setLevel(before)
    with pytest.raises(ValueError, match="log level 'loud'"):
        oplog.set_level("loud")


async def _run(args: object) -> None:
    from rich.console import Console

    from appliance.ops.cli import _log_level

    assert await _log_level(args, Console(file=io.StringIO())) == 0  # type: ignore[arg-type]
