"""The cluster blob store: one bucket of an S3-compatible service (SeaweedFS, MinIO, AWS S3).

boto3 is blocking, so every call runs in a worker thread. Uploads are S3 POST policies: the
store itself refuses a body outside content-length-range [1, max_size] or with another
Content-Type, and an expired policy. Downloads are presigned GETs that override the response's
Content-Type and Content-Disposition. Timeouts are short and retries few, so a down S3 turns
into BlobUnavailableError within seconds instead of hanging a gRPC call.
"""

from __future__ import annotations

import asyncio
import math
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any, TypeVar

import boto3
from botocore.config import Config
from botocore.exceptions import BotoCoreError, ClientError

from chatmesh_common.clock import Clock, SystemClock
from media_service.blobs.base import BlobInfo, BlobUnavailableError, PresignedUpload
from media_service.blobs.keys import validate_key
from media_service.blobs.signing import attachment_disposition

if TYPE_CHECKING:
    from mypy_boto3_s3.client import S3Client

T = TypeVar("T")

_DELETE_BATCH = 1000  # the most keys one DeleteObjects request takes


def _status(e: ClientError) -> int:
    status: int = e.response.get("ResponseMetadata", {}).get("HTTPStatusCode", 0)
    return status


def _code(e: ClientError) -> str:
    return str(e.response.get("Error", {}).get("Code", ""))


class S3BlobStore:
    """BlobStore on bucket `bucket` at `endpoint_url`, with path-style addressing and SigV4.

    S3BlobStore("http://seaweedfs:8333", "us-east-1", "chatmesh-media", key_id, secret)
    """

    def __init__(
        self,
        endpoint_url: str,
        region: str,
        bucket: str,
        access_key_id: str,
        secret_access_key: str,
        *,
        clock: Clock | None = None,
        connect_timeout: float = 2.0,
        read_timeout: float = 10.0,
        max_attempts: int = 2,
    ) -> None:
        self.endpoint_url = endpoint_url
        self.region = region
        self.bucket = bucket
        self._access_key_id = access_key_id
        self._secret_access_key = secret_access_key
        self.clock = clock or SystemClock()
        self._config = Config(
            signature_version="s3v4",
            s3={"addressing_style": "path"},
            connect_timeout=connect_timeout,
            read_timeout=read_timeout,
            retries={"max_attempts": max_attempts, "mode": "standard"},
            # Checksums only where S3 requires them (DeleteObjects): not every S3-compatible
            # server knows the newer flexible-checksum headers.
            request_checksum_calculation="when_required",
            response_checksum_validation="when_required",
        )
        self._client: S3Client | None = None

    @property
    def client(self) -> S3Client:
        if self._client is None:
            raise RuntimeError("S3BlobStore used before open()")
        return self._client

    async def open(self) -> None:
        def _connect() -> S3Client:
            client: S3Client = boto3.session.Session().client(
                "s3",
                endpoint_url=self.endpoint_url,
                region_name=self.region,
                aws_access_key_id=self._access_key_id,
                aws_secret_access_key=self._secret_access_key,
                config=self._config,
            )
            return client

        self._client = await asyncio.to_thread(_connect)
        try:
            await self._call(self.client.head_bucket, Bucket=self.bucket)
        except ClientError as e:
            if _status(e) != 404:
                raise
            await self._create_bucket()

    async def _create_bucket(self) -> None:
        kwargs: dict[str, Any] = {"Bucket": self.bucket}
        if self.region != "us-east-1":  # the one region S3 refuses a LocationConstraint for
            kwargs["CreateBucketConfiguration"] = {"LocationConstraint": self.region}
        try:
            await self._call(self.client.create_bucket, **kwargs)
        except ClientError as e:
            if _code(e) not in ("BucketAlreadyOwnedByYou", "BucketAlreadyExists"):
                raise

    async def close(self) -> None:
        client, self._client = self._client, None
        if client is not None:
            await asyncio.to_thread(client.close)

    async def _call(self, fn: Callable[..., T], /, **kwargs: Any) -> T:
        """`fn(**kwargs)` in a thread; unreachable S3 and 5xx answers → BlobUnavailableError."""
        try:
            return await asyncio.to_thread(fn, **kwargs)
        except ClientError as e:
            if _status(e) >= 500:
                raise BlobUnavailableError(f"S3 {self.endpoint_url}: {e}") from e
            raise
        except BotoCoreError as e:  # connection refused, timeouts, closed connections
            raise BlobUnavailableError(f"S3 {self.endpoint_url} unreachable: {e}") from e

    async def presign_upload(
        self, key: str, *, max_size: int, content_type: str, expires_s: float
    ) -> PresignedUpload:
        validate_key(key)
        if max_size < 1:
            raise ValueError("max_size must be at least 1")
        expires_in = max(1, math.ceil(expires_s))
        expires_at_ms = int((self.clock.now() + expires_in) * 1000)
        post = await asyncio.to_thread(
            self.client.generate_presigned_post,
            self.bucket,
            key,
            Fields={"Content-Type": content_type},
            Conditions=[
                ["content-length-range", 1, max_size],
                {"Content-Type": content_type},
            ],
            ExpiresIn=expires_in,
        )
        return PresignedUpload(
            method="POST",
            url=post["url"],
            expires_at_ms=expires_at_ms,
            fields={str(k): str(v) for k, v in post["fields"].items()},
        )

    async def presign_download(
        self, key: str, *, expires_s: float, content_type: str, file_name: str
    ) -> str:
        validate_key(key)
        url: str = await asyncio.to_thread(
            self.client.generate_presigned_url,
            "get_object",
            Params={
                "Bucket": self.bucket,
                "Key": key,
                "ResponseContentType": content_type,
                "ResponseContentDisposition": attachment_disposition(file_name),
            },
            ExpiresIn=max(1, math.ceil(expires_s)),
        )
        return url

    async def stat(self, key: str) -> BlobInfo | None:
        validate_key(key)
        try:
            head = await self._call(self.client.head_object, Bucket=self.bucket, Key=key)
        except ClientError as e:
            if _status(e) == 404:
                return None
            raise
        return BlobInfo(size=head["ContentLength"])

    async def read(self, key: str, *, limit: int) -> bytes:
        validate_key(key)
        if limit <= 0:
            if await self.stat(key) is None:
                raise KeyError(key)
            return b""
        try:
            got = await self._call(
                self.client.get_object, Bucket=self.bucket, Key=key, Range=f"bytes=0-{limit - 1}"
            )
        except ClientError as e:
            if _status(e) == 404:
                raise KeyError(key) from None
            if _status(e) == 416:  # an empty object has no byte 0
                return b""
            raise
        body = got["Body"]
        try:
            data: bytes = await self._call(body.read)
        finally:
            body.close()
        return data[:limit]  # a server that ignores Range sends it all

    async def write(self, key: str, data: bytes, *, content_type: str) -> None:
        validate_key(key)
        await self._call(
            self.client.put_object,
            Bucket=self.bucket,
            Key=key,
            Body=data,
            ContentType=content_type,
        )

    async def delete(self, keys: Sequence[str]) -> None:
        for key in keys:
            validate_key(key)
        for start in range(0, len(keys), _DELETE_BATCH):
            batch = keys[start : start + _DELETE_BATCH]
            result = await self._call(
                self.client.delete_objects,
                Bucket=self.bucket,
                Delete={"Objects": [{"Key": key} for key in batch], "Quiet": True},
            )
            errors = [e for e in result.get("Errors", []) if e.get("Code") != "NoSuchKey"]
            if errors:
                first = errors[0]
                raise BlobUnavailableError(
                    f"S3 could not delete {len(errors)} of {len(batch)} keys, first "
                    f"{first.get('Key')}: {first.get('Code')} {first.get('Message')}"
                )

    async def list_keys(self, prefix: str, *, limit: int = 1000) -> list[str]:
        keys: list[str] = []
        token: str | None = None
        while len(keys) < limit:
            kwargs: dict[str, Any] = {
                "Bucket": self.bucket,
                "Prefix": prefix,
                "MaxKeys": min(limit - len(keys), 1000),
            }
            if token:
                kwargs["ContinuationToken"] = token
            page = await self._call(self.client.list_objects_v2, **kwargs)
            keys.extend(obj["Key"] for obj in page.get("Contents", []) if "Key" in obj)
            token = page.get("NextContinuationToken")
            if not page.get("IsTruncated") or not token:
                break
        return sorted(keys)[:limit]
