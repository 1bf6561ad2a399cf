"""SQL for post-call transcripts and their keyed full-text index (issue 4)."""

from __future__ import annotations

from appliance.store.base import StoreBase


class TranscriptSql(StoreBase):
    pass
