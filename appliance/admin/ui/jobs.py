"""A background job's progress, as the HTML fragment the starting page shows and htmx polls.

The fragment re-requests itself (`hx-trigger="load delay:1s"`) while the job runs; the answer
for a finished job carries `HX-Refresh` so the page reloads once and shows the work's new
state next to the finished bar and the link to the result. No script of ours is involved.
"""

from __future__ import annotations

from typing import Any

from litestar import Request, get
from litestar.exceptions import NotFoundException
from litestar.params import FromPath
from litestar.response import Template

from appliance.admin.auth import logged_in
from appliance.admin.jobs import Job, JobError, registry
from appliance.admin.users import User

UserReq = Request[User, str, Any]
POLL_S = 1


def find(request: UserReq, job_id: str) -> Job | None:
    """The user's own job, or None (unknown, forgotten, or someone else's)."""
    try:
        return registry(request.app.state).get(job_id, request.user.username)
    except JobError:
        return None


@get("/jobs/{job_id:str}", guards=[logged_in], include_in_schema=False)
async def job_fragment(job_id: FromPath[str], request: UserReq) -> Template:
    job = find(request, job_id)
    if job is None:
        raise NotFoundException(f"no job {job_id[:40]!r} for you")
    await job.refresh()
    headers = {"Cache-Control": "no-store"}
    if not job.running and request.headers.get("hx-request") == "true":
        headers["HX-Refresh"] = "true"
    return Template("_job.html", context={"job": job, "poll_s": POLL_S}, headers=headers)


async def close(state: Any) -> None:
    """At shutdown, before the services close: cancel what still runs (it is resumable)."""
    await registry(state).close()


ROUTES = [job_fragment]
