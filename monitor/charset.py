"""Which character encoding a fetched body is in, decided as browsers decide it.

The order is the WHATWG one (HTML "determining the character encoding", the Encoding Standard):

1. a byte-order mark (UTF-8, UTF-16 LE/BE);
2. the ``charset`` of the HTTP ``Content-Type`` header (``text/html; charset=windows-1251``);
3. for HTML, a ``<meta charset>`` or ``<meta http-equiv="Content-Type" content="...; charset=">``
   in the first 1024 bytes;
4. UTF-8.

A label names an encoding as the Encoding Standard does: ``latin1``, ``iso-8859-1``, ``ascii`` and
``us-ascii`` mean windows-1252, ``utf-16`` means UTF-16LE, ``shift_jis`` means windows-31J, ``gb2312``
means GBK, ``euc-kr`` means windows-949; an unknown label, or one that is no web encoding (``utf-7``,
``rot13``), is ignored and the next step decides. A ``<meta>`` naming UTF-16 means UTF-8 (a page whose
meta could be read as ASCII is not UTF-16). Bytes that do not decode become U+FFFD.

Everything here is pure: bytes and labels in, a codec name or text out.
"""

from __future__ import annotations

import codecs
import re
from typing import Final

__all__ = ["charset_of", "choose", "codec_for", "decode", "to_utf8"]

#: Python's codec names of the encodings of the Encoding Standard (its "legacy single-byte" and
#: "legacy multi-byte" encodings, UTF-8 and UTF-16), after the label mapping below.
_WEB_CODEC_NAMES: Final = (
    "utf-8 cp866 iso8859-2 iso8859-3 iso8859-4 iso8859-5 iso8859-6 iso8859-7 iso8859-8 "
    "iso8859-10 iso8859-13 iso8859-14 iso8859-15 iso8859-16 koi8-r koi8-u mac-roman "
    "mac-cyrillic cp874 cp1250 cp1251 cp1252 cp1253 cp1254 cp1255 cp1256 cp1257 cp1258 gbk "
    "gb18030 big5hkscs euc_jp iso2022_jp cp932 cp949 utf-16-le utf-16-be"
)
_WEB_CODECS: Final = frozenset(_WEB_CODEC_NAMES.split())
#: Where the Encoding Standard reads a label differently from Python (keys: Python's codec names,
#: or labels Python does not know).
_WHATWG: Final = {
    "ascii": "cp1252",
    "iso8859-1": "cp1252",
    "iso8859-9": "cp1254",
    "iso8859-11": "cp874",
    "tis-620": "cp874",
    "windows-874": "cp874",
    "gb2312": "gbk",
    "x-gbk": "gbk",
    "chinese": "gbk",
    "big5": "big5hkscs",
    "shift_jis": "cp932",
    "windows-31j": "cp932",
    "ms_kanji": "cp932",
    "x-sjis": "cp932",
    "euc_kr": "cp949",
    "ks_c_5601-1987": "cp949",
    "windows-949": "cp949",
    "utf-16": "utf-16-le",
    "iso-8859-8-i": "iso8859-8",
    "x-mac-cyrillic": "mac-cyrillic",
    "x-mac-ukrainian": "mac-cyrillic",
    "mac": "mac-roman",
    "x-mac-roman": "mac-roman",
    "unicode-1-1-utf-8": "utf-8",
    "x-unicode20utf8": "utf-8",
    "x-cp1250": "cp1250",
    "x-cp1251": "cp1251",
    "x-cp1252": "cp1252",
    "x-cp1253": "cp1253",
    "x-cp1254": "cp1254",
    "x-cp1255": "cp1255",
    "x-cp1256": "cp1256",
    "x-cp1257": "cp1257",
    "x-cp1258": "cp1258",
    "koi8-ru": "koi8-u",
    "koi": "koi8-r",
    "koi8": "koi8-r",
}
_BOMS: Final = (
    (codecs.BOM_UTF8, "utf-8"),
    (codecs.BOM_UTF16_LE, "utf-16-le"),
    (codecs.BOM_UTF16_BE, "utf-16-be"),
)
_LABEL_CHARS: Final = re.compile(r"[A-Za-z0-9._:-]{1,40}")
_HEADER_CHARSET: Final = re.compile(r"""charset\s*=\s*["']?\s*([^"';,\s]{1,40})""", re.IGNORECASE)
_META_CHARSET: Final = re.compile(
    rb"""<meta[^>]{0,512}?charset\s*=\s*["']?\s*([A-Za-z0-9._:-]{1,40})""", re.IGNORECASE
)
#: How far into an HTML page a ``<meta charset>`` counts (the Standard's prescan).
META_WINDOW: Final = 1024


def charset_of(content_type: str | None) -> str | None:
    """The ``charset`` parameter of a ``Content-Type`` header value, or None."""
    if not content_type:
        return None
    match = _HEADER_CHARSET.search(content_type)
    return None if match is None else match.group(1)


def codec_for(label: str | None) -> str | None:
    """The Python codec that an encoding label means on the web; None if it names none."""
    if not label:
        return None
    label = label.strip().lower()
    if _LABEL_CHARS.fullmatch(label) is None:
        return None
    if label in _WHATWG:
        return _WHATWG[label]
    try:
        name = codecs.lookup(label).name
    except LookupError:
        return None
    name = _WHATWG.get(name, name)
    return name if name in _WEB_CODECS else None


def _bom(raw: bytes) -> tuple[str, int] | None:
    for bom, codec in _BOMS:
        if raw.startswith(bom):
            return codec, len(bom)
    return None


def _meta(raw: bytes) -> str | None:
    match = _META_CHARSET.search(raw, 0, META_WINDOW)
    if match is None:
        return None
    codec = codec_for(match.group(1).decode("ascii"))
    # a page whose <meta> could be read as ASCII is not UTF-16 (the Standard agrees)
    return "utf-8" if codec is not None and codec.startswith("utf-16") else codec


def choose(raw: bytes, charset: str | None = None, *, html: bool = True) -> tuple[str, int]:
    """The codec of ``raw`` and the length of its byte-order mark (0 without one).

    ``charset`` is the HTTP header's label; ``html`` lets a ``<meta>`` decide after it.
    """
    bom = _bom(raw)
    if bom is not None:
        return bom
    codec = codec_for(charset)
    if codec is None and html:
        codec = _meta(raw)
    return codec or "utf-8", 0


def decode(raw: bytes, charset: str | None = None, *, html: bool = True) -> str:
    """``raw`` as text, its encoding chosen in the browsers' order (see the module)."""
    codec, skip = choose(raw, charset, html=html)
    return raw[skip:].decode(codec, "replace")


def to_utf8(raw: bytes, charset: str | None = None, *, html: bool = True) -> bytes:
    """``raw`` re-encoded as UTF-8 (unchanged when it already claims to be UTF-8).

    Bytes that are not valid UTF-8 in a page that is UTF-8 are left for the decoder at hand
    (Python's or Lexbor's), which turns them into U+FFFD.
    """
    codec, skip = choose(raw, charset, html=html)
    if codec == "utf-8":
        return raw[skip:] if skip else raw
    return raw[skip:].decode(codec, "replace").encode("utf-8", "replace")
