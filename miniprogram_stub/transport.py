"""requests transport that answers api.weixin.qq.com from a FakeWeChatPlatform, socket-free.

How wechatpy 1.8.18 talks HTTP (read from its source, it shapes this adapter):

* ``WeChatClient(appid, secret, access_token=None, session=None, ...)``:
  ``session`` is the *token storage* (MemoryStorage/Redis...), not an HTTP
  session. The HTTP session is ``client._http``, a plain ``requests.Session``
  created in ``BaseWeChatClient.__init__``; there is no constructor hook, so
  mount this adapter on ``client._http`` after constructing the client.
* Base URLs: ``WeChatClient.API_BASE_URL = "https://api.weixin.qq.com/cgi-bin/"``;
  ``client.wxa`` (``WeChatWxa.API_BASE_URL``) uses ``"https://api.weixin.qq.com/"``.
  Everything therefore lives under the ``https://api.weixin.qq.com/`` mount prefix.
* Tokens: ``fetch_access_token()`` does ``GET /cgi-bin/token`` (client_credential);
  wechatpy 1.8.18 has no stable_token support. Every ``client.get/post`` adds
  ``access_token`` to ``params`` -- even ``wxa.code_to_session``, so a login
  also triggers a token fetch. On 40001/40014/42001 it re-fetches and retries.
* Bodies: a dict ``data=`` is sent as ``json.dumps(ensure_ascii=False)``
  UTF-8 bytes *without* a Content-Type header, so the body is parsed as JSON
  regardless of headers. Responses that are not JSON (the wxacode PNG) are
  returned to the caller as the raw ``requests.Response``.
* Methods used: ``wxa.code_to_session(js_code)`` (GET /sns/jscode2session),
  ``wxa.send_subscribe_message(user_id, template_id, data, page=None)``
  (POST /cgi-bin/message/subscribe/send; no miniprogram_state parameter),
  ``wxa.get_wxa_code_unlimited(scene, width=430, ..., page=None)``
  (POST /wxa/getwxacodeunlimit), ``wxa.check_text_security(content)``
  (msg_sec_check *v1*). There is no getuserphonenumber helper; call
  ``client.post("https://api.weixin.qq.com/wxa/business/getuserphonenumber", data={...})``.
"""

from __future__ import annotations

import io
from collections.abc import Iterable
from http import HTTPStatus
from urllib.parse import parse_qsl, urlsplit

import requests
from requests import PreparedRequest, Response
from requests.adapters import BaseAdapter
from requests.structures import CaseInsensitiveDict

from miniprogram_stub.platform import FakeWeChatPlatform

WECHAT_API_BASE = "https://api.weixin.qq.com/"


def _body_bytes(body: object) -> bytes:
    if body is None:
        return b""
    if isinstance(body, (bytes, bytearray, memoryview)):
        return bytes(body)
    if isinstance(body, str):
        return body.encode("utf-8")
    read = getattr(body, "read", None)
    if callable(read):
        return _body_bytes(read())
    if isinstance(body, Iterable):
        # Chunked uploads hand requests an iterable of chunks.
        return b"".join(_body_bytes(chunk) for chunk in body)
    raise TypeError(f"unsupported request body type: {type(body).__name__}")


class InProcessAdapter(BaseAdapter):
    """Routes a mounted prefix to ``platform.handle`` in the calling thread."""

    def __init__(self, platform: FakeWeChatPlatform) -> None:
        super().__init__()
        self.platform = platform

    def send(
        self,
        request: PreparedRequest,
        stream: bool = False,
        timeout: float | tuple[float | None, float | None] | None = None,
        verify: bool | str = True,
        cert: str | tuple[str, str] | None = None,
        proxies: dict[str, str] | None = None,
    ) -> Response:
        url = request.url or ""
        parts = urlsplit(url)
        # Last value wins for repeated keys, matching how WeChat reads its query string.
        query = dict(parse_qsl(parts.query, keep_blank_values=True))
        status, headers, body = self.platform.handle(
            request.method or "GET", parts.path or "/", query, _body_bytes(request.body)
        )

        response = Response()
        response.status_code = status
        response.reason = HTTPStatus(status).phrase
        response.headers = CaseInsensitiveDict({**headers, "Content-Length": str(len(body))})
        response.url = url
        response.request = request
        response.encoding = "utf-8"
        response._content = body
        # Lets iter_content()/stream=True replay the buffered body instead of reading raw.
        response._content_consumed = True
        response.raw = io.BytesIO(body)
        return response

    def close(self) -> None:
        pass


def mount(session: requests.Session, platform: FakeWeChatPlatform) -> InProcessAdapter:
    """Send ``session``'s api.weixin.qq.com traffic to ``platform``.

    For wechatpy pass ``client._http`` (see module docstring).
    """
    adapter = InProcessAdapter(platform)
    session.mount(WECHAT_API_BASE, adapter)
    return adapter
