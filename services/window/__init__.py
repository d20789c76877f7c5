"""综窗 at the window (issue 12, front half): everything up to and including the decision to
accept a case or not.

- ``intake``: a clerk opens a case for the person at the desk (walk-in); the person's verified
  account adopts it.
- ``ownership``: 首问负责 — the first staff member to receive a request owns it until a recorded
  hand-over; supervisors list unowned requests and each owner's open load.
- ``acceptance``: 容缺受理 (non-key materials accepted missing, with a deadline, an overdue sweep)
  and 告知承诺制 (a signed commitment in place of materials, with a later 核查).
- ``refusal``: 不予受理 with a ground from the item and its legal basis.
- ``notices``: the printable 一次性告知单 and 不予受理告知书 PDFs.
- ``release``: ``result_release_blockers(case)`` — what still stops the result being handed over.
- ``content``: the demo items' legal basis, conditions, refusal grounds, FAQ, 容缺 and 承诺 marks.

Every move of the case itself goes through ``services.cases`` (its table and its one
transaction); the window's rows are written inside that transaction via ``on_locked``.
"""
