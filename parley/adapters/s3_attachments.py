"""Attachments on S3 or an S3-compatible server (MinIO, SeaweedFS, Ceph), through boto3
presigned URLs: clients PUT and GET the bytes there, never through Parley.

The upload URL signs the Content-Type and Content-Length (SigV4 signed headers), so the
object stored is the one declared, and `If-None-Match: *`, so it is stored once: S3 refuses a
second PUT to an existing key (412), and the URL cannot replace bytes members were sent. That
needs conditional writes (AWS S3 since 2024, MinIO, SeaweedFS); a server without them ignores
the header, and an upload URL could then replace the object until it expires. URLs are signed for the endpoint clients use, which may not
be the one the pods use (`S3Settings.public_endpoint`); SigV4 signs the host, so a proxy in front
of the public one must pass the Host header through unchanged. Presigning is local CPU work,
but boto3 may refresh credentials over the network first (a pod's web-identity role): every
call runs in a thread.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Mapping
from typing import Any, TypeVar

import boto3
from botocore.config import Config
from botocore.exceptions import BotoCoreError, ClientError

from parley.config import S3Settings
from parley.errors import Unavailable
from parley.mime import content_disposition
from parley.ports import Presigned

_MISSING = frozenset({"404", "NoSuchKey", "NotFound"})
T = TypeVar("T")


class S3Attachments:
    """Implements parley.ports.Attachments on one bucket; object keys are attachment ids."""

    def __init__(self, client: Any, bucket: str, signer: Any | None = None) -> None:
        """`client` talks to the bucket; `signer` (default: `client`) presigns clients' URLs."""
        self._client = client
        self._signer = signer if signer is not None else client
        self._bucket = bucket

    @classmethod
    def from_settings(cls, s3: S3Settings) -> S3Attachments:
        def client(endpoint: str | None) -> Any:
            # S3-compatible servers on a plain host:port have no per-bucket host names.
            addressing = {"addressing_style": "path"} if endpoint else {}
            return boto3.client("s3", endpoint_url=endpoint, region_name=s3.region,
                                config=Config(signature_version="s3v4", s3=addressing))
        signer = client(s3.public_endpoint) if s3.public_endpoint else None
        return cls(client(s3.endpoint), s3.bucket, signer)

    async def presign_put(self, key: str, mime: str, size: int, expires_s: int) -> Presigned:
        params = {"Bucket": self._bucket, "Key": key, "ContentType": mime, "ContentLength": size, "IfNoneMatch": "*"}
        return Presigned(url=await self._presign("put_object", params, expires_s), method="PUT",
                         headers={"Content-Type": mime, "Content-Length": str(size), "If-None-Match": "*"},
                         expires_at=int(time.time()) + expires_s)

    async def presign_get(self, key: str, name: str, mime: str, expires_s: int) -> Presigned:
        # The response headers are part of the signed URL: the bucket serves the declared type,
        # as a download, whatever the object's metadata says.
        params = {"Bucket": self._bucket, "Key": key, "ResponseContentType": mime,
                  "ResponseContentDisposition": content_disposition(name)}
        return Presigned(url=await self._presign("get_object", params, expires_s), method="GET",
                         headers={}, expires_at=int(time.time()) + expires_s)

    async def size(self, key: str) -> int | None:
        head = await self._object_call(lambda: self._client.head_object(Bucket=self._bucket, Key=key))
        return None if head is None else int(head["ContentLength"])

    async def read(self, key: str) -> bytes | None:
        return await self._object_call(
            lambda: bytes(self._client.get_object(Bucket=self._bucket, Key=key)["Body"].read()))

    async def put(self, key: str, data: bytes, mime: str) -> None:
        await self._object_call(
            lambda: self._client.put_object(Bucket=self._bucket, Key=key, Body=data, ContentType=mime))

    async def _object_call(self, call: Callable[[], T]) -> T | None:
        """`call` on the bucket, in a thread: None when the object is missing; a failure of the
        storage is Unavailable."""
        try:
            return await asyncio.to_thread(call)
        except ClientError as exc:
            if exc.response.get("Error", {}).get("Code") in _MISSING:
                return None
            raise Unavailable(f"attachment storage failed: {exc}", retry_after_ms=1000) from exc
        except BotoCoreError as exc:
            raise Unavailable(f"attachment storage unreachable: {exc}", retry_after_ms=1000) from exc

    async def _presign(self, method: str, params: Mapping[str, object], expires_s: int) -> str:
        try:
            url = await asyncio.to_thread(self._signer.generate_presigned_url, method, Params=params,
                                          ExpiresIn=expires_s)
        except BotoCoreError as exc:  # no credentials, or a failed refresh
            raise Unavailable(f"cannot sign attachment URLs: {exc}", retry_after_ms=1000) from exc
        return str(url)

