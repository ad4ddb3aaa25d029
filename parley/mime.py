"""What an attachment says about itself over HTTP: its declared MIME type and how a browser
must treat it when downloaded (never as a page of our origin)."""

from __future__ import annotations

import re
import unicodedata
from urllib.parse import quote

from parley.errors import BadRequest

# RFC 6838 names, without parameters: nothing that could split a header or a signed string.
_MIME_RE = re.compile(r"^[a-z0-9][a-z0-9!#$&^_.+-]{0,63}/[a-z0-9][a-z0-9!#$&^_.+-]{0,126}$")
#: C0 and C1 control characters, and DEL.
_CONTROL_RE = re.compile(r"[\x00-\x1f\x7f-\x9f]")
#: Invisible format characters (Unicode category Cf) that a name keeps: the zero-width joiner
#: and non-joiner shape emoji sequences and several scripts. The rest of Cf goes.
_KEPT_FORMAT = frozenset("\u200c\u200d")

#: Headers of every download: no sniffing a type other than the declared one, no script.
SAFE_DOWNLOAD_HEADERS = {"X-Content-Type-Options": "nosniff", "Content-Security-Policy": "sandbox; default-src 'none'"}


def normalize_mime(raw: str) -> str:
    mime = raw.strip().lower()
    if not _MIME_RE.match(mime):
        raise BadRequest("mime must be a type/subtype such as image/png, without parameters")
    return mime


def sanitize_file_name(name: str) -> str:
    """The file name to keep. Invisible format characters are removed: a right-to-left override
    makes `invoice\u202efdp.exe` display as `invoiceexe.pdf`, and other bidi controls, zero-width
    spaces or tag characters hide what a name says. What a file name cannot carry (a path
    separator, a control character) is refused, as is a name with nothing visible left or only
    dots."""
    cleaned = "".join(c for c in name if c in _KEPT_FORMAT or unicodedata.category(c) != "Cf").strip()
    if not cleaned or _CONTROL_RE.search(cleaned) or "/" in cleaned or "\\" in cleaned or not cleaned.strip("."):
        raise BadRequest("name must be a file name: something visible, no path separators or control characters")
    return cleaned


def content_disposition(name: str) -> str:
    """Always `attachment`: the bytes are a member's upload, not content of ours to render."""
    return f"attachment; filename*=UTF-8''{quote(name, safe='')}"
