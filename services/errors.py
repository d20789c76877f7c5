"""Stable machine error codes, each knowing its HTTP status and the message a resident reads.

Services raise ``AppError``; the API layer turns it into
``{"error": {"code", "message", "fields"}}``. Clients branch on ``code``, never on ``message``.
"""

from __future__ import annotations

from enum import Enum
from typing import Any


class ErrorCode(Enum):
    # (HTTP status, default message)
    bad_request = (400, "请求格式不正确")
    validation_failed = (422, "提交的信息有误，请检查后重试")
    unauthenticated = (401, "请先登录")
    token_expired = (401, "登录已过期，请重新登录")
    invalid_token = (401, "登录凭证无效，请重新登录")
    refresh_reused = (401, "登录凭证已失效，请重新登录")
    wechat_login_failed = (401, "微信登录失败，请重试")
    forbidden = (403, "您没有权限进行此操作")
    not_found = (404, "请求的内容不存在")
    route_not_found = (404, "接口不存在")
    method_not_allowed = (405, "不支持的请求方式")
    conflict = (409, "操作与当前状态冲突")
    identity_already_bound = (409, "您已完成实名认证")
    identity_taken = (409, "该身份证号已被其他账号绑定")
    idempotency_conflict = (409, "相同的请求标识已用于不同的请求")
    feedback_reopen_used = (409, "每条诉求只能重新办理一次，如仍不满意请拨打12345")
    feedback_state = (409, "该诉求当前状态不允许此操作")
    already_rated = (409, "您已评价过，一事一评")
    rating_not_open = (409, "办结后才能评价")
    rectification_state = (409, "该整改任务当前状态不允许此操作")
    illegal_transition = (409, "办件当前状态不允许此操作")
    case_changed = (409, "办件已被他人处理，请刷新后重试")
    reopen_window_closed = (409, "已超过可申请重新办理的期限")
    proxy_authorization_required = (403, "帮办人员代办须取得申请人的代办授权")
    identity_required = (409, "请先完成实名认证")
    assignment_state = (409, "该帮办任务当前状态不允许此操作")
    code_expired = (410, "二维码已过期，请刷新二维码")
    code_revoked = (410, "二维码已作废，请刷新二维码")
    code_unrecognised = (404, "无法识别的二维码")
    slot_full = (409, "该时段已约满")
    already_booked = (409, "您已预约该时段")
    booking_limit_reached = (409, "未完成的预约已达上限")
    booking_suspended = (403, "因多次预约未到，暂停预约")
    slot_not_bookable = (409, "该时段不可预约")
    cancel_too_late = (409, "已超过可取消时间")
    appointment_not_active = (409, "该预约已取消或已结束")
    slot_available = (409, "该时段尚有余位，可直接预约")
    already_waitlisted = (409, "您已在该时段的候补名单中")
    check_in_closed = (409, "不在签到时间内")
    item_not_offered = (409, "该大厅或窗口不办理此事项")
    check_in_code_invalid = (409, "签到码无效或已过期")
    payload_too_large = (413, "提交的内容过大")
    unsupported_media_type = (415, "请以 JSON 格式提交")
    rate_limited = (429, "操作过于频繁，请稍后再试")
    content_rejected = (422, "内容未通过安全检查，请修改后重新提交")
    wechat_unavailable = (503, "微信服务暂时不可用，请稍后再试")
    unavailable = (503, "服务暂时不可用，请稍后再试")
    internal_error = (500, "系统繁忙，请稍后再试")
    # 实名 + 实人 (services/verification.py): one code per outcome the mini program must tell
    # apart. Name/ID vs face mismatches share one answer so the flow can't be used as an oracle.
    identity_face_required = (410, "实名认证须通过人脸核身完成，请使用新版小程序")
    identity_unverified = (403, "请先通过人脸核身（或到窗口核验身份）完成实人认证")
    face_pending = (409, "人脸核身尚未完成，请完成后再试")
    face_cancelled = (409, "您已取消人脸核身，可重新发起")
    face_timeout = (409, "人脸核身超时，请重新发起")
    face_mismatch = (409, "身份信息与人脸核验不一致，认证未通过")
    face_capture_failed = (409, "未能采集到有效的人脸信息，请在光线充足处正对手机重试")
    face_unsupported = (409, "当前设备或权限不支持人脸核身，请授权相机或到窗口办理")
    face_failed = (409, "人脸核身未通过，请重新发起")
    face_session_invalid = (409, "核身会话已失效，请重新发起人脸核身")
    identity_desk_conflict = (409, "无法在窗口完成绑定，请本人通过人脸核身认证")
    org_conflict = (409, "组织机构中已有相同的记录")
    org_in_use = (409, "仍有下级或人员，不能删除")
    # One answer for every on-behalf refusal (no relation, or name and ID number don't match),
    # so the answer never tells whether a name fits a registered ID number.
    on_behalf_not_permitted = (403, "无法代办：须为您网格内的居民、居民本人已授权或由您登记，"
                                    "且姓名与身份证号一致")
    # 全程网办
    upload_type_refused = (415, "仅支持 JPEG、PNG、HEIC 图片或 PDF 文件")
    upload_too_large = (413, "文件过大")
    upload_infected = (422, "文件未通过病毒查杀")
    upload_in_use = (409, "该文件已用于提交的办件，不能删除")
    link_invalid = (403, "链接无效或已过期，请重新打开")
    draft_submitted = (409, "该申请已提交")
    materials_mismatch = (422, "补正材料须与告知的材料一致")
    form_not_found = (404, "该事项暂未开通网上申请")
    # 综窗 at the window (services/window/)
    window_clerk_only = (403, "仅大厅综窗受理员可以在窗口受理")
    window_key_materials_missing = (409, "尚缺必须当场提交的材料，不能受理")
    window_result_blocked = (409, "尚有容缺材料未补齐，暂不能发放结果")
    window_commitment_checked = (409, "该承诺已核查")
    # 综窗 behind the scenes and at the result window (issue 12, services/approval)
    task_taken = (409, "该审批任务已被他人认领")
    task_state = (409, "该审批任务当前状态不允许此操作")
    approval_by_departments = (409, "该办件由各审批部门分别审批，请在审批任务中办理")
    release_not_ready = (409, "办理结果尚未出具，暂不能选择领取方式")
    release_blocked = (409, "尚有容缺材料未补齐，暂不能出件")
    release_method = (409, "与申请人选择的出件方式不符")
    release_required = (409, "请通过出件接口核验领取人身份或登记寄递单号")
    pickup_wrong_person = (403, "领取人身份与申请人不符，不能领取")
    rating_review_state = (409, "该差评的核实状态不允许此操作")

    @property
    def status(self) -> int:
        return self.value[0]

    @property
    def default_message(self) -> str:
        return self.value[1]


class AppError(Exception):
    """A failure the caller can act on, expressed in the domain's words."""

    def __init__(
        self,
        code: ErrorCode,
        message: str | None = None,
        *,
        fields: dict[str, str] | None = None,
        headers: dict[str, str] | None = None,
        extra: dict[str, Any] | None = None,
    ) -> None:
        self.code = code
        self.message = message or code.default_message
        self.fields = fields or {}
        self.headers = headers or {}
        self.extra = extra or {}
        super().__init__(f"{code.name}: {self.message}")

    @property
    def status(self) -> int:
        return self.code.status

    def body(self) -> dict[str, Any]:
        error: dict[str, Any] = {
            "code": self.code.name,
            "message": self.message,
            "fields": self.fields,
        }
        error.update(self.extra)
        return {"error": error}


def not_found(what: str = "内容") -> AppError:
    # One message for "absent" and "not yours": telling them apart would leak that an id exists.
    return AppError(ErrorCode.not_found, f"{what}不存在")


def forbidden(message: str | None = None) -> AppError:
    return AppError(ErrorCode.forbidden, message)
