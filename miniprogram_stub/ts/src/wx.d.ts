/**
 * The slice of the mini-program runtime the client calls: wx.request and storage. The
 * mini-program repository has the full typing (miniprogram-api-typings); this copy keeps CI
 * from depending on it, and is written to agree with it on everything it declares.
 */
declare namespace WechatMiniprogram {
  /** wx.request has no PATCH: the backend must never need it (tests/api/test_contract.py). */
  type RequestMethod =
    | "OPTIONS" | "GET" | "HEAD" | "POST" | "PUT" | "DELETE" | "TRACE" | "CONNECT";

  interface GeneralCallbackResult {
    errMsg: string;
  }

  interface RequestSuccessCallbackResult<T = string | Record<string, unknown> | ArrayBuffer> {
    data: T;
    statusCode: number;
    header: Record<string, string>;
    errMsg: string;
  }

  interface RequestOption<T = string | Record<string, unknown> | ArrayBuffer> {
    url: string;
    method?: RequestMethod;
    data?: string | Record<string, unknown> | ArrayBuffer;
    header?: Record<string, string>;
    timeout?: number;
    dataType?: "json" | string;
    responseType?: "text" | "arraybuffer";
    success?: (result: RequestSuccessCallbackResult<T>) => void;
    fail?: (result: GeneralCallbackResult) => void;
    complete?: (result: GeneralCallbackResult) => void;
  }

  interface RequestTask {
    abort(): void;
  }

  interface Wx {
    request<T = string | Record<string, unknown> | ArrayBuffer>(
      option: RequestOption<T>,
    ): RequestTask;
    getStorageSync<T = unknown>(key: string): T | "";
    setStorageSync(key: string, data: unknown): void;
  }
}

declare const wx: WechatMiniprogram.Wx;
