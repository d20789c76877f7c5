"""What still stops a case's result from being handed over (统一窗口出件 asks this)."""

from __future__ import annotations

from models.cases import Case
from models.window import CaseCommitment, CommitmentCheck, ToleratedMaterial


async def result_release_blockers(case: Case) -> list[str]:
    """Reasons, in Chinese for the clerk, why the result may not be handed over yet; empty
    when it may. The pick-up (approval branch) and ``cases`` deliver both call this one."""
    out = [
        f"容缺材料“{m}”尚未补齐"
        for m in await ToleratedMaterial.filter(case_id=case.id, supplied_at=None)
        .order_by("id").values_list("material", flat=True)
    ]
    if await CaseCommitment.exists(case_id=case.id, check_status=CommitmentCheck.false):
        # A commitment found untrue: the result waits for the department's decision on it.
        out.append("告知承诺经核查不实，结果暂缓发放")
    return out
