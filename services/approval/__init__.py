"""综窗 behind the scenes and at the result window (issue 12, back half).

- ``tasks``: 后台分类审批. An accepted case is routed to the department(s) approving its items:
  one ``CaseTask`` per department (a 一件事 bundle: several, run in parallel, 并联审批), each
  with its own due time; approvers take (claim), approve, reject or return to the window; the
  case is decided when every task is.
- ``release``: 统一窗口出件. The applicant chooses window pick-up or EMS; the clerk hands the
  result over after checking the person's 人码 or ID card, or records the tracking number.

Importing this package registers the case-move hook (``services.cases.MOVE_HOOKS``).
"""

from services.approval import release, tasks

__all__ = ["release", "tasks"]
