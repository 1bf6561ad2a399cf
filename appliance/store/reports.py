"""SQL for post-call AI reports (issue 4)."""

from __future__ import annotations

from appliance.store.base import StoreBase


class ReportSql(StoreBase):
    pass
