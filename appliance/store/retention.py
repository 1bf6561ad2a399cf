"""SQL for retention: what has outlived its policy, and the purge (issue 5)."""

from __future__ import annotations

from appliance.store.base import StoreBase


class RetentionSql(StoreBase):
    pass
