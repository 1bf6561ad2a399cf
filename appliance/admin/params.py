"""Parameter types shared by the admin routes."""

from __future__ import annotations

from typing import Annotated

from litestar.params import Parameter

# A database row id in a path. Bounded so that a huge number is a 400 naming the parameter
# (and the bound is in the OpenAPI schema), not an OverflowError from SQLite (a 500).
MAX_ID = 2**53
RowId = Annotated[int, Parameter(ge=1, le=MAX_ID, description="row id")]
