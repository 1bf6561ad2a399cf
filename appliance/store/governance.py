"""SQL for human review queue, breach register (issue 5)."""

from __future__ import annotations

from appliance.store.base import StoreBase


class GovernanceSql(StoreBase):
    pass
