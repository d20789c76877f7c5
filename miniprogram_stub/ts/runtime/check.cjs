// Runs the compiled client and example against a live server, with wx.request played by
// Node's fetch: tsc proves the types, this proves the wrapper really talks to the service
// (URLs, query lists, headers, the error envelope, a dead network).
//   node runtime/check.cjs <compiled dir> <base url>    (scripts/ts_runtime_check.py runs it)
"use strict";
const assert = require("node:assert/strict");
const path = require("node:path");

const [compiled, base] = process.argv.slice(2);
// The example is written for the production domain; map it here the way the WeChat
// developer tools map a request domain to a local server.
const PRODUCTION = "https://bangban.qingyang.gov.cn";

globalThis.wx = {
  request(option) {
    const url = option.url.startsWith(PRODUCTION) ? base + option.url.slice(PRODUCTION.length)
                                                  : option.url;
    const controller = new AbortController();
    const timer = setTimeout(() => controller.abort(), option.timeout ?? 10000);
    fetch(url, {
      method: option.method ?? "GET",
      headers: option.header,
      body: option.data === undefined ? undefined : JSON.stringify(option.data),
      signal: controller.signal,
    })
      .then(async (resp) => {
        const text = await resp.text();
        let data = text;
        try { data = JSON.parse(text); } catch { /* wx leaves non-JSON as text */ }
        option.success?.({ data, statusCode: resp.status,
                           header: Object.fromEntries(resp.headers), errMsg: "request:ok" });
      })
      .catch((err) => option.fail?.({ errMsg: `request:fail ${err.message}` }))
      .finally(() => clearTimeout(timer));
    return { abort: () => controller.abort() };
  },
  _storage: new Map(),
  getStorageSync(key) { return this._storage.has(key) ? this._storage.get(key) : ""; },
  setStorageSync(key, value) { this._storage.set(key, value); },
};

const { buildUrl, createClient } = require(path.resolve(compiled, "client.js"));
const example = require(path.resolve(compiled, "example.js"));

async function main() {
  assert.equal(
    buildUrl("http://x/", "/a/{id}", { id: "a b/c" }, { k: ["1", "2"], n: undefined, z: 0 }),
    "http://x/a/a%20b%2Fc?k=1&k=2&z=0",
  );

  const roles = await example.signIn("ts-client-probe");
  assert.ok(Array.isArray(roles), "login answers the roles");
  assert.ok(wx.getStorageSync("access_token").length > 20, "the token was stored");
  assert.equal(typeof (await example.whoAmI()), "string");
  const signedIn = createClient({ baseUrl: PRODUCTION, token: () => wx.getStorageSync("access_token") });
  const me = await signedIn.get("/api/v1/me");
  assert.ok(me.ok && Number.isInteger(me.data.user_id), "/me answers through the stored token");
  assert.equal(await example.cancelFirstBooked(), "没有待办的预约");
  assert.deepEqual(await example.openSlots("NO-SUCH-HALL", "2030-01-02"), []);

  const refused = await example.book(999999999, "NO-SUCH-ITEM", "ts-probe-1");
  assert.equal(refused.ok, false);
  if (!refused.ok) {
    assert.ok(refused.status >= 400 && refused.status < 500, `status ${refused.status}`);
    assert.match(refused.error.code, /^[a-z_]+$/);
    assert.match(refused.error.message, /[\u4e00-\u9fff]/, "a Chinese message to show");
  }

  const anonymous = createClient({ baseUrl: base });
  const nobody = await anonymous.get("/api/v1/me");
  assert.equal(nobody.ok, false);
  if (!nobody.ok) {
    assert.equal(nobody.status, 401);
    assert.equal(nobody.error.code, "unauthenticated");
  }

  const offline = createClient({ baseUrl: "http://127.0.0.1:9", timeoutMs: 3000 });
  const dead = await offline.get("/healthz");
  assert.equal(dead.ok, false);
  if (!dead.ok) assert.equal(dead.error.code, "network_error");

  console.log("typed client at run time: login, /me, lists, refusals and a dead network " +
              "behave as typed against the live server");
}

main().catch((err) => {
  console.error(err);
  process.exit(1);
});
