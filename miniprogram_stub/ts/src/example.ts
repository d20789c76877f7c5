/**
 * How a page of the mini program calls the API through the typed client. CI compiles this
 * file: if the backend renames a field or a route used here, the build breaks here first.
 */
import { createClient, type ApiResult } from "./client";
import type { AppointmentOut, SlotOut } from "./schema";

const api = createClient({
  baseUrl: "https://bangban.qingyang.gov.cn",
  token: () => wx.getStorageSync<string>("access_token") || undefined,
});

/** 登录：wx.login 的 code 换令牌。 */
export async function signIn(code: string): Promise<string[]> {
  const r = await api.post("/api/v1/auth/wechat-login", { body: { code } });
  if (!r.ok) throw new Error(r.error.message);
  wx.setStorageSync("access_token", r.data.access_token);
  wx.setStorageSync("refresh_token", r.data.refresh_token);
  return r.data.roles;
}

/** 某大厅某天还能约的时段。 */
export async function openSlots(hallCode: string, date: string): Promise<SlotOut[]> {
  const r = await api.get("/api/v1/halls/{hall_code}/slots", {
    path: { hall_code: hallCode },
    query: { date, window_kind: "comprehensive" },
  });
  return r.ok ? r.data.slots.filter((slot) => slot.bookable && slot.remaining > 0) : [];
}

/** 预约：同一个 Idempotency-Key 重试，拿到的是第一次的结果，不会约两次。 */
export async function book(
  slotId: number,
  itemCode: string,
  retryKey: string,
): Promise<ApiResult<AppointmentOut>> {
  return api.post("/api/v1/appointments", {
    body: { slot_id: slotId, item_code: itemCode },
    idempotencyKey: retryKey,
  });
}

/** 我的预约（只看待办的），再取消其中一个。 */
export async function cancelFirstBooked(): Promise<string> {
  const mine = await api.get("/api/v1/appointments", { query: { status: "booked" } });
  if (!mine.ok) return mine.error.message;
  const first = mine.data.appointments[0];
  if (!first) return "没有待办的预约";
  const r = await api.post("/api/v1/appointments/{appointment_id}/cancel", {
    path: { appointment_id: first.id },
  });
  if (r.ok) return `已取消 ${r.data.hall_name} ${r.data.starts_at}`;
  // Branch on the stable code; show the Chinese message.
  return r.error.code === "cancel_too_late" ? "开始前一小时内不能取消" : r.error.message;
}

/** 我的资料：敏感信息已脱敏。 */
export async function whoAmI(): Promise<string> {
  const r = await api.get("/api/v1/me");
  return r.ok ? (r.data.identity?.name ?? r.data.nickname) : r.error.message;
}

// The types stay strict: each call below must NOT compile, and tsc fails on an expected
// error that did not happen, so a generator change that loosened them to `any` is caught.
export function mistakes(): void {
  // @ts-expect-error the login body needs the code
  void api.post("/api/v1/auth/wechat-login", { body: {} });
  // @ts-expect-error no such route
  void api.get("/api/v1/nowhere");
  // @ts-expect-error the route takes POST, not GET
  void api.get("/api/v1/auth/refresh");
  // @ts-expect-error appointment_id is a number
  void api.get("/api/v1/appointments/{appointment_id}", { path: { appointment_id: "7" } });
  // @ts-expect-error the slots query needs a date
  void api.get("/api/v1/halls/{hall_code}/slots", { path: { hall_code: "QY-001" } });
  // @ts-expect-error wx.request cannot send PATCH
  void api.patch;
}
