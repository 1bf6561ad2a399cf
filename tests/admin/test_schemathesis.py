"""schemathesis against the served OpenAPI schema: every /api operation, a bounded number of
generated requests each (with an all-scopes token), must never answer 5xx and must answer
with a documented status code, the documented content type and a body matching its schema.

The HTML pages are left out: they are not the API the schema describes (they answer a bearer
token with a redirect to the login page).
"""

from __future__ import annotations

import asyncio
import os
from pathlib import Path
from typing import Any

import schemathesis
from hypothesis import HealthCheck, Phase, given, settings
from schemathesis.python.asgi import shutdown_lifespans

from appliance import config
from appliance.admin.app import create_app
from appliance.admin.services import open_services
from appliance.admin.tokens import SCOPES
from appliance.privacy import Actor
from tests.privacy.conftest import RAW
from tests.privacy.rights_fixtures import seed

ROOT = Actor("cli:root", "operator")
# Per operation; CALLVAULT_SCHEMATHESIS_EXAMPLES raises it for a longer soak.
EXAMPLES = int(os.environ.get("CALLVAULT_SCHEMATHESIS_EXAMPLES", "15"))
CHECKS = [
    schemathesis.checks.not_a_server_error,
    schemathesis.checks.status_code_conformance,
    schemathesis.checks.content_type_conformance,
    schemathesis.checks.response_schema_conformance,
]


def _cfg(tmp: Path) -> config.Config:
    # AMI on a port nothing listens on: the system status answers "unreachable" at once.
    raw = {**RAW, "asterisk": {**RAW["asterisk"], "ami_port": 1}}  # type: ignore[dict-item]
    return config.parse(raw, base_dir=tmp)


async def _prepare(cfg: config.Config, tmp: Path) -> str:
    async with open_services(cfg) as svc:
        await seed(svc.privacy, tmp)
        await svc.privacy.breaches.record(
            ROOT, summary="A laptop with an export was stolen", categories=["recording"],
            subjects_affected=1, consequences="exposure of one call", measures="remote wipe",
        )  # fmt: skip
        await svc.privacy.review.flag("report", "call:1700000001.1", "report did not validate")
        await svc.users.create("someone", "dpo", ROOT)
        return await svc.tokens.create("schemathesis", list(SCOPES), ROOT)


def test_api_matches_its_schema(tmp_path: Path) -> None:
    cfg = _cfg(tmp_path)
    token = asyncio.run(_prepare(cfg, tmp_path))
    app = create_app(cfg)
    schema = schemathesis.openapi.from_asgi("/schema/openapi.json", app).include(
        path_regex="^/api/"
    )
    headers = {"Authorization": f"Bearer {token}"}
    failures: list[str] = []
    operations = 0
    try:
        for result in schema.get_all_operations():
            op = result.ok()
            operations += 1

            @settings(
                max_examples=EXAMPLES,
                deadline=None,
                derandomize=True,
                database=None,
                phases=[Phase.explicit, Phase.generate],
                suppress_health_check=list(HealthCheck),
            )
            @given(case=op.as_strategy())
            def exercise(case: Any) -> None:
                case.call_and_validate(headers=headers, checks=CHECKS)

            try:
                exercise()
            except (Exception, BaseExceptionGroup) as exc:  # reported together below
                failures.append(f"{op.label}: {str(exc)[:1200]}")
    finally:
        shutdown_lifespans()
    assert operations >= 30
    assert not failures, "\n\n".join(failures)
