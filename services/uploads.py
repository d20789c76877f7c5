"""Receiving a material the way the mini program sends it (``wx.uploadFile``: multipart/form-data,
the file in the part named ``file``), streamed: chunks go to a temporary file as they arrive, so
a 20 MB photo never sits whole in memory (``bench/upload_bench.py`` measures it).

What is accepted is decided by the bytes, not the name or the declared type: JPEG, PNG, HEIC
(iPhone photos) and PDF. Images are decoded and re-encoded as JPEG in a worker thread — which
drops EXIF (GPS position, device, time) and anything smuggled after the image data — turned the
right way up first (the EXIF orientation would otherwise be lost with the EXIF), and get a
thumbnail. Every file passes the virus-scan hook before it is stored.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
import struct
import tempfile
import uuid
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pillow_heif
from PIL import Image, ImageOps, UnidentifiedImageError
from python_multipart.exceptions import MultipartParseError
from python_multipart.multipart import MultipartParser, parse_options_header

from models.online import Upload
from services import ratelimit, renditions, storage
from services.errors import AppError, ErrorCode
from services.settings import get_settings

log = logging.getLogger(__name__)

pillow_heif.register_heif_opener()

JPEG, PNG, HEIC, PDF = "image/jpeg", "image/png", "image/heic", "application/pdf"
_HEIF_BRANDS = {b"heic", b"heix", b"hevc", b"hevx", b"heim", b"heis", b"mif1", b"msf1"}
# A decoded image this large is a decompression bomb, not a photo of an ID card.
MAX_PIXELS = 60_000_000
# Multipart headers and boundaries on top of the file itself.
_ENVELOPE_SLACK = 64 * 1024


def sniff(head: bytes) -> str | None:
    """The type the first bytes say, among the four we take."""
    if head.startswith(b"\xff\xd8\xff"):
        return JPEG
    if head.startswith(b"\x89PNG\r\n\x1a\n"):
        return PNG
    if head[4:8] == b"ftyp" and head[8:12] in _HEIF_BRANDS:
        return HEIC
    if head.startswith(b"%PDF-"):
        return PDF
    return None


def _refused(message: str | None = None) -> AppError:
    return AppError(ErrorCode.upload_type_refused, message, fields={"file": message or
                    ErrorCode.upload_type_refused.default_message})


def _too_large() -> AppError:
    mb = get_settings().online_upload_max_bytes // (1024 * 1024)
    return AppError(ErrorCode.upload_too_large, f"文件不能超过 {mb} MB",
                    fields={"file": f"不能超过 {mb} MB"})


# --- the multipart stream ----------------------------------------------------------------------


@dataclass
class _Received:
    path: Path
    size: int = 0
    sha256: Any = field(default_factory=hashlib.sha256)
    head: bytes = b""
    kind: str | None = None
    filename: str = ""
    seen_file: bool = False


class _FilePart:
    """python-multipart callbacks writing the ``file`` part to disk as it streams past."""

    def __init__(self, received: _Received, out: Any, limit: int) -> None:
        self.r = received
        self.out = out
        self.limit = limit
        self._header_field = b""
        self._header_value = b""
        self._headers: dict[bytes, bytes] = {}
        self._in_file = False
        self.error: AppError | None = None

    def callbacks(self) -> dict[str, Callable[..., None]]:
        return {
            "on_part_begin": self._part_begin,
            "on_header_field": self._header_field_cb,
            "on_header_value": self._header_value_cb,
            "on_header_end": self._header_end,
            "on_headers_finished": self._headers_finished,
            "on_part_data": self._part_data,
            "on_part_end": self._part_end,
        }

    def _part_begin(self) -> None:
        self._headers = {}
        self._in_file = False

    def _header_field_cb(self, data: bytes, start: int, end: int) -> None:
        self._header_field += data[start:end]

    def _header_value_cb(self, data: bytes, start: int, end: int) -> None:
        self._header_value += data[start:end]

    def _header_end(self) -> None:
        self._headers[self._header_field.lower()] = self._header_value
        self._header_field = self._header_value = b""

    def _headers_finished(self) -> None:
        _, params = parse_options_header(self._headers.get(b"content-disposition", b""))
        if params.get(b"name") == b"file" and not self.r.seen_file:
            self._in_file = True
            self.r.seen_file = True
            self.r.filename = params.get(b"filename", b"").decode("utf-8", "replace")[:128]

    def _part_data(self, data: bytes, start: int, end: int) -> None:
        if not self._in_file or self.error:
            return
        chunk = data[start:end]
        self.r.size += len(chunk)
        if self.r.size > self.limit:
            self.error = _too_large()
            return
        if self.r.kind is None:
            self.r.head = (self.r.head + chunk)[:16]
            if len(self.r.head) >= 12 or self.r.size >= 12:
                self.r.kind = sniff(self.r.head)
                if self.r.kind is None:
                    self.error = _refused()
                    return
        self.r.sha256.update(chunk)
        self.out.write(chunk)

    def _part_end(self) -> None:
        self._in_file = False


def boundary_of(content_type: str) -> bytes:
    ctype, params = parse_options_header(content_type)
    boundary = params.get(b"boundary")
    if ctype != b"multipart/form-data" or not boundary:
        raise AppError(ErrorCode.unsupported_media_type,
                       "请以 multipart/form-data 上传文件（wx.uploadFile）")
    return boundary


def _open_temp(tmp_dir: Path) -> Any:
    tmp_dir.mkdir(parents=True, exist_ok=True)
    return tempfile.NamedTemporaryFile(prefix="upload-", dir=tmp_dir, delete=False)


async def _receive(chunks: AsyncIterator[bytes], content_type: str, tmp_dir: Path) -> _Received:
    limit = get_settings().online_upload_max_bytes
    boundary = boundary_of(content_type)
    out = await asyncio.to_thread(_open_temp, tmp_dir)
    received = _Received(path=Path(out.name))
    try:
        part = _FilePart(received, out, limit)
        parser = MultipartParser(boundary, part.callbacks())  # type: ignore[arg-type]
        async for chunk in chunks:
            # Parsing and the disk write happen in a worker thread, chunk by chunk.
            try:
                await asyncio.to_thread(parser.write, chunk)
            except MultipartParseError as exc:
                raise AppError(ErrorCode.bad_request, "上传内容格式不正确") from exc
            if part.error:
                raise part.error
        parser.finalize()
        await asyncio.to_thread(out.close)
        if not received.seen_file or received.size == 0:
            raise AppError(ErrorCode.validation_failed, "请选择要上传的文件",
                           fields={"file": "必填"})
        if received.kind is None:
            received.kind = sniff(received.head)
            if received.kind is None:
                raise _refused()
    except BaseException:
        await asyncio.to_thread(out.close)
        with contextlib.suppress(FileNotFoundError):
            received.path.unlink()  # a refused upload leaves nothing behind
        raise
    return received


# --- processing (in a worker thread) ---------------------------------------------------------


@dataclass(frozen=True)
class Processed:
    path: Path
    content_type: str
    thumb: Path | None


def _reencode(src: Path, kind: str) -> Processed:
    """Decode and re-encode as a fresh JPEG without EXIF, plus a thumbnail. Runs off the loop."""
    settings = get_settings()
    if kind == PDF:
        # Opened by PDFium, the engine that renders the staff copy: a truncated, broken or
        # password-protected PDF is refused now, not discovered by the reviewer.
        try:
            pages = renditions.pdf_page_count(src)
        except renditions.BadPdf as exc:
            raise _refused("PDF 文件已损坏或设有密码") from exc
        if not 1 <= pages <= settings.online_pdf_max_pages:
            raise _refused(f"PDF 不能超过 {settings.online_pdf_max_pages} 页")
        return Processed(src, PDF, None)
    side = settings.online_image_max_side
    img: Image.Image
    try:
        img = Image.open(src)
        if img.width * img.height > MAX_PIXELS:
            raise _refused("图片分辨率过大")
        # JPEG only: let the decoder scale down by 1/2–1/8 while decoding, so a 48-megapixel
        # photo never exists in memory at full size (bench/upload_bench.py).
        img.draft("RGB", (side, side))
        img.load()
        ImageOps.exif_transpose(img, in_place=True)  # keep it upright once the EXIF is gone
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError,
            Image.DecompressionBombError) as exc:
        raise _refused("图片已损坏或格式与内容不符") from exc
    if img.mode in ("RGBA", "LA", "PA") or (img.mode == "P" and "transparency" in img.info):
        rgba = img.convert("RGBA")
        img = Image.new("RGB", rgba.size, "white")
        img.paste(rgba, mask=rgba.getchannel("A"))
    elif img.mode != "RGB":
        img = img.convert("RGB")
    img.thumbnail((side, side))
    out = src.with_suffix(".jpg")
    # No exif= / icc_profile= argument: Pillow writes neither, so GPS and device data are gone.
    img.save(out, "JPEG", quality=85)
    thumb = src.with_suffix(".thumb.jpg")
    small = img.copy()
    small.thumbnail((settings.online_thumb_side, settings.online_thumb_side))
    small.save(thumb, "JPEG", quality=80)
    return Processed(out, JPEG, thumb)


# --- virus scanning --------------------------------------------------------------------------


async def scan(path: Path) -> None:
    """The virus-scan hook: ``XQ_ONLINE_VIRUS_SCAN=clamd`` streams the file to clamd
    (``INSTREAM``); ``none`` (the development default) accepts everything. A scanner that is
    down is a 503: an unscanned file is never stored while scanning is on."""
    settings = get_settings()
    if settings.online_virus_scan == "none":
        return
    host, _, port = settings.online_clamd_address.rpartition(":")
    try:
        verdict = await asyncio.wait_for(_clamd_instream(host, int(port), path), timeout=30)
    except (OSError, TimeoutError, ValueError) as exc:
        log.warning("virus scanner unavailable", extra={"error": repr(exc)[:200]})
        raise AppError(ErrorCode.unavailable, "病毒查杀服务暂时不可用，请稍后再试") from exc
    if not verdict.endswith(b"OK"):
        log.warning("upload refused by virus scan", extra={"verdict": verdict[:200].decode()})
        raise AppError(ErrorCode.upload_infected, fields={"file": "文件未通过病毒查杀"})


async def _clamd_instream(host: str, port: int, path: Path) -> bytes:
    reader, writer = await asyncio.open_connection(host, port)
    try:
        writer.write(b"zINSTREAM\0")
        with path.open("rb") as f:
            while chunk := await asyncio.to_thread(f.read, 64 * 1024):
                writer.write(struct.pack("!L", len(chunk)) + chunk)
                await writer.drain()
        writer.write(struct.pack("!L", 0))
        await writer.drain()
        return (await reader.readuntil(b"\0")).rstrip(b"\0").strip()
    finally:
        writer.close()
        with contextlib.suppress(OSError):
            await writer.wait_closed()


# --- the whole path --------------------------------------------------------------------------


async def receive_upload(
    *, owner_id: int, content_type: str, content_length: int | None,
    chunks: AsyncIterator[bytes],
) -> Upload:
    settings = get_settings()
    if content_length is not None and content_length > settings.online_upload_max_bytes + \
            _ENVELOPE_SLACK:
        raise _too_large()  # refused before a byte is read
    # Storage is not free: a runaway client (or a loop in one) is stopped per account.
    await ratelimit.hit(f"online:upload:{owner_id}", limit=settings.online_upload_rate_limit,
                        window_seconds=3600, message="上传过于频繁，请稍后再试")
    tmp_dir = Path(settings.online_upload_tmp_dir)
    received: _Received | None = None
    processed: Processed | None = None
    try:
        received = await _receive(chunks, content_type, tmp_dir)
        kind = received.kind
        assert kind is not None
        await scan(received.path)
        processed = await asyncio.to_thread(_reencode, received.path, kind)
        ext = "pdf" if processed.content_type == PDF else "jpg"
        stem = f"uploads/{owner_id}/{uuid.uuid4().hex}"
        key = f"{stem}.{ext}"
        thumb_key = f"{stem}.thumb.jpg" if processed.thumb else None
        store = storage.storage()
        await store.put_file(key, processed.path, processed.content_type)
        if processed.thumb and thumb_key:
            await store.put_file(thumb_key, processed.thumb, JPEG)
        size = processed.path.stat().st_size
        return await Upload.create(
            owner_id=owner_id, storage_key=key, thumb_key=thumb_key,
            content_type=processed.content_type, size=size,
            sha256=received.sha256.hexdigest(), original_name=received.filename,
        )
    finally:
        for p in _temp_paths(received, processed):
            with contextlib.suppress(FileNotFoundError):
                p.unlink()


def _temp_paths(received: _Received | None, processed: Processed | None) -> list[Path]:
    out = []
    if received is not None:
        out.append(received.path)
    if processed is not None:
        out.append(processed.path)
        if processed.thumb is not None:
            out.append(processed.thumb)
    return out
