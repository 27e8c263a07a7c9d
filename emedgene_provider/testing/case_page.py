"""The simulator's case page: where the "Emedgene case" link leads in development.

The provider links every case to ``{base_url}/case/{case_name}`` (the ``case_url_template``
default). On a real tenant that is the web application's case page, behind its own browser login;
against the simulator it would be a 404, so the simulator answers a small page of its own: the
case's name, status and where it is in the lifecycle. Like the admin endpoints it needs no login,
is never subject to faults or quirks and is not counted among the API's requests; a read of it does
not move a case whose statuses are scripted per read.
"""

from __future__ import annotations

from datetime import datetime, timezone
from html import escape

from emedgene_provider.testing.state import SimCase, lifecycle

#: Where the simulator serves a case's page (the default case link's path).
CASE_PAGE_PREFIX = "/case/"

_STYLE = (
    "body{font-family:sans-serif;margin:2em;max-width:40em}"
    "dt{font-weight:bold;margin-top:.6em}ol li.now{font-weight:bold}"
    ".note{color:#555;font-size:.9em;margin-top:2em}"
)


def _page(title: str, body: str) -> str:
    return (
        "<!doctype html><html lang='en'><head><meta charset='utf-8'>"
        f"<title>{escape(title)}</title><style>{_STYLE}</style></head><body>{body}"
        "<p class='note'>Emedgene simulator: this page stands in for the tenant's case page, "
        "which needs a browser login on a real tenant.</p></body></html>"
    )


def case_page(case: SimCase, status: str, *, custom: tuple[str, ...] = ()) -> str:
    """The HTML page of ``case``, whose status is now ``status``.

    The stages are the lifecycle the simulator moves the case through; a status set by hand or
    scripted per read is shown as such, since no stage of the lifecycle holds it.
    """
    stages = lifecycle(case.should_upload, case.outcome, custom)
    if case.manual_status is not None:
        where = "set by hand (the lifecycle no longer moves it)"
    elif case.scripted:
        where = f"scripted per read ({case.reads} of {len(case.scripted)} read so far)"
    elif status in stages:
        where = f"stage {stages.index(status) + 1} of {len(stages)}"
    else:
        where = "outside the lifecycle"
    items = "".join(
        f"<li class='now'>{escape(stage)}</li>" if stage == status else f"<li>{escape(stage)}</li>"
        for stage in stages
    )
    created = datetime.fromtimestamp(case.created_epoch, timezone.utc).strftime("%Y-%m-%d %H:%M:%S UTC")
    body = (
        f"<h1>Case {escape(case.name)}</h1><dl>"
        f"<dt>Status</dt><dd id='status'>{escape(status)}</dd>"
        f"<dt>Stage</dt><dd id='stage'>{escape(where)}</dd>"
        f"<dt>Created</dt><dd>{created}</dd></dl>"
        f"<h2>Lifecycle</h2><ol>{items}</ol>"
    )
    return _page(f"Case {case.name}: {status}", body)


def missing_page(name: str) -> str:
    """The page for a case name the simulator does not hold (answered with a 404)."""
    return _page(
        f"Case {name} not found",
        f"<h1>Case {escape(name)} not found</h1><p>The simulator holds no case of that name: it "
        "forgets its cases when it restarts or is reset.</p>",
    )
