"""Fuzzing the appliance's input surfaces (`make bench` group `fuzz`; short runs in tests).

Each target is a function taking one input (bytes) that must either succeed or raise the
surface's documented error (CallvaultError, or the parser's own error type); anything else is a
crash. The bench drives every target with a seeded mutational fuzzer (bit flips, byte
insertions, splices of seed inputs, interesting values) over a corpus of real inputs, which is
much faster per input than hypothesis; tests/reliability/test_fuzz.py drives the same targets
with hypothesis (structure-aware strategies) and keeps every crash found as a regression test.

Targets:
  ami          raw bytes from the AMI socket -> panoramisk's protocol -> our event dispatch ->
               the live channel model and Cdr parsing (cdr.from_event)
  cdr_csv      a line of Asterisk's own CDR file (cdr.from_csv_row, the reconciliation path)
  config       a TOML config file (tomllib + appliance.config.parse): ConfigError only
  sip_headers  an incoming INVITE as pjsua2 hands it over (parse_sip_headers, parse_name_addr)
  dnc_csv      a do-not-call CSV upload (the import parser, without the database)
  export_csv   the DSAR export's CSV builder: every cell round-trips, no formula cell
  lead_import  campaign lead CSV/XLSX import, when appliance.campaign is present
"""

from __future__ import annotations

import asyncio
import contextlib
import csv
import io
import logging
import os
import random
import re
import sys
import time
import tomllib
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from appliance import config
from appliance.errors import CallvaultError
from appliance.privacy.identifiers import IdentifierError

REPO = Path(__file__).resolve().parents[1]
DEV_CONFIG = REPO / "config" / "callvault.dev.toml"
TRANSCRIPT = REPO / "bench" / "fixtures" / "ami_transcript.ami"


class Crash(Exception):
    """A target raised something its surface does not document."""


# ---------------------------------------------------------------- targets
class _NoTransport:
    def write(self, _data: bytes) -> None:
        pass

    def close(self) -> None:
        pass


class AmiTarget:
    """One panoramisk protocol per input, our AmiClient dispatch and the service's parsing."""

    def __init__(self) -> None:
        from appliance.telephony.ami import AmiClient

        self.events: list[dict[str, str]] = []
        self.client = AmiClient(
            host="127.0.0.1", port=1, username="x", secret="x", on_event=self.events.append
        )
        self.loop = asyncio.new_event_loop()
        self.client._manager.loop = self.loop
        # A Shutdown event makes panoramisk reconnect: there is nothing to reconnect to here.
        self.client._manager.closing = True

    def __call__(self, data: bytes) -> None:
        from appliance.telephony import cdr as cdrs
        from appliance.telephony.service import Channel

        self.events.clear()
        # The protocol class the client really uses (it drops malformed messages).
        proto = self.client._manager.config["protocol_factory"]()
        proto.connection_made(_NoTransport())
        proto.factory = self.client._manager
        proto.encoding = "utf8"
        # Split as TCP would: messages arrive across reads.
        cut = len(data) // 2
        proto.data_received(data[:cut])
        proto.data_received(data[cut:])
        for ev in self.events:
            Channel.from_event(ev)
            if ev.get("Event") == "Cdr":
                with contextlib.suppress(cdrs.CdrParseError):
                    cdrs.from_event(ev)

    def close(self) -> None:
        # panoramisk schedules a FullyBooted handler on this loop for some inputs: let it run.
        self.loop.run_until_complete(asyncio.sleep(0))
        self.loop.close()


def cdr_csv(data: bytes) -> None:
    from appliance.telephony import cdr as cdrs

    text = data.decode("utf-8", errors="replace")
    for row in csv.reader(io.StringIO(text, newline="")):
        if row:
            with contextlib.suppress(cdrs.CdrParseError):
                cdrs.from_csv_row(row)


def config_toml(data: bytes) -> None:
    try:
        raw = tomllib.loads(data.decode("utf-8", errors="replace"))
    except tomllib.TOMLDecodeError:
        return
    with contextlib.suppress(CallvaultError):
        config.parse(raw, base_dir=DEV_CONFIG.parent, source=DEV_CONFIG)


def sip_headers(data: bytes) -> None:
    from appliance.telephony.sip.call import parse_name_addr, parse_sip_headers

    headers = parse_sip_headers(data.decode("utf-8", errors="replace"))
    for name in ("From", "To", "Contact", "P-Asserted-Identity", "Remote-Party-ID"):
        if name in headers:
            parse_name_addr(headers[name])


class DncTarget:
    """The real import (parse, validate, one transaction) into a scratch database."""

    def __init__(self) -> None:
        import tempfile

        from appliance.privacy import Actor, Privacy
        from appliance.store import Database

        self._tmp = tempfile.TemporaryDirectory(prefix="callvault-fuzz-")
        raw = {
            "state_dir": "state",
            "asterisk": {"ami_secret": "fuzz"},
            "lines": [{"name": "reception", "extension": "100"}],
        }
        cfg = config.parse(raw, base_dir=Path(self._tmp.name))
        self.loop = asyncio.new_event_loop()
        self.db = Database(cfg.database)
        self.loop.run_until_complete(self.db.__aenter__())
        self.privacy = Privacy(cfg, self.db)
        self.actor = Actor("cli:fuzz", "operator")

    def __call__(self, data: bytes) -> None:
        with contextlib.suppress(CallvaultError, IdentifierError):
            self.loop.run_until_complete(
                self.privacy.dnc.import_bytes(data, "fuzz.csv", source="fuzz", actor=self.actor)
            )

    def close(self) -> None:
        self.loop.run_until_complete(self.db.__aexit__(None, None, None))
        self.loop.close()
        self._tmp.cleanup()


def export_csv(data: bytes) -> None:
    from appliance.privacy.rights.export import _csv

    text = data.decode("utf-8", errors="replace")
    cells = text.split("\x1f")[:6] or [""]
    cols = tuple(f"c{i}" for i in range(len(cells)))
    out = _csv([dict(zip(cols, cells, strict=True))], cols).decode()
    back = list(csv.reader(io.StringIO(out, newline="")))
    if back[0] != list(cols) or len(back) != 2 or len(back[1]) != len(cols):
        raise Crash(f"export CSV does not round-trip: {cells!r} -> {back!r}")
    for got, want in zip(back[1], cells, strict=True):
        if _formula(got):
            raise Crash(f"export CSV cell would run as a formula: {got!r}")
        if got != want and not (got == "'" + want and _formula(want)):
            raise Crash(f"export CSV changed a cell: {want!r} -> {got!r}")


def _formula(cell: str) -> bool:
    """What a spreadsheet would evaluate (OWASP CSV injection), numbers like +4670… aside."""
    if cell[:1] in {"=", "@", "\t", "\r"}:
        return True
    return cell[:1] in {"+", "-"} and re.match(r"^[+-]?[0-9][0-9 ().,/-]*$", cell) is None


def lead_import_target() -> Callable[[bytes], None] | None:
    """The campaign lead file reader (CSV or XLSX, issue 8), when that package exists."""
    try:
        from appliance.campaign import leads
    except Exception:  # absent, or mid-way through being written by its issue: not fuzzed
        return None
    read_rows = getattr(leads, "read_rows", None)
    column_map = getattr(leads, "column_map", None)
    if read_rows is None or column_map is None:
        return None

    def target(data: bytes) -> None:
        name = "fuzz.xlsx" if data[:2] == b"PK" else "fuzz.csv"
        try:
            header, rows = read_rows(data, name)
            for _n, cells in rows:
                assert isinstance(cells, list)
            column_map(header, None)
        except CallvaultError:
            pass

    return target


def _xlsx_seed() -> bytes:
    try:
        import openpyxl
    except ImportError:
        return b"PK\x03\x04"
    book = openpyxl.Workbook()
    sheet = book.active
    sheet.append(["number", "name", "basis"])
    sheet.append(["+46701234567", "Anna", "consent"])
    sheet.append([46701234568, "=1+1", "contract"])
    buf = io.BytesIO()
    book.save(buf)
    return buf.getvalue()


# ---------------------------------------------------------------- corpus
def _ami_seeds() -> list[bytes]:
    data = TRANSCRIPT.read_bytes()
    messages = [m + b"\r\n\r\n" for m in data.split(b"\r\n\r\n") if m.strip()]
    seeds = [b"".join(messages[i : i + 4]) for i in range(0, min(len(messages), 400), 4)]
    seeds.append(b"Asterisk Call Manager/9.0.0\r\n")
    seeds.append(b"Response: Success\r\nActionID: 1\r\nMessage: ok\r\n\r\n")
    return seeds


def _cdr_seeds() -> list[bytes]:
    from appliance.telephony.render import CDR_CSV_FIELDS

    base = {
        "clid": '"Front desk" <201>', "src": "201", "dst": "100", "dcontext": "callvault-lines",
        "channel": "PJSIP/201-00000001", "dstchannel": "PJSIP/agent-00000002",
        "lastapp": "Dial", "lastdata": "PJSIP/agent", "start": "1700000000.123456",
        "answer": "1700000001.000000", "end": "1700000010.5", "duration": "10", "billsec": "9",
        "disposition": "ANSWERED", "amaflags": "DOCUMENTATION", "accountcode": "",
        "uniqueid": "1700000000.1", "userfield": "", "linkedid": "1700000000.1",
        "sequence": "3", "cv_line": "reception", "cv_direction": "inbound",
        "cv_dialed": "100", "cv_cause": "16",
    }  # fmt: skip
    buf = io.StringIO()
    csv.writer(buf).writerow([base.get(f, "") for f in CDR_CSV_FIELDS])
    return [buf.getvalue().encode(), b'"a","b"\n', b"\n"]


def _sip_seeds() -> list[bytes]:
    invite = (
        "INVITE sip:agent@127.0.0.1:5070 SIP/2.0\r\n"
        "Via: SIP/2.0/UDP 127.0.0.1:5060;rport;branch=z9hG4bKPj1\r\n"
        'From: "Anna \\"A\\" Svensson" <sip:+46701234567@127.0.0.1>;tag=1\r\n'
        "To: <sip:agent@127.0.0.1>\r\nContact: <sip:asterisk@127.0.0.1:5060>\r\n"
        "Call-ID: abc\r\nCSeq: 1 INVITE\r\nX-Callvault-Line: reception\r\n"
        "P-Asserted-Identity: <tel:+46701234567>\r\n"
        " continued\r\nUser-Agent: friendly-scanner\r\n\r\nv=0\r\n"
    )
    return [invite.encode(), b"SIP/2.0 200 OK\nFrom: x\n\n"]


SEEDS: dict[str, Callable[[], list[bytes]]] = {
    "ami": _ami_seeds,
    "cdr_csv": _cdr_seeds,
    "config": lambda: [DEV_CONFIG.read_bytes()],
    "sip_headers": _sip_seeds,
    "dnc_csv": lambda: [
        b"number,source,reason\n+46701234567,web,asked\n0701234567,,\n",
        b"\xef\xbb\xbfNumber\n+1 202 555 0101\n",
    ],
    "export_csv": lambda: [
        b'Anna\x1f+46701234567\x1f=HYPERLINK("x")\x1f-1\x1f@SUM(1)',
        b'plain\x1f\r\n\x1f"quoted"',
    ],
    "lead_import": lambda: [
        b"number,name,basis\n+46701234567,Anna,consent\n+4670555,=cmd|' /C calc'!A0,x\n",
        b"phone;name;basis\r\n0701234567;B;contract\r\n",
        _xlsx_seed(),
    ],
}


# Share of the inputs per target: the slow ones (a database transaction, a whole config) get
# fewer, the byte parsers (the socket- and file-facing surfaces) more.
WEIGHTS = {"ami": 3.0, "cdr_csv": 2.0, "sip_headers": 3.0, "export_csv": 1.0, "config": 0.25,
           "dnc_csv": 0.25, "lead_import": 0.5}  # fmt: skip


def targets() -> dict[str, Callable[[bytes], None]]:
    out: dict[str, Callable[[bytes], None]] = {
        "ami": AmiTarget(),
        "cdr_csv": cdr_csv,
        "config": config_toml,
        "sip_headers": sip_headers,
        "dnc_csv": DncTarget(),
        "export_csv": export_csv,
    }
    lead = lead_import_target()
    if lead is not None:
        out["lead_import"] = lead
    return out


# ---------------------------------------------------------------- mutation
_INTERESTING = [
    b"\x00", b"\xff", b"\r\n", b"\r\n\r\n", b":", b",", b'"', b"<", b">", b"\\", b"=",
    b"\xef\xbb\xbf", b"\xc3\x28", b"9" * 40, b"-1", b"1e309", b"nan", b"[", b"]]", b"{",
    b"Event: Cdr\r\n", b"Response: Follows\r\n", b"ActionID: ", b"--END COMMAND--",
]  # fmt: skip


def mutate(rng: random.Random, data: bytes, seeds: list[bytes]) -> bytes:
    buf = bytearray(data)
    for _ in range(rng.choice((1, 1, 2, 4, 8))):
        op = rng.randrange(7)
        pos = rng.randrange(len(buf) + 1)
        if op == 0 and buf:  # flip a bit
            i = rng.randrange(len(buf))
            buf[i] ^= 1 << rng.randrange(8)
        elif op == 1:  # insert an interesting token
            buf[pos:pos] = rng.choice(_INTERESTING)
        elif op == 2 and buf:  # delete a run
            del buf[pos : pos + rng.randrange(1, 16)]
        elif op == 3:  # random bytes
            buf[pos:pos] = rng.randbytes(rng.randrange(1, 8))
        elif op == 4 and buf:  # duplicate a run
            run = buf[pos : pos + rng.randrange(1, 64)]
            buf[pos:pos] = run
        elif op == 5:  # splice another seed
            other = rng.choice(seeds)
            j = rng.randrange(len(other) + 1)
            buf[pos:] = other[j:]
        elif buf:  # replace a byte by a printable one
            buf[rng.randrange(len(buf))] = rng.randrange(32, 127)
    return bytes(buf[:65536])


@dataclass
class Result:
    inputs: int = 0
    crashes: list[tuple[str, bytes, str]] = field(default_factory=list)
    per_target: dict[str, int] = field(default_factory=dict)
    seconds: float = 0.0


def run(
    total: int, *, seed: int = 1, crash_dir: Path | None = None, log: Callable[[str], None] = print
) -> Result:
    """`total` inputs spread over the targets (weighted by their speed: equal time each)."""
    rng = random.Random(seed)
    # The surfaces log what they drop; a million log lines would be the benchmark.
    logging.disable(logging.CRITICAL)
    tgts = targets()
    res = Result()
    t0 = time.perf_counter()
    weight = {name: WEIGHTS.get(name, 1.0) for name in tgts}
    for name, fn in tgts.items():
        share = max(1, int(total * weight[name] / sum(weight.values())))
        seeds = SEEDS[name]()
        corpus = list(seeds)
        t1 = time.perf_counter()
        for n in range(share):
            data = corpus[n % len(corpus)] if n < len(corpus) else rng.choice(corpus)
            if n >= len(corpus):
                data = mutate(rng, data, seeds)
            try:
                fn(data)
            except Exception as exc:
                res.crashes.append((name, data, f"{type(exc).__name__}: {exc}"))
                if crash_dir is not None:
                    crash_dir.mkdir(parents=True, exist_ok=True)
                    (crash_dir / f"{name}-{len(res.crashes)}.bin").write_bytes(data)
                if len(res.crashes) > 50:
                    break
            # Keep a few mutants as new starting points (cheap coverage-blind exploration).
            if n % 97 == 0 and len(corpus) < 512:
                corpus.append(data)
        res.per_target[name] = n + 1
        res.inputs += n + 1
        log(f"  {name}: {n + 1} inputs in {time.perf_counter() - t1:.1f} s")
    for fn in tgts.values():
        close = getattr(fn, "close", None)
        if close is not None:
            close()
    res.seconds = time.perf_counter() - t0
    logging.disable(logging.NOTSET)
    return res


def bench(results: dict[str, Any], *, quick: bool, log: Callable[[str], None] = print) -> dict:
    total = int(os.environ.get("CALLVAULT_FUZZ_INPUTS") or (20_000 if quick else 1_050_000))
    res = run(total, crash_dir=REPO / "bench" / "results" / "fuzz-crashes", log=log)
    for name, data, why in res.crashes[:10]:
        log(f"  CRASH {name}: {why} on {data[:120]!r}")
    out = {"fuzz_inputs": res.inputs, "fuzz_crashes": len(res.crashes)}
    results.update(out)
    return out


if __name__ == "__main__":
    r = run(int(sys.argv[1]) if len(sys.argv) > 1 else 7000)
    print(r.inputs, len(r.crashes), [(c[0], c[2]) for c in r.crashes[:5]])
