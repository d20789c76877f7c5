"""What staff see of a material: the same pages with "仅供 XX 事项办理使用" across them.

Images get the text tiled over them. PDFs are rendered page by page with PDFium (pypdfium2),
each page watermarked and re-encoded as JPEG, and the JPEGs assembled into a new PDF: the staff
copy has no text layer, scripts or attachments left, only marked pictures of the pages. One
page is held decoded at a time.

PDFium is not thread-safe: every use goes through ``_PDFIUM``. All of this is CPU-bound and
runs in a worker thread (``asyncio.to_thread``), never on the event loop.
"""

from __future__ import annotations

import io
import threading
from dataclasses import dataclass
from pathlib import Path

import pypdfium2 as pdfium
from PIL import Image, ImageDraw

from services import fonts

_PDFIUM = threading.Lock()
# Long side of a rendered page, pixels: A4 at about 150 dpi, legible for review.
PAGE_LONG_SIDE = 1600


class BadPdf(ValueError):
    pass


def pdf_page_count(path: Path) -> int:
    """Pages of a PDF PDFium can open (an encrypted or broken one raises ``BadPdf``)."""
    with _PDFIUM:
        try:
            doc = pdfium.PdfDocument(str(path))
        except pdfium.PdfiumError as exc:
            raise BadPdf(str(exc)) from exc
        try:
            return len(doc)
        finally:
            doc.close()


@dataclass(frozen=True)
class Mark:
    text: str  # 仅供 XX 事项办理使用
    ascii: str  # the same in ASCII, should no CJK font load (services/fonts ships one)


def watermark_image(img: Image.Image, mark: Mark) -> Image.Image:
    base = img.convert("RGBA")
    layer = Image.new("RGBA", base.size, (0, 0, 0, 0))
    draw = ImageDraw.Draw(layer)
    size = max(16, min(base.size) // 18)
    font, cjk = fonts.cjk_font(size)
    # Without a CJK font the Chinese would print as empty boxes: a mark nobody can read.
    text = mark.text if cjk else mark.ascii
    step_x, step_y = size * (len(text) + 2), size * 4
    # First row inside the top edge, so even a small scan carries the mark.
    for row, y in enumerate(range(size // 2, base.size[1], step_y)):
        for x in range(-(row % 2) * step_x // 2, base.size[0] + step_x, step_x):
            draw.text((x, y), text, fill=(200, 30, 30, 110), font=font)
    return Image.alpha_composite(base, layer).convert("RGB")


def watermark_jpeg(data: bytes, mark: Mark) -> bytes:
    with Image.open(io.BytesIO(data)) as img:
        marked = watermark_image(img, mark)
    out = io.BytesIO()
    marked.save(out, "JPEG", quality=85)
    return out.getvalue()


def watermark_pdf(data: bytes, mark: Mark) -> bytes:
    with _PDFIUM:
        src = pdfium.PdfDocument(data)
        dst = pdfium.PdfDocument.new()
        try:
            for i in range(len(src)):
                page = src[i]
                w, h = page.get_size()
                scale = PAGE_LONG_SIDE / max(w, h, 1)
                rendered = page.render(scale=scale).to_pil()
                page.close()
                jpeg = io.BytesIO()
                watermark_image(rendered, mark).save(jpeg, "JPEG", quality=80)
                jpeg.seek(0)
                image = pdfium.PdfImage.new(dst)
                image.load_jpeg(jpeg, inline=True)
                # Same page size in points as the original; the picture fills it.
                image.set_matrix(pdfium.PdfMatrix().scale(w, h))
                out_page = dst.new_page(w, h)
                out_page.insert_obj(image)
                out_page.gen_content()
                out_page.close()
            buf = io.BytesIO()
            dst.save(buf)
            return buf.getvalue()
        finally:
            dst.close()
            src.close()
