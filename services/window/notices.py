"""The printable notices a clerk hands over: the 一次性告知单 (everything missing, each with its
reason) and the 不予受理告知书 (the ground and its legal basis).

PDFs are drawn with fpdf2 in the project's CJK font (``services.fonts.cjk_font``: the bundled
Noto Sans SC subset, embedded and subset again per document, so the text is real text a reader
or ``pypdf`` can extract, not pixels). Rendering is CPU work (0.15-0.23 s here): callers run
``render_*`` off the event loop (``asyncio.to_thread``). Each notice carries the case's QR code
(the case id in the mini program's scheme) so the applicant or another clerk finds the case.
"""

from __future__ import annotations

import io
from dataclasses import dataclass
from datetime import datetime

import qrcode
from fpdf import FPDF

from models.cases import Case, SupplementRequest
from models.catalogue import Hall
from models.users import User
from models.window import CaseRefusal
from services import cases, clock
from services.auth import Principal
from services.errors import AppError, ErrorCode, not_found
from services.fonts import cjk_font
from services.window.rules import rules_for


def case_qr_content(case_id: int) -> str:
    # What the mini program's scanner opens: the case page, by id (no personal data in it).
    return f"xqbb://case/{case_id}"


@dataclass(frozen=True)
class NoticeData:
    title: str  # 一次性告知单 / 不予受理告知书
    number: str
    case_id: int
    item: str
    applicant: str  # masked name
    lines: list[tuple[str, str]]  # (material or ground, reason or note)
    legal_basis: str
    clerk: str
    hall: str
    hall_phone: str
    day: str


def _font_path() -> str:
    font, cjk = cjk_font(12)
    path = getattr(font, "path", None)
    if not cjk or not isinstance(path, str):
        # The bundled font ships with the code; without it a Chinese notice can't be printed.
        raise AppError(ErrorCode.unavailable, "打印字体缺失，暂不能生成告知书")
    return path


def _qr_png(content: str) -> bytes:
    # Greyscale, not 1-bit: a 1-bit PNG is stored in the PDF in a packing some readers
    # (pypdf among them) unpack wrongly, and the printed code must scan from any copy.
    img = qrcode.make(content, box_size=6, border=2).get_image().convert("L")
    buf = io.BytesIO()
    img.save(buf, format="PNG")
    return buf.getvalue()


def render(data: NoticeData) -> bytes:
    """One A4 page (more if the list is long). Pure: call it off the event loop."""
    pdf = FPDF(format="A4")
    pdf.set_auto_page_break(auto=True, margin=18)
    pdf.add_font("cjk", fname=_font_path())
    pdf.add_page()
    pdf.set_font("cjk", size=20)
    pdf.cell(0, 14, data.title, align="C", new_x="LMARGIN", new_y="NEXT")
    pdf.set_font("cjk", size=10)
    pdf.cell(0, 6, f"编号：{data.number}", align="R", new_x="LMARGIN", new_y="NEXT")
    pdf.image(io.BytesIO(_qr_png(case_qr_content(data.case_id))), x=170, y=30, w=28)
    pdf.set_font("cjk", size=12)
    for label, value in (("申请人", data.applicant), ("办理事项", data.item),
                         ("办件编号", str(data.case_id)), ("受理大厅", data.hall)):
        pdf.cell(0, 8, f"{label}：{value}", new_x="LMARGIN", new_y="NEXT")
    pdf.ln(3)
    heading = "需补齐的材料及原因：" if data.title == "一次性告知单" else "不予受理的理由："
    pdf.set_font("cjk", size=13)
    pdf.cell(0, 9, heading, new_x="LMARGIN", new_y="NEXT")
    pdf.set_font("cjk", size=12)
    for i, (what, why) in enumerate(data.lines, 1):
        pdf.multi_cell(0, 7, f"{i}. {what}" + (f"——{why}" if why else ""),
                       new_x="LMARGIN", new_y="NEXT")
    pdf.ln(3)
    pdf.set_font("cjk", size=13)
    pdf.cell(0, 9, "法律依据：", new_x="LMARGIN", new_y="NEXT")
    pdf.set_font("cjk", size=11)
    pdf.multi_cell(0, 6, data.legal_basis or "（该事项办事指南未载明）",
                   new_x="LMARGIN", new_y="NEXT")
    pdf.ln(4)
    pdf.set_font("cjk", size=11)
    if data.title == "一次性告知单":
        pdf.multi_cell(0, 6, "以上为本次需补齐的全部材料，一次性告知。"
                             "补齐后可到任一窗口或在小程序中提交。",
                       new_x="LMARGIN", new_y="NEXT")
    else:
        pdf.multi_cell(0, 6, "如不服本决定，可依法申请行政复议或者提起行政诉讼。",
                       new_x="LMARGIN", new_y="NEXT")
    pdf.ln(6)
    pdf.cell(0, 7, f"经办人：{data.clerk}    {data.hall}（盖章）", new_x="LMARGIN", new_y="NEXT")
    pdf.cell(0, 7, f"日期：{data.day}    咨询电话：{data.hall_phone or '12345'}",
             new_x="LMARGIN", new_y="NEXT")
    return bytes(pdf.output())


async def _common(case: Case, *, clerk_id: int | None,
                  at: datetime) -> tuple[str, str, str, str, str, str]:
    rules = await rules_for(case)
    hall = await Hall.get_or_none(code=case.hall_code)
    clerk = await User.get_or_none(id=clerk_id) if clerk_id else None
    await case.fetch_related("person")
    clerk_name = (clerk.nickname or f"工作人员{clerk.id}") if clerk else "窗口工作人员"
    return (rules.legal_basis, clerk_name, hall.name if hall else case.hall_code,
            hall.phone if hall else "", case.person.name_masked if case.person else "",
            clock.local(at).strftime("%Y年%m月%d日"))


async def supplement_notice(*, actor: Principal, case_id: int, sequence: int) -> NoticeData:
    """The 一次性告知单 of one notice on the case, for anyone who may see the case (the
    applicant prints it at home; the clerk at the desk)."""
    case = await cases.access_case(actor, case_id)
    row = await SupplementRequest.get_or_none(case_id=case.id, sequence=sequence)
    if row is None:
        raise not_found("告知单")
    basis, clerk, hall, phone, applicant, day = await _common(
        case, clerk_id=row.requested_by_id, at=row.requested_at)  # type: ignore[attr-defined]
    lines = [(str(i.get("material", "")), str(i.get("reason", "")))
             for i in row.items.get("items", [])]
    return NoticeData(title="一次性告知单", number=f"GZ-{case.id}-{row.sequence}",
                      case_id=case.id, item=case.title, applicant=applicant, lines=lines,
                      legal_basis=basis, clerk=clerk, hall=hall, hall_phone=phone, day=day)


async def refusal_notice(*, actor: Principal, case_id: int) -> NoticeData:
    case = await cases.access_case(actor, case_id)
    row = await CaseRefusal.get_or_none(case_id=case.id)
    if row is None:
        raise not_found("不予受理告知书")
    _basis, clerk, hall, phone, applicant, day = await _common(
        case, clerk_id=row.refused_by_id, at=row.refused_at)  # type: ignore[attr-defined]
    return NoticeData(title="不予受理告知书", number=f"BY-{case.id}", case_id=case.id,
                      item=case.title, applicant=applicant, lines=[(row.ground, row.note)],
                      legal_basis=row.legal_basis, clerk=clerk, hall=hall, hall_phone=phone,
                      day=day)
