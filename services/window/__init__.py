"""综窗 front half (issue 12, the "window" branch). STUB in the approval branch only: the window
engineer's package replaces this file at merge (keep theirs). ``result_release_blockers`` is the
one interface the result window calls before handing a result over."""

from __future__ import annotations

from models.cases import Case


async def result_release_blockers(case: Case) -> list[str]:
    """Why the result may not be handed over yet (容缺 materials still missing), one line each;
    empty when it may. This stub knows no 容缺受理, so nothing blocks."""
    del case
    return []
