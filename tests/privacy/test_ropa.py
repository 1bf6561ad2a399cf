"""Records of processing (Art. 30) from the live config: per-line content, schema, Markdown, CLI."""

from __future__ import annotations

import copy
import json
import re
from pathlib import Path
from typing import Any

import jsonschema
import pytest

from appliance import config
from appliance.cli import main
from appliance.privacy import ropa

RAW: dict[str, Any] = {
    "state_dir": "state",
    "asterisk": {"ami_secret": "unused"},
    "privacy": {"retention": {"days": {"transcript": 60}, "purge_interval_h": 12}},
    "lines": [
        {
            "name": "consent",
            "extension": "104",
            "recording": "after-consent",
            "record_legs": ["caller", "mixed"],
            "purpose": "Booking dental appointments | reminders",
            "lawful_basis": "consent",
        },
        {
            "name": "sales",
            "extension": "105",
            "recording": "always",
            "record_legs": ["mixed"],
            "purpose": "Taking orders by phone",
            "lawful_basis": "contract",
            "retention_days": {"recording": 30, "report": 730},
            "transfer_to": "201",
        },
    ],
    "extensions": [{"number": "201", "name": "Desk"}],
}


def cfg(tmp_path: Path, raw: dict[str, Any] = RAW) -> config.Config:
    return config.parse(copy.deepcopy(raw), base_dir=tmp_path)


def by_line(doc: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {a["line"]: a for a in doc["processing_activities"]}


def retention(activity: dict[str, Any]) -> dict[str, tuple[int, str]]:
    return {
        c["category"]: (c["retention_days"], c["retention_source"])
        for c in activity["data_categories"]
    }


def test_each_line_is_an_activity_with_its_purpose_basis_and_retention(tmp_path: Path) -> None:
    doc = ropa.build(cfg(tmp_path), now=1_800_000_000.0)
    lines = by_line(doc)
    assert set(lines) == {"consent", "sales"}

    consent, sales = lines["consent"], lines["sales"]
    assert (consent["purpose"], consent["lawful_basis"], consent["lawful_basis_article"]) == (
        "Booking dental appointments | reminders", "consent", "Art. 6(1)(a)",
    )  # fmt: skip
    assert (sales["purpose"], sales["lawful_basis"], sales["lawful_basis_article"]) == (
        "Taking orders by phone", "contract", "Art. 6(1)(b)",
    )  # fmt: skip
    assert consent["recording"]["policy"] == "after-consent"
    assert consent["recording"]["legs"] == ["caller", "mixed"]
    assert sales["recording"]["legs"] == ["mixed"]

    # The consent line keeps consent records; retention: the config's defaults (transcript
    # changed globally to 60), the sales line's own overrides where it has them.
    assert retention(consent) == {
        "recording": (90, "default"),
        "transcript": (60, "default"),
        "report": (365, "default"),
        "cdr": (1095, "default"),
        "contact": (395, "default"),
        "consent": (1095, "default"),
    }
    assert retention(sales) == {
        "recording": (30, "line"),
        "transcript": (60, "default"),
        "report": (730, "line"),
        "cdr": (1095, "default"),
        "contact": (395, "default"),
    }
    assert any("extension 201" in s for s in sales["data_subjects"])
    for act in (consent, sales):
        assert act["recipients"] == [] and act["transfers_outside_eea"] == []
    assert doc["recipients"] == [] and "SIP trunk carrier" in doc["recipients_note"]
    assert doc["transfers_outside_eea"] == []
    assert any("AES-256-GCM" in m for m in doc["security_measures"])
    assert any("root-only key file" in m for m in doc["security_measures"])
    assert doc["purge_interval_hours"] == 12


def test_categories_follow_what_a_line_does(tmp_path: Path) -> None:
    raw = copy.deepcopy(RAW)
    raw["lines"] = [
        {"name": "quiet", "extension": "106", "recording": "off"},
        {"name": "echo", "extension": "900", "kind": "echo", "record_legs": ["mixed"]},
        {"name": "hello", "extension": "901", "kind": "announcement", "recording": "off"},
    ]
    lines = by_line(ropa.build(cfg(tmp_path, raw)))
    assert list(retention(lines["quiet"])) == ["transcript", "report", "cdr", "contact"]
    assert lines["quiet"]["recording"]["policy"] == "off"
    assert lines["quiet"]["recording"]["legs"] == []
    assert list(retention(lines["echo"])) == ["recording", "transcript", "cdr"]
    assert list(retention(lines["hello"])) == ["cdr"]


def test_json_validates_against_the_shipped_schema(tmp_path: Path) -> None:
    doc = json.loads(ropa.to_json(ropa.build(cfg(tmp_path))))
    schema = json.loads((Path(ropa.__file__).parent / "ropa.schema.json").read_text())
    jsonschema.Draft202012Validator.check_schema(schema)
    jsonschema.validate(doc, schema, cls=jsonschema.Draft202012Validator)

    # The schema does constrain: a recipient off the box or an unknown basis is refused.
    for path, bad in (
        (("recipients",), ["a cloud provider"]),
        (("processing_activities", 0, "lawful_basis"), "because"),
        (("processing_activities", 1, "data_categories", 0, "retention_days"), -1),
    ):
        broken = copy.deepcopy(doc)
        target: Any = broken
        for key in path[:-1]:
            target = target[key]
        target[path[-1]] = bad
        with pytest.raises(jsonschema.ValidationError):
            jsonschema.validate(broken, schema, cls=jsonschema.Draft202012Validator)
        with pytest.raises(ropa.RopaError, match=r"do not match ropa\.schema\.json at"):
            ropa.validate(broken)


def test_markdown_has_a_table_per_line(tmp_path: Path) -> None:
    md = ropa.to_markdown(ropa.build(cfg(tmp_path), now=1_800_000_000.0))
    sections = re.split(r"^## ", md, flags=re.MULTILINE)
    line_sections = {s.split("\n", 1)[0]: s for s in sections if s.startswith("Line ")}
    assert set(line_sections) == {"Line `consent` (extension 104)", "Line `sales` (extension 105)"}
    consent = line_sections["Line `consent` (extension 104)"]
    sales = line_sections["Line `sales` (extension 105)"]
    # A pipe in the purpose is escaped, so the row keeps its two cells.
    assert "| Purpose | Booking dental appointments \\| reminders |" in consent
    assert "| Lawful basis | consent (Art. 6(1)(a)) |" in consent
    assert "| consent | " in consent and "| consent | " not in sales
    assert re.search(r"^\| recording \| .* \| 30 days \| line override \|$", sales, re.M)
    assert re.search(r"^\| report \| .* \| 730 days \(2 years\) \| line override \|$", sales, re.M)
    assert re.search(r"^\| transcript \| .* \| 60 days \| default \|$", sales, re.M)
    for section in (consent, sales):
        table = [ln for ln in section.splitlines() if ln.startswith("|")]
        assert "| Data category | Description | Kept for | Policy |" in table
        # Every row of a table has as many cells as its header.
        assert all(len(re.split(r"(?<!\\)\|", row)) in (4, 6) for row in table)
    assert "Recipients | None off the box" in md


def test_cli_writes_markdown_and_json(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    conf = tmp_path / "callvault.toml"
    conf.write_text(
        'state_dir = "state"\n[asterisk]\nami_secret = "x"\n'
        '[[lines]]\nname = "reception"\nextension = "100"\nlawful_basis = "contract"\n'
        "[lines.retention_days]\nrecording = 7\n"
    )
    out = tmp_path / "ropa.json"
    argv = ["--config", str(conf), "privacy", "ropa", "--format", "json", "--output", str(out)]
    assert main(argv) == 0
    doc = json.loads(out.read_text())
    ropa.validate(doc)
    assert retention(doc["processing_activities"][0])["recording"] == (7, "line")
    capsys.readouterr()
    assert main(["--config", str(conf), "privacy", "ropa"]) == 0
    assert "## Line `reception` (extension 100)" in capsys.readouterr().out
    # No key or database is needed: the record comes from the config alone.
    assert not config.load(conf).database.exists()
    rc = main(["--config", str(conf), "privacy", "ropa", "--output", str(tmp_path / "no" / "x")])
    assert rc == 2 and "cannot write" in capsys.readouterr().err
