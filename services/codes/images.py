"""Pictures of codes: the QR (PNG and SVG) of a code's URL, and the WeChat mini-program code
(wxacode) of a long-lived token."""

from __future__ import annotations

import base64
import io
from dataclasses import dataclass
from datetime import datetime

import qrcode
import qrcode.image.svg

from models.codes import IssuedCode
from services import cache
from services.codes.tokens import stored_token

WXACODE_TTL = 30 * 24 * 3600


def _qr(content: str) -> qrcode.QRCode:
    qr = qrcode.QRCode(error_correction=qrcode.constants.ERROR_CORRECT_M, box_size=8, border=4)
    qr.add_data(content)
    qr.make(fit=True)
    return qr


def qr_png(content: str) -> bytes:
    buf = io.BytesIO()
    _qr(content).make_image().save(buf, format="PNG")
    return buf.getvalue()


def qr_svg(content: str) -> str:
    img = _qr(content).make_image(image_factory=qrcode.image.svg.SvgPathImage)
    return str(img.to_string(encoding="unicode"))


@dataclass(frozen=True)
class IssuedQr:
    token: str
    content: str
    expires_at: datetime | None

    def png(self) -> bytes:
        return qr_png(self.content)

    def svg(self) -> str:
        return qr_svg(self.content)


async def wxacode_image(code: IssuedCode) -> bytes:
    """The mini-program code (getwxacodeunlimit) whose scene is the token itself (21
    characters, within the platform's 32). Cached in Redis because the platform limits calls
    and the picture never changes for a token."""
    r = cache.redis()
    key = f"code:wxa:{code.id}"
    cached = await r.get(key)
    if cached:
        return base64.b64decode(cached)
    from services.wechat import wechat

    image = await wechat().wxacode_unlimited(scene=stored_token(code), page="pages/scan/index")
    # decode_responses=True on the shared client: bytes travel as base64 text.
    await r.set(key, base64.b64encode(image).decode(), ex=WXACODE_TTL)
    return image
