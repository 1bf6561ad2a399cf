"""Records of processing activities (Art. 30), generated from the live config: one processing
activity per line profile (its purpose, lawful basis, recording policy, the data categories it
produces and how long each is kept, per-line overrides included), plus what holds for the whole
appliance (no recipients off the box, no transfers, the security measures).

Generated, not written by hand, so the record cannot drift from what the box actually does.
The controller's own details (name, contact, DPO) are not in the appliance config; the output
lists them as to be completed. JSON validates against ropa.schema.json (shipped alongside).
"""

from __future__ import annotations

import json
import time
from importlib import resources
from typing import Any

import jsonschema

from appliance.config import RETENTION_CATEGORIES, Config, LineConfig
from appliance.errors import CallvaultError

FORMAT = "callvault-ropa/1"
SCHEMA_NAME = "ropa.schema.json"

BASIS_ARTICLE = {
    "consent": "Art. 6(1)(a)",
    "contract": "Art. 6(1)(b)",
    "legal-obligation": "Art. 6(1)(c)",
    "vital-interests": "Art. 6(1)(d)",
    "public-task": "Art. 6(1)(e)",
    "legitimate-interest": "Art. 6(1)(f)",
}

CATEGORY_DESCRIPTIONS = {
    "cdr": "Call metadata (CDR): calling and dialled numbers, caller name, times, duration, "
    "disposition",
    "recording": "Call recordings (audio of the recorded legs)",
    "transcript": "Transcripts of the conversation (speech-to-text, per leg)",
    "report": "Post-call reports written by the local language model (need, appointment, "
    "follow-up, opt-out)",
    "contact": "Contact data the caller gives: name, phone number, e-mail",
    "consent": "Consent records: whether, when and how the caller agreed to recording",
    "audit": "Audit log: who accessed or changed which record, when and why (staff actions)",
    "bookkeeping": "Bookkeeping records",
}

RECIPIENTS_NOTE = (
    "None off the box: every model (speech recognition, language model, speech synthesis) runs "
    "locally and no data is sent to any other party. The only external party is the configured "
    "SIP trunk carrier, which transports the calls themselves (signalling and audio in transit)."
)
TRANSFERS_NOTE = "None: no personal data is transferred outside the EU/EEA."
SECURITY_MEASURES = (
    "Encryption at rest with AES-256-GCM (envelope encryption) of recordings, transcripts, "
    "reports and contact fields",
    "Per-data-subject data keys: erasing a subject destroys its key, so every copy, backups "
    "included, becomes unreadable (crypto-shredding)",
    "Identifiers stored encrypted, looked up through a keyed blind index",
    "Append-only, hash-chained (HMAC-SHA256) audit log of every view, export, change and "
    "deletion, with a verify command that detects tampering",
    "Speech recognition, language model and speech synthesis run locally on the appliance",
    "Recordings written to a RAM spool and encrypted at hangup; no plaintext audio on disk",
    "Retention purge with legal holds; personal data masked in application logs",
    "Encrypted backups, restores verified automatically",
)
CONTROLLER_TODO = (
    "Name and contact details of the controller (and its representative, if any)",
    "Contact details of the data protection officer, if one is designated",
)


class RopaError(CallvaultError):
    pass


def _records(line: LineConfig) -> bool:
    return line.recording != "off" and bool(line.record_legs)


def line_categories(line: LineConfig) -> list[str]:
    """The data categories a line produces, in RETENTION_CATEGORIES order."""
    agent = line.kind == "agent"
    produced = {"cdr"}
    if _records(line):
        produced |= {"recording", "transcript"}  # each recorded leg is transcribed
    if agent:
        produced |= {"transcript", "report", "contact"}
    if line.recording == "after-consent" and _records(line):
        produced.add("consent")
    return [c for c in RETENTION_CATEGORIES if c in produced]


def _recording(line: LineConfig) -> dict[str, Any]:
    if not _records(line):
        return {"policy": "off", "legs": [], "description": "Never recorded"}
    text = {
        "always": "Recorded from the first ring",
        "after-consent": "Recorded only after the caller agrees (consent prompt first)",
        "on-demand": "Recorded only when started for the call",
    }[line.recording]
    return {"policy": line.recording, "legs": list(line.record_legs), "description": text}


def _subjects(line: LineConfig) -> list[str]:
    people = ["Callers to the line"]
    if line.kind == "agent":
        people.append("People the caller names or whose contact data they give")
    if line.transfer_to:
        people.append(f"Staff taking transferred calls (extension {line.transfer_to})")
    return people


def _master_key(cfg: Config) -> str:
    if cfg.privacy.key_source == "passphrase":
        how = "derived from a passphrase with scrypt and never stored"
    else:
        how = "kept in a root-only key file, off the backup media"
    return f"Master key {how}; key rotation re-wraps every data key"


def _activity(cfg: Config, line: LineConfig) -> dict[str, Any]:
    defaults = cfg.privacy.retention.days
    categories = []
    for cat in line_categories(line):
        override = cat in line.retention_days
        categories.append(
            {
                "category": cat,
                "description": CATEGORY_DESCRIPTIONS[cat],
                "retention_days": int(line.retention_days[cat] if override else defaults[cat]),
                "retention_source": "line" if override else "default",
            }
        )
    return {
        "line": line.name,
        "extension": line.extension,
        "kind": line.kind,
        "purpose": line.purpose,
        "lawful_basis": line.lawful_basis,
        "lawful_basis_article": BASIS_ARTICLE[line.lawful_basis],
        "recording": _recording(line),
        "data_subjects": _subjects(line),
        "data_categories": categories,
        "recipients": [],
        "transfers_outside_eea": [],
    }


def build(cfg: Config, *, now: float | None = None) -> dict[str, Any]:
    """The record as a JSON-ready dict (validates against the shipped schema)."""
    defaults = cfg.privacy.retention
    doc = {
        "format": FORMAT,
        "generated_at": time.time() if now is None else now,
        "config_source": str(cfg.source) if cfg.source else None,
        "controller_to_complete": list(CONTROLLER_TODO),
        "processing_location": "On-premises Callvault appliance",
        "recipients": [],
        "recipients_note": RECIPIENTS_NOTE,
        "transfers_outside_eea": [],
        "transfers_note": TRANSFERS_NOTE,
        "security_measures": [*SECURITY_MEASURES, _master_key(cfg)],
        "default_retention": [
            {
                "category": cat,
                "description": CATEGORY_DESCRIPTIONS[cat],
                "retention_days": int(defaults.days[cat]),
            }
            for cat in RETENTION_CATEGORIES
        ],
        "purge_interval_hours": defaults.purge_interval_h,
        "processing_activities": [_activity(cfg, ln) for ln in cfg.lines],
    }
    validate(doc)
    return doc


def schema() -> dict[str, Any]:
    text = resources.files("appliance.privacy").joinpath(SCHEMA_NAME).read_text()
    loaded: dict[str, Any] = json.loads(text)
    return loaded


def validate(doc: dict[str, Any]) -> None:
    """RopaError naming the first field that does not match the schema."""
    try:
        jsonschema.validate(doc, schema(), cls=jsonschema.Draft202012Validator)
    except jsonschema.ValidationError as exc:
        where = "/".join(str(p) for p in exc.absolute_path) or "(top)"
        raise RopaError(
            f"records of processing do not match {SCHEMA_NAME} at {where}: {exc.message}"
        ) from None


def to_json(doc: dict[str, Any]) -> str:
    return json.dumps(doc, indent=2, ensure_ascii=False) + "\n"


def _cell(value: object) -> str:
    # A pipe or a line break inside a cell would break the Markdown table.
    return str(value).replace("\\", "\\\\").replace("|", "\\|").replace("\n", " ").strip()


def _days(n: int) -> str:
    if n == 0:
        return "not kept after the call"
    if n % 365 == 0:
        return f"{n} days ({n // 365} year{'s' if n > 365 else ''})"
    return f"{n} days"


def to_markdown(doc: dict[str, Any]) -> str:
    when = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime(doc["generated_at"]))
    out = [
        "# Records of processing activities (GDPR Art. 30)",
        "",
        f"Generated {when} from the live appliance configuration"
        + (f" (`{doc['config_source']}`)." if doc["config_source"] else "."),
        "",
        "## Controller",
        "",
        "To be completed by the controller:",
        "",
        *[f"- {item}" for item in doc["controller_to_complete"]],
        "",
        "## Whole appliance",
        "",
        "| Item | Value |",
        "| --- | --- |",
        f"| Processing location | {_cell(doc['processing_location'])} |",
        f"| Recipients | {_cell(doc['recipients_note'])} |",
        f"| Transfers to third countries | {_cell(doc['transfers_note'])} |",
        f"| Retention purge | every {doc['purge_interval_hours']} h |",
        "",
        "### Default retention",
        "",
        "| Category | Description | Kept for |",
        "| --- | --- | --- |",
        *[
            f"| {r['category']} | {_cell(r['description'])} | {_days(r['retention_days'])} |"
            for r in doc["default_retention"]
        ],
        "",
        "### Technical and organisational security measures (Art. 32)",
        "",
        *[f"- {m}" for m in doc["security_measures"]],
        "",
    ]
    for act in doc["processing_activities"]:
        rec = act["recording"]
        legs = ", ".join(rec["legs"]) or "none"
        out += [
            f"## Line `{_cell(act['line'])}` (extension {_cell(act['extension'])})",
            "",
            "| Item | Value |",
            "| --- | --- |",
            f"| Purpose | {_cell(act['purpose'])} |",
            f"| Lawful basis | {act['lawful_basis']} ({act['lawful_basis_article']}) |",
            f"| Line kind | {act['kind']} |",
            f"| Recording | {rec['policy']}: {_cell(rec['description'])} |",
            f"| Recorded legs | {legs} |",
            f"| Data subjects | {_cell('; '.join(act['data_subjects']))} |",
            "| Recipients | none off the box (call transport: the SIP trunk carrier) |",
            "| Transfers outside the EU/EEA | none |",
            "",
            "| Data category | Description | Kept for | Policy |",
            "| --- | --- | --- | --- |",
            *[
                f"| {c['category']} | {_cell(c['description'])} | {_days(c['retention_days'])} "
                f"| {'line override' if c['retention_source'] == 'line' else 'default'} |"
                for c in act["data_categories"]
            ],
            "",
        ]
    if not doc["processing_activities"]:
        out += ["## Lines", "", "No lines are configured: no calls are processed.", ""]
    return "\n".join(out)
