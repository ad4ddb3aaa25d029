"""The local object store over HTTP, mounted on the gateway: PUT and GET at the signed URLs
that parley/adapters/local_attachments.py issues. A bad or expired URL is `403` with the usual JSON
error body; downloads are served as attachments that cannot run script on our origin."""

from __future__ import annotations

from aiohttp import web

from parley.adapters.local_attachments import URL_PREFIX, LocalAttachments
from parley.errors import NotFound
from parley.mime import SAFE_DOWNLOAD_HEADERS

_CHUNK = 64 * 1024


class BlobRoutes:
    def __init__(self, blobs: LocalAttachments) -> None:
        self._blobs = blobs

    async def put(self, request: web.Request) -> web.Response:
        key = request.match_info["key"]
        # Without a Content-Length (chunked) the signature cannot match: -1 was never signed.
        size = request.content_length if request.content_length is not None else -1
        self._blobs.check("PUT", key, request.query, request.headers.get("Content-Type", ""), size)
        await self._blobs.write(key, request.content.iter_chunked(_CHUNK), size)
        return web.Response(status=200)

    async def get(self, request: web.Request) -> web.FileResponse:
        key, query = request.match_info["key"], request.query
        mime, disposition = query.get("type", ""), query.get("disposition", "")
        self._blobs.check("GET", key, query, mime, disposition)
        path = self._blobs.path(key)
        if not path.is_file():
            raise NotFound("nothing was uploaded to this URL")
        return web.FileResponse(path, headers={"Content-Type": mime, "Content-Disposition": disposition,
                                               **SAFE_DOWNLOAD_HEADERS})

    def mount(self, app: web.Application) -> None:
        app.router.add_put(URL_PREFIX + "{key}", self.put)
        app.router.add_get(URL_PREFIX + "{key}", self.get)
