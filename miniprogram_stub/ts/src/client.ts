/**
 * A typed wx.request for the 小庆帮办 API. Every path, path parameter, query, body and
 * answer is checked against ./schema.d.ts, which is generated from the service's OpenAPI
 * document (`make ts-client`): a backend change that breaks the mini program stops CI.
 *
 *   const api = createClient({ baseUrl, token: () => wx.getStorageSync<string>("token") });
 *   const r = await api.get("/api/v1/appointments/{appointment_id}", {
 *     path: { appointment_id: 42 },
 *   });
 *   if (r.ok) show(r.data.hall_name); else toast(r.error.message);
 *
 * Calls never throw: a refusal carries the service's envelope (`code` to branch on,
 * `message` in Chinese to show, `fields` per input), a dead network the code `network_error`.
 */
import type { components, paths } from "./schema";

/** What both wx.request can send and the API uses (wx.request has no PATCH). */
export type Method = "get" | "post" | "put" | "delete";

/** The paths that answer `M`. */
export type PathsFor<M extends Method> = {
  [P in keyof paths]: paths[P] extends { [K in M]: unknown } ? P : never;
}[keyof paths];

export type Operation<P extends keyof paths, M extends Method> =
  paths[P] extends { [K in M]: infer O } ? O : never;

type PathOf<O> = O extends { parameters: { path: infer T } } ? T : never;
type BodyOf<O> = O extends { requestBody: { content: { "application/json": infer B } } }
  ? B
  : never;
type JsonOf<R> = R extends { content: { "application/json": infer T } } ? T : never;

/** The answer's body for success (200, 201 or 202). */
export type Success<O> = O extends { responses: infer R }
  ? JsonOf<R[Extract<keyof R, 200 | 201 | 202>]>
  : never;

type PathOption<O> = [PathOf<O>] extends [never] ? { path?: undefined } : { path: PathOf<O> };
type BodyOption<O> = [BodyOf<O>] extends [never] ? { body?: undefined } : { body: BodyOf<O> };
type QueryOption<O> = O extends { parameters: { query: infer Q } }
  ? { query: Q }
  : O extends { parameters: { query?: infer Q } }
    ? [Q] extends [never | undefined]
      ? { query?: undefined }
      : { query?: Q }
    : { query?: undefined };

export type Options<O> = PathOption<O> & QueryOption<O> & BodyOption<O> & {
  /** Sent as Idempotency-Key: a retried create answers what the first try did. */
  idempotencyKey?: string;
};

/** Nothing to pass: the options may be left out. */
type Args<O> = {} extends Options<O> ? [options?: Options<O>] : [options: Options<O>];

export type ApiError = components["schemas"]["ErrorDetail"];
export type ApiResult<T> =
  | { ok: true; status: number; data: T }
  | { ok: false; status: number; error: ApiError };

export interface ClientConfig {
  /** e.g. https://bangban.qingyang.gov.cn (a domain listed in the mini program's settings) */
  baseUrl: string;
  /** The current access token, if signed in. */
  token?: () => string | undefined;
  timeoutMs?: number;
}

type Scalar = string | number | boolean;

export function buildUrl(
  baseUrl: string,
  path: string,
  pathParams?: Record<string, Scalar>,
  query?: Record<string, Scalar | Scalar[] | null | undefined>,
): string {
  const filled = path.replace(/\{(\w+)\}/g, (_match, name: string) => {
    const value = pathParams?.[name];
    if (value === undefined) {
      throw new Error(`missing path parameter ${name} for ${path}`);
    }
    return encodeURIComponent(String(value));
  });
  const pairs: string[] = [];
  for (const [key, value] of Object.entries(query ?? {})) {
    if (value === undefined || value === null) continue;
    // A list repeats its key (?kind=a&kind=b), which is how the service reads lists.
    for (const item of Array.isArray(value) ? value : [value]) {
      pairs.push(`${encodeURIComponent(key)}=${encodeURIComponent(String(item))}`);
    }
  }
  return baseUrl.replace(/\/$/, "") + filled + (pairs.length ? `?${pairs.join("&")}` : "");
}

function isEnvelope(data: unknown): data is { error: ApiError } {
  if (typeof data !== "object" || data === null || !("error" in data)) return false;
  const error = (data as { error: unknown }).error;
  return typeof error === "object" && error !== null && "code" in error;
}

function refusal(data: unknown): ApiError {
  if (isEnvelope(data)) return data.error;
  return { code: "unexpected_response", message: "服务暂时无法处理，请稍后再试", fields: {},
           retry_after: null };
}

export function createClient(config: ClientConfig) {
  function call<M extends Method, P extends PathsFor<M>>(
    method: M,
    path: P,
    options: Options<Operation<P, M>> | undefined,
  ): Promise<ApiResult<Success<Operation<P, M>>>> {
    const opts = (options ?? {}) as {
      path?: Record<string, Scalar>;
      query?: Record<string, Scalar | Scalar[] | null | undefined>;
      body?: Record<string, unknown>;
      idempotencyKey?: string;
    };
    const header: Record<string, string> = { "content-type": "application/json" };
    const token = config.token?.();
    if (token) header["Authorization"] = `Bearer ${token}`;
    if (opts.idempotencyKey) header["Idempotency-Key"] = opts.idempotencyKey;
    return new Promise((resolve) => {
      wx.request<unknown>({
        url: buildUrl(config.baseUrl, path, opts.path, opts.query),
        method: method.toUpperCase() as WechatMiniprogram.RequestMethod,
        // GET carries everything in the URL: wx.request would turn data into a query
        // string of its own, which cannot repeat a key.
        ...(method === "get" || opts.body === undefined ? {} : { data: opts.body }),
        header,
        timeout: config.timeoutMs ?? 10000,
        success(result) {
          const status = result.statusCode;
          if (status >= 200 && status < 300) {
            resolve({ ok: true, status, data: result.data as Success<Operation<P, M>> });
          } else {
            resolve({ ok: false, status, error: refusal(result.data) });
          }
        },
        fail(result) {
          resolve({
            ok: false,
            status: 0,
            error: { code: "network_error", message: "网络不可用，请检查网络后重试",
                     fields: { network: result.errMsg }, retry_after: null },
          });
        },
      });
    });
  }

  return {
    get: <P extends PathsFor<"get">>(path: P, ...[options]: Args<Operation<P, "get">>) =>
      call("get", path, options),
    post: <P extends PathsFor<"post">>(path: P, ...[options]: Args<Operation<P, "post">>) =>
      call("post", path, options),
    put: <P extends PathsFor<"put">>(path: P, ...[options]: Args<Operation<P, "put">>) =>
      call("put", path, options),
    delete: <P extends PathsFor<"delete">>(
      path: P,
      ...[options]: Args<Operation<P, "delete">>
    ) => call("delete", path, options),
  };
}

export type Client = ReturnType<typeof createClient>;
