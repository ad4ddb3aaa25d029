"""What an attachment says about itself over HTTP: its declared MIME type and how a browser
must treat it when downloaded (never as a page of our origin)."""

from __future__ import annotations

import re
from urllib.parse import quote

from parley.errors import BadRequest

# RFC 6838 names, without parameters: nothing that could split a header or a signed string.
_MIME_RE = re.compile(r"^[a-z0-9][a-z0-9!#$&^_.+-]{0,63}/[a-z0-9][a-z0-9!#$&^_.+-]{0,126}$")
_CONTROL_RE = re.compile(r"[\x00-\x1f\x7f]")

#: Headers of every download: no sniffing a type other than the declared one, no script.
SAFE_DOWNLOAD_HEADERS = {"X-Content-Type-Options": "nosniff", "Content-Security-Policy": "sandbox; default-src 'none'"}


def normalize_mime(raw: str) -> str:
    mime = raw.strip().lower()
    if not _MIME_RE.match(mime):
        raise BadRequest("mime must be a type/subtype such as image/png, without parameters")
    return mime


def check_file_name(name: str) -> str:
    if not name.strip() or _CONTROL_RE.search(name) or "/" in name or "\\" in name:
        raise BadRequest("name must be a file name: not empty, no path separators or control characters")
    return name


def content_disposition(name: str) -> str:
    """Always `attachment`: the bytes are a member's upload, not content of ours to render."""
    return f"attachment; filename*=UTF-8''{quote(name, safe='')}"
