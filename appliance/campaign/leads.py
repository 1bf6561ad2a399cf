"""Lead lists: CSV/XLSX import with column mapping, E.164 normalisation, de-duplication and a
row report, and reading leads back.

Every row of a file ends up in exactly one place of the report: imported, already on the list
(unchanged: re-importing a file changes nothing), or bad with its line number and the reason.
Bad-row reasons name the problem, never the value, because the report is stored.

A lead's personal fields (number, name, e-mail, the extra columns) are sealed under the data key
of its subject (the person the number belongs to), so erasing that subject crypto-shreds the
lead; the row keeps only the number's blind index, country, time zone and consent basis.
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
import time
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import phonenumbers
from phonenumbers import timezone as pn_timezone

from appliance.campaign.windows import WindowError, zone
from appliance.errors import CallvaultError
from appliance.privacy import crypto
from appliance.privacy.audit import Actor
from appliance.privacy.identifiers import Identifier
from appliance.privacy.keyring import KeyShreddedError, _subject_aad
from appliance.privacy.service import Privacy
from appliance.store.campaigns import LeadRow

MAX_UPLOAD_BYTES = 20 * 1024 * 1024
MAX_ROWS = 200_000
MAX_FIELD = 500
BASES = ("consent", "contract", "legal-obligation", "vital-interests", "public-task",
         "legitimate-interest")  # fmt: skip
# Our field -> header names accepted for it when no mapping is given (lower-case).
DEFAULT_COLUMNS: Mapping[str, tuple[str, ...]] = {
    "number": ("number", "phone", "phone_number", "telephone", "mobile", "tel"),
    "name": ("name", "full_name", "contact", "contact_name"),
    "email": ("email", "e-mail", "mail"),
    "basis": ("basis", "consent", "consent_basis", "lawful_basis"),
    "timezone": ("timezone", "time_zone", "tz"),
}


class LeadImportError(CallvaultError):
    pass


@dataclass
class ImportReport:
    list_name: str
    rows: int = 0
    imported: int = 0
    unchanged: int = 0
    bad: list[tuple[int, str]] = field(default_factory=list)
    import_id: int | None = None

    def doc(self) -> dict[str, Any]:
        return {
            "list": self.list_name,
            "rows": self.rows,
            "imported": self.imported,
            "unchanged": self.unchanged,
            "bad": [{"line": n, "reason": r} for n, r in self.bad],
            "import_id": self.import_id,
        }


@dataclass(frozen=True)
class Lead:
    id: int
    list_id: int
    number: str
    name: str
    email: str
    extra: dict[str, str]
    country: str
    zones: tuple[str, ...]
    basis: str
    state: str


def lead_aad(blind_index: bytes) -> bytes:
    return b"callvault lead|" + blind_index


# ---- reading files
def _cell(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, float) and value.is_integer():
        return str(int(value))  # a number column read by a spreadsheet
    return str(value).strip()


def read_rows(data: bytes, name: str) -> tuple[list[str], Iterator[tuple[int, list[str]]]]:
    """(header, rows as (line number, cells)) of a CSV or XLSX file held in memory."""
    if len(data) > MAX_UPLOAD_BYTES:
        raise LeadImportError(f"{name}: {len(data)} bytes is over the {MAX_UPLOAD_BYTES} limit")
    if data[:4] == b"PK\x03\x04" or name.lower().endswith(".xlsx"):
        return _xlsx_rows(data, name)
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise LeadImportError(f"{name} is not UTF-8 text (byte {exc.start})") from None
    try:
        dialect: type[csv.Dialect] | csv.Dialect = csv.Sniffer().sniff(
            text[:4096], delimiters=",;\t"
        )
    except csv.Error:
        dialect = csv.excel
    reader = csv.reader(io.StringIO(text, newline=""), dialect)
    try:
        header = next(reader)
    except StopIteration:
        raise LeadImportError(f"{name} is empty") from None
    except csv.Error as exc:
        raise LeadImportError(f"{name} line 1: {exc}") from None

    def rows() -> Iterator[tuple[int, list[str]]]:
        while True:
            try:
                cells = next(reader)
            except StopIteration:
                return
            except csv.Error as exc:
                yield reader.line_num, [f"\0{exc}"]
                continue
            yield reader.line_num, cells

    return [h.strip() for h in header], rows()


def _xlsx_rows(data: bytes, name: str) -> tuple[list[str], Iterator[tuple[int, list[str]]]]:
    import openpyxl  # type: ignore[import-untyped]

    def damaged(exc: BaseException) -> LeadImportError:
        # A damaged workbook fails anywhere in openpyxl, zipfile or zlib, with whatever they
        # raise (bad deflate data, a truncated or encrypted member, no sheet at all).
        return LeadImportError(
            f"{name} is not a readable .xlsx workbook ({type(exc).__name__}: {exc})"[:300]
        )

    try:
        book = openpyxl.load_workbook(io.BytesIO(data), read_only=True, data_only=True)
        sheet = book.worksheets[0]
        it = sheet.iter_rows(values_only=True)
        first = next(it, None)
    except Exception as exc:  # noqa: BLE001 - see damaged()
        raise damaged(exc) from None
    if first is None:
        raise LeadImportError(f"{name}: the first sheet is empty")
    header = [_cell(v) for v in first]

    def rows() -> Iterator[tuple[int, list[str]]]:
        try:
            for n, values in enumerate(it, start=2):
                yield n, [_cell(v) for v in values]
        except Exception as exc:  # noqa: BLE001 - see damaged()
            raise damaged(exc) from None
        finally:
            book.close()

    return header, rows()


def column_map(header: list[str], mapping: Mapping[str, str] | None) -> dict[str, int]:
    """Our field -> column index. `mapping`: field -> header name, overriding the defaults."""
    lower = [h.strip().lower() for h in header]
    out: dict[str, int] = {}
    for fld, names in DEFAULT_COLUMNS.items():
        wanted = (mapping or {}).get(fld)
        if wanted is not None:
            if wanted.strip().lower() not in lower:
                raise LeadImportError(
                    f"mapping {fld}={wanted!r}: no such column (columns: {', '.join(header)})"
                )
            out[fld] = lower.index(wanted.strip().lower())
            continue
        for candidate in names:
            if candidate in lower:
                out[fld] = lower.index(candidate)
                break
    unknown = set(mapping or {}) - set(DEFAULT_COLUMNS)
    if unknown:
        raise LeadImportError(f"mapping: unknown field(s) {', '.join(sorted(unknown))}")
    if "number" not in out:
        raise LeadImportError(
            f"no phone number column (columns: {', '.join(header)}); map one with number=COLUMN"
        )
    if "basis" not in out:
        raise LeadImportError(
            f"no consent basis column (columns: {', '.join(header)}); map one with basis=COLUMN"
        )
    return out


def zones_for(number: phonenumbers.PhoneNumber) -> tuple[str, ...]:
    return tuple(z for z in pn_timezone.time_zones_for_number(number) if z != "Etc/Unknown")


class Leads:
    def __init__(self, privacy: Privacy, *, clock: Any = time.time) -> None:
        self.privacy = privacy
        self.db = privacy.db
        self.clock = clock

    async def import_bytes(  # noqa: PLR0912, PLR0915 - one check per row rule, in order
        self,
        data: bytes,
        name: str,
        *,
        list_name: str,
        actor: Actor,
        region: str | None = None,
        mapping: Mapping[str, str] | None = None,
        default_timezone: str | None = None,
    ) -> ImportReport:
        region = (region or self.privacy.cfg.privacy.default_region).upper()
        if region not in phonenumbers.SUPPORTED_REGIONS:
            raise LeadImportError(f"region {region!r} is not a country code phonenumbers knows")
        if default_timezone is not None:
            try:
                zone(default_timezone)
            except WindowError as exc:
                raise LeadImportError(str(exc)) from None
        if not list_name.strip() or len(list_name) > 100:
            raise LeadImportError("a lead list needs a name (at most 100 characters)")
        header, rows = read_rows(data, name)
        cols = column_map(header, mapping)
        mapped = set(cols.values())
        extra_cols = [(i, h) for i, h in enumerate(header) if i not in mapped and h]
        report = ImportReport(list_name)
        list_id = await self.db.lead_list_ensure(list_name, self.clock(), actor.name)
        existing = await self.db.lead_indexes(list_id)
        dnc = {bytes(r["blind_index"]) for r in await self.db.dnc_rows()}
        seen: dict[bytes, int] = {}
        relisted: list[bytes] = []  # leads already on the list: their age starts again
        good: list[tuple[int, bytes, Identifier, str, tuple[str, ...], str, dict[str, Any]]] = []
        for line, cells in rows:
            if cells and cells[0].startswith("\0"):
                report.rows += 1
                report.bad.append((line, f"unreadable CSV row ({cells[0][1:]})"))
                continue
            if not any(c.strip() for c in cells):
                continue  # a blank line is not a row
            report.rows += 1
            if report.rows > MAX_ROWS:
                raise LeadImportError(f"{name}: more than {MAX_ROWS} rows; split the file")
            if len(cells) > len(header):
                report.bad.append((line, "more fields than the header has"))
                continue

            def get(fld: str, cells: list[str] = cells) -> str:
                i = cols.get(fld)
                return cells[i].strip() if i is not None and i < len(cells) else ""

            if any(len(c) > MAX_FIELD for c in cells):
                report.bad.append((line, f"a field is longer than {MAX_FIELD} characters"))
                continue
            raw = get("number")
            if not raw:
                report.bad.append((line, "invalid number: empty"))
                continue
            try:
                parsed = phonenumbers.parse(raw, region)
            except phonenumbers.NumberParseException:
                report.bad.append((line, "invalid number: not a phone number"))
                continue
            if not phonenumbers.is_valid_number(parsed):
                report.bad.append((line, f"invalid number: not valid (read in region {region})"))
                continue
            e164 = phonenumbers.format_number(parsed, phonenumbers.PhoneNumberFormat.E164)
            basis = get("basis").lower()
            if not basis:
                report.bad.append((line, "missing consent basis"))
                continue
            if basis not in BASES:
                report.bad.append((line, f"unknown consent basis (one of {', '.join(BASES)})"))
                continue
            tz = get("timezone")
            if tz:
                try:
                    zone(tz)
                except WindowError:
                    report.bad.append((line, "unknown time zone"))
                    continue
                zones: tuple[str, ...] = (tz,)
            else:
                zones = zones_for(parsed) or ((default_timezone,) if default_timezone else ())
                if not zones:
                    report.bad.append((line, "no time zone: give a timezone column"))
                    continue
            ident = Identifier("phone", e164)
            bi = await self.privacy.keyring.blind_index(ident)
            if bi in seen:
                report.bad.append((line, f"duplicate of line {seen[bi]}"))
                continue
            seen[bi] = line
            if bi in dnc:
                report.bad.append((line, "on the do-not-call list"))
                continue
            if bi in existing:
                report.unchanged += 1
                relisted.append(bi)
                continue
            country = phonenumbers.region_code_for_number(parsed) or region
            fields = {
                "number": e164,
                "name": get("name"),
                "email": get("email"),
                "extra": {h: cells[i].strip() for i, h in extra_cols if i < len(cells)},
            }
            good.append((line, bi, ident, country, zones, basis, fields))
        await self._store(list_id, name, data, good, report, actor, relisted)
        return report

    async def _store(  # noqa: PLR0917
        self,
        list_id: int,
        name: str,
        data: bytes,
        good: list[tuple[int, bytes, Identifier, str, tuple[str, ...], str, dict[str, Any]]],
        report: ImportReport,
        actor: Actor,
        relisted: Sequence[bytes] = (),
    ) -> None:
        keyring = self.privacy.keyring
        known = await self.db.subject_ids_by_index([g[1] for g in good])
        drafts = [await keyring.draft_subject(g[2]) for g in good if g[1] not in known]
        if drafts:
            await self.db.subjects_add_many(drafts)
            known = await self.db.subject_ids_by_index([g[1] for g in good])
        master, kid = await keyring.master()
        wrapped = await self.db.subject_keys(sorted(set(known.values())))
        rows = []
        for line, bi, _ident, country, zones, basis, fields in good:
            sid = known[bi]
            sbi, wkey, kek = wrapped[sid]
            if kek != kid:
                raise LeadImportError("the master key was rotated during the import; run it again")
            # What Keyring.subject_key does, without a database round trip per lead.
            key = crypto.unwrap_key(master, wkey, _subject_aad(sbi), f"subject {sid} key")
            blob = crypto.seal(key, json.dumps(fields).encode(), lead_aad(bi))
            rows.append(LeadRow(bi, sid, country, ",".join(zones), basis, blob, line))
        sha = hashlib.sha256(data).hexdigest()
        audit = await self.privacy.audit.entry(
            actor,
            "leads.import",
            f"lead_list:{list_id}",
            "outbound campaign leads",
            f"file_sha256={sha[:16]} rows={report.rows} candidates={len(rows)} "
            f"bad={len(report.bad)}",
        )
        import_id, inserted, unchanged = await self.db.leads_add(
            list_id,
            rows,
            (name, sha, report.rows, len(rows), report.bad, self.clock(), actor.name),
            audit,
            relisted=relisted,
        )
        report.import_id = import_id
        report.imported = inserted
        report.unchanged += unchanged

    async def open_lead(self, row: Mapping[str, Any]) -> Lead:
        """A lead row with its fields decrypted (KeyShreddedError once its subject is erased).
        Callers audit the read they make."""
        bi = bytes(row["blind_index"])
        if row["state"] == "erased" or row["subject_id"] is None:
            raise KeyShreddedError(f"lead {row['id']} was erased")
        key = await self.privacy.keyring.subject_key(int(row["subject_id"]))
        fields = json.loads(
            crypto.open_sealed(key, bytes(row["fields_enc"]), lead_aad(bi), f"lead {row['id']}")
        )
        return Lead(
            id=int(row["id"]),
            list_id=int(row["list_id"]),
            number=str(fields["number"]),
            name=str(fields.get("name", "")),
            email=str(fields.get("email", "")),
            extra=dict(fields.get("extra", {})),
            country=str(row["country"]),
            zones=tuple(z for z in str(row["timezone"]).split(",") if z),
            basis=str(row["basis"]),
            state=str(row["state"]),
        )

    async def list_leads(
        self, list_name: str, actor: Actor, purpose: str, limit: int = 1000
    ) -> list[Lead | int]:
        """The list's leads decrypted (an erased lead as its bare id); the read is audited."""
        found = await self.db.lead_list(list_name)
        if found is None:
            raise LeadImportError(f"no lead list {list_name!r}")
        if not purpose.strip():
            raise LeadImportError("reading leads needs a purpose (it is audited)")
        await self.privacy.audit.record(actor, "leads.view", f"lead_list:{found['id']}", purpose)
        out: list[Lead | int] = []
        for row in await self.db.leads(int(found["id"]), limit=limit):
            try:
                out.append(await self.open_lead(row))
            except KeyShreddedError:
                out.append(int(row["id"]))
        return out
