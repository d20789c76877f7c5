"""Object storage for uploaded materials: a folder under ``var/`` by default, any S3-compatible
store (MinIO, a 政务云 object service) by configuration (``XQ_ONLINE_STORAGE=s3``).

The S3 client is aiobotocore (async, maintained with botocore). Timeouts are short and retries
off: an upload waiting on a dead store answers 503 in seconds instead of holding a connection,
and the mini program retries. Objects are written from a file on disk, read back whole (a
material is at most ``online_upload_max_bytes``, and the watermark needs the whole image).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any, Protocol

from services.errors import AppError, ErrorCode
from services.settings import Settings, get_settings

log = logging.getLogger(__name__)


class Storage(Protocol):
    async def put_file(self, key: str, path: Path, content_type: str) -> None: ...

    async def get(self, key: str) -> bytes: ...

    async def delete(self, key: str) -> None: ...

    async def exists(self, key: str) -> bool: ...


def _unavailable(exc: BaseException) -> AppError:
    log.warning("object storage unavailable", extra={"error": repr(exc)[:200]})
    return AppError(ErrorCode.unavailable, "文件存储暂时不可用，请稍后再试")


class LocalStorage:
    """Files under a folder: the embedded default for one machine."""

    def __init__(self, root: Path) -> None:
        self.root = root

    def _path(self, key: str) -> Path:
        # Keys are ours (uploads/<owner>/<uuid>.jpg), never user input; still refuse escapes.
        path = (self.root / key).resolve()
        if self.root.resolve() not in path.parents:
            raise ValueError(f"storage key escapes the root: {key!r}")
        return path

    async def put_file(self, key: str, path: Path, content_type: str) -> None:
        target = self._path(key)

        def copy() -> None:
            target.parent.mkdir(parents=True, exist_ok=True)
            tmp = target.with_suffix(target.suffix + ".part")
            with path.open("rb") as src, tmp.open("wb") as dst:
                while chunk := src.read(1 << 20):
                    dst.write(chunk)
            os.replace(tmp, target)  # readers never see half a file

        await asyncio.to_thread(copy)

    async def get(self, key: str) -> bytes:
        try:
            return await asyncio.to_thread(self._path(key).read_bytes)
        except FileNotFoundError as exc:
            raise AppError(ErrorCode.not_found, "文件不存在") from exc

    async def delete(self, key: str) -> None:
        with contextlib.suppress(FileNotFoundError):
            await asyncio.to_thread(self._path(key).unlink)

    async def exists(self, key: str) -> bool:
        return await asyncio.to_thread(self._path(key).is_file)


class S3Storage:
    """An S3-compatible bucket through aiobotocore."""

    def __init__(self, settings: Settings) -> None:
        from aiobotocore.config import AioConfig
        from aiobotocore.session import get_session

        self.bucket = settings.online_s3_bucket
        self._session = get_session()
        self._kwargs: dict[str, Any] = {
            "region_name": settings.online_s3_region,
            "endpoint_url": settings.online_s3_endpoint or None,
            "aws_access_key_id": settings.online_s3_access_key or None,
            "aws_secret_access_key": settings.online_s3_secret_key or None,
            "config": AioConfig(
                connect_timeout=settings.online_s3_timeout_seconds,
                read_timeout=settings.online_s3_timeout_seconds,
                retries={"max_attempts": 1, "mode": "standard"},
                # MinIO and most 政务云 stores want path-style addressing.
                s3={"addressing_style": "path"},
            ),
        }

    @contextlib.asynccontextmanager
    async def _client(self) -> AsyncIterator[Any]:
        async with self._session.create_client("s3", **self._kwargs) as client:
            yield client

    async def put_file(self, key: str, path: Path, content_type: str) -> None:
        from botocore.exceptions import BotoCoreError, ClientError

        try:
            async with self._client() as s3:
                with path.open("rb") as body:  # botocore streams the open file
                    await s3.put_object(Bucket=self.bucket, Key=key, Body=body,
                                        ContentType=content_type)
        except (BotoCoreError, ClientError, OSError) as exc:
            raise _unavailable(exc) from exc

    async def get(self, key: str) -> bytes:
        from botocore.exceptions import BotoCoreError, ClientError

        try:
            async with self._client() as s3:
                resp = await s3.get_object(Bucket=self.bucket, Key=key)
                async with resp["Body"] as stream:
                    data: bytes = await stream.read()
                    return data
        except ClientError as exc:
            if exc.response.get("Error", {}).get("Code") in ("NoSuchKey", "404"):
                raise AppError(ErrorCode.not_found, "文件不存在") from exc
            raise _unavailable(exc) from exc
        except (BotoCoreError, OSError) as exc:
            raise _unavailable(exc) from exc

    async def delete(self, key: str) -> None:
        from botocore.exceptions import BotoCoreError, ClientError

        try:
            async with self._client() as s3:
                await s3.delete_object(Bucket=self.bucket, Key=key)  # absent is fine in S3
        except (BotoCoreError, ClientError, OSError) as exc:
            raise _unavailable(exc) from exc

    async def exists(self, key: str) -> bool:
        from botocore.exceptions import BotoCoreError, ClientError

        try:
            async with self._client() as s3:
                await s3.head_object(Bucket=self.bucket, Key=key)
                return True
        except ClientError as exc:
            if exc.response.get("Error", {}).get("Code") in ("NoSuchKey", "404", "NotFound"):
                return False
            raise _unavailable(exc) from exc
        except (BotoCoreError, OSError) as exc:
            raise _unavailable(exc) from exc

    async def ensure_bucket(self) -> None:
        """For tests and first deployments; production buckets are made by the operator."""
        async with self._client() as s3:
            with contextlib.suppress(s3.exceptions.BucketAlreadyOwnedByYou):
                await s3.create_bucket(
                    Bucket=self.bucket,
                    CreateBucketConfiguration={"LocationConstraint": self._kwargs["region_name"]},
                )


_storage: Storage | None = None


def build(settings: Settings) -> Storage:
    if settings.online_storage == "s3":
        return S3Storage(settings)
    return LocalStorage(Path(settings.online_storage_dir))


def storage() -> Storage:
    global _storage
    if _storage is None:
        _storage = build(get_settings())
    return _storage


def use(s: Storage | None) -> None:
    """Swap the store (tests point it at the moto server, or reset it with None)."""
    global _storage
    _storage = s
