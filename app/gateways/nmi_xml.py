"""Streaming, hostile-input-safe parsing of NMI Query API (``query.php``) XML.

The document is fed to lxml's pull parser chunk by chunk as it arrives (events only for ``<transaction>``
and ``<error_response>``, so the per-element work stays in C); each ``<transaction>`` is turned into a plain
record and removed from the tree as soon as it ends, so memory stays flat however many records a page holds.
The parser itself never loads a DTD, never resolves entities and never touches the network.

Before bytes reach the parser, :class:`XmlGuard` refuses what a Query API response never contains and an
attacker would use: a DOCTYPE (so no entity declarations, hence no entity expansion and no external
entities), non-UTF-8 encodings, and over-long markup. Over-long *text* nodes are cut to ``max_text`` bytes
instead of refused, so one merchant's 10 MB order description cannot make every later fetch fail; a control
character XML cannot carry becomes U+FFFD, so one merchant's stray ESC cannot either.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any

from lxml import etree  # type: ignore[import-untyped]

DEFAULT_MAX_TEXT = 64 * 1024
DEFAULT_MAX_RECORD_BYTES = 8 * 1024 * 1024

_FORBIDDEN = re.compile(rb"<!(?:DOCTYPE|ENTITY)", re.IGNORECASE)
_RECORD_END = b"</transaction>"
_CARRY = 16  # bytes held back between chunks, so no marker or cut point is split across chunk boundaries
_ENCODING_RE = re.compile(rb"""^\s*<\?xml[^>]*\bencoding\s*=\s*["']([A-Za-z0-9._-]+)["']""")
_ALLOWED_ENCODINGS = {"utf-8", "utf8", "us-ascii", "ascii"}
#: what XML 1.0 cannot carry, raw or as a character reference: the C0 controls but tab, line feed and carriage
#: return. One in a merchant's field would make the whole page unparseable (and every later fetch of it fail), so
#: it becomes U+FFFD, the replacement character: the field arrives with a visible mark where the character was, and
#: the page and the records around it arrive at all. A UTF-8
#: multi-byte sequence never holds these bytes, so the replacement is exact at the byte level.
_ILLEGAL_CHARS = re.compile(
    rb"[\x00-\x08\x0b\x0c\x0e-\x1f]|&#(?:[xX]0*(?:[0-8bBcCeEfF]|1[0-9a-fA-F])|0*(?:[0-8]|1[124-9]|2[0-9]|3[01]));"
)


class NmiXmlError(Exception):
    """Base for everything wrong with a Query API document."""

    retryable = False


class HostileXmlError(NmiXmlError):
    """The document uses XML features a Query API response never uses (DTD, entities, odd encodings)."""


class TruncatedXmlError(NmiXmlError):
    """The document ended before its root element closed (a cut connection, a proxy limit)."""

    retryable = True


class MalformedXmlError(NmiXmlError):
    """The document is not well-formed XML, or not an ``nm_response``."""

    retryable = True


@dataclass
class NmiErrorResponse(Exception):
    """``<nm_response><error_response>text</error_response></nm_response>`` (sent with HTTP 200)."""

    text: str

    def __str__(self) -> str:
        return self.text


@dataclass
class NmiRecord:
    """One ``<transaction>``: its scalar children and its repeated ``<product>`` / ``<action>`` siblings."""

    fields: dict[str, str] = field(default_factory=dict)
    products: list[dict[str, str]] = field(default_factory=list)
    actions: list[dict[str, str]] = field(default_factory=list)

    def get(self, name: str) -> str | None:
        """A field's text, stripped; None when absent or empty."""
        value = self.fields.get(name)
        if value is None:
            return None
        value = value.strip()
        return value or None

    def as_dict(self) -> dict[str, Any]:
        """The record as one dict (scalar fields plus ``product`` / ``action`` lists); built in place."""
        raw: dict[str, Any] = self.fields
        raw["product"] = self.products
        raw["action"] = self.actions
        return raw


class XmlGuard:
    """A byte filter in front of the parser: refuses DTDs and foreign encodings, caps text runs.

    The common case costs a few C-level searches per chunk; only a chunk where a text run crosses
    ``max_text`` takes the byte-exact slow path that cuts it.
    """

    def __init__(
        self, max_text: int = DEFAULT_MAX_TEXT, max_record_bytes: int = DEFAULT_MAX_RECORD_BYTES
    ) -> None:
        if max_text < 64:
            raise ValueError("max_text must be at least 64 bytes")
        self.max_text = max_text
        self.max_record_bytes = max_record_bytes
        self.truncated_texts = 0
        self.replaced_characters = 0
        self._carry = b""
        self._started = False
        self._run = 0  # bytes since the last markup delimiter
        self._in_markup = False  # the last delimiter was '<' (we are inside a tag)
        self._skipping = False  # dropping the rest of an over-long text node
        self._tail = b""  # the last bytes passed through of the current run, to cut it safely
        self._since_record = 0  # bytes passed since the last </transaction>

    def feed(self, chunk: bytes) -> bytes:
        data = self._carry + chunk
        if not self._started:
            if len(data) < 64:
                self._carry = data
                return b""
            self._check_prologue(data)
            self._started = True
        data = self._legal(data)
        if _FORBIDDEN.search(data):
            raise HostileXmlError("document type declarations are refused (no DTDs, no entities)")
        if len(data) <= _CARRY:
            self._carry = data
            return b""
        ready, self._carry = data[:-_CARRY], data[-_CARRY:]
        return self._pass(ready)

    def close(self) -> bytes:
        data, self._carry = self._carry, b""
        if not self._started:
            if not data.strip():
                return b""
            self._check_prologue(data)
            self._started = True
        data = self._legal(data)
        if _FORBIDDEN.search(data):
            raise HostileXmlError("document type declarations are refused (no DTDs, no entities)")
        return self._pass(data)

    def _legal(self, data: bytes) -> bytes:
        """``data`` with what XML cannot carry made U+FFFD (after the prologue's check, which looks for NULs)."""
        if _ILLEGAL_CHARS.search(data) is None:
            return data
        data, count = _ILLEGAL_CHARS.subn(lambda m: b"\xef\xbf\xbd" if len(m.group()) == 1 else b"&#xFFFD;", data)
        self.replaced_characters += count
        return data

    def _check_prologue(self, data: bytes) -> None:
        if data.startswith((b"\xff\xfe", b"\xfe\xff", b"\x00", b"\x4c\x6f\xa7\x94")) or data[1:2] == b"\x00":
            raise HostileXmlError("only UTF-8 documents are accepted")
        match = _ENCODING_RE.match(data)
        if match and match.group(1).decode("ascii").lower() not in _ALLOWED_ENCODINGS:
            raise HostileXmlError(f"only UTF-8 documents are accepted, not {match.group(1).decode('ascii')}")

    def _pass(self, ready: bytes) -> bytes:
        step = self.max_text
        if len(ready) <= step:
            out = self._pass_piece(ready)
        else:
            out = b"".join(self._pass_piece(ready[i : i + step]) for i in range(0, len(ready), step))
        end = out.rfind(_RECORD_END)
        self._since_record = self._since_record + len(out) if end == -1 else len(out) - end
        if self._since_record > self.max_record_bytes:
            raise HostileXmlError(f"a record longer than {self.max_record_bytes} bytes")
        return out

    def _pass_piece(self, piece: bytes) -> bytes:
        """Fast path for a piece no longer than ``max_text``: only the run continuing from the previous piece
        can cross the limit, so look at its length and at the state the piece ends in."""
        if self._skipping:
            return self._cap(piece)
        first = piece.find(b">" if self._in_markup else b"<")
        lead = len(piece) if first == -1 else first
        if self._run + lead > self.max_text:
            return self._cap(piece)
        if first == -1:
            self._run += lead
            self._tail = (self._tail + piece)[-12:]
            return piece
        lt = piece.rfind(b"<")
        gt = piece.find(b">", lt) if lt != -1 else first
        if lt != -1 and gt == -1:
            self._in_markup, run_start = True, lt + 1
        else:
            self._in_markup, run_start = False, gt + 1
        self._run = len(piece) - run_start
        self._tail = piece[max(run_start, len(piece) - 12) :]
        return piece

    def _cap(self, ready: bytes) -> bytes:
        """Pass ``ready`` through, cutting any text run longer than ``max_text``."""
        out: list[bytes] = []
        pos = 0
        end = len(ready)
        while pos < end:
            if self._skipping:
                lt = ready.find(b"<", pos)
                if lt == -1:
                    return b"".join(out)
                self._skipping = False
                self._run = 0
                self._tail = b""
                self._in_markup = False
                pos = lt
                continue
            # the next delimiter that ends the current run: '>' inside markup, '<' in text
            stop = ready.find(b">" if self._in_markup else b"<", pos)
            seg_end = end if stop == -1 else stop
            seg = seg_end - pos
            if self._run + seg > self.max_text:
                if self._in_markup:
                    raise HostileXmlError(f"markup longer than {self.max_text} bytes")
                cut = self._safe_cut(ready, pos, pos + max(0, self.max_text - self._run), seg_end)
                out.append(ready[pos:cut])
                self.truncated_texts += 1
                self._skipping = True
                pos = seg_end
                continue
            if stop == -1:
                self._run += seg
                self._tail = (self._tail + ready[pos:end])[-12:]
                out.append(ready[pos:end])
                return b"".join(out)
            out.append(ready[pos : stop + 1])
            self._run = 0
            self._tail = b""
            self._in_markup = not self._in_markup
            pos = stop + 1
        return b"".join(out)

    def _safe_cut(self, data: bytes, pos: int, cut: int, limit: int) -> int:
        """Move ``cut`` forward so it splits neither an entity reference nor a UTF-8 sequence."""
        window = (self._tail + data[pos:cut])[-12:]
        amp = window.rfind(b"&")
        if amp != -1 and b";" not in window[amp:]:
            semi = data.find(b";", cut, min(limit, cut + 12))
            if semi != -1:
                cut = semi + 1
        while cut < limit and 0x80 <= data[cut] <= 0xBF:
            cut += 1
        return cut


def iter_records(
    chunks: Iterable[bytes],
    *,
    max_text: int = DEFAULT_MAX_TEXT,
    max_record_bytes: int = DEFAULT_MAX_RECORD_BYTES,
) -> Iterator[NmiRecord]:
    """Yield each ``<transaction>`` of a streamed ``<nm_response>`` document.

    Raises :class:`NmiErrorResponse` for an ``<error_response>``, :class:`HostileXmlError`,
    :class:`MalformedXmlError` or :class:`TruncatedXmlError`.
    """
    guard = XmlGuard(max_text, max_record_bytes)
    parser = etree.XMLPullParser(
        events=("end",),
        tag=("transaction", "error_response"),
        resolve_entities=False,
        load_dtd=False,
        no_network=True,
        huge_tree=False,
        remove_blank_text=True,
        remove_comments=True,
        remove_pis=True,
    )
    saw_bytes = False

    def drain(data: bytes) -> Iterator[NmiRecord]:
        try:
            parser.feed(data)
        except etree.XMLSyntaxError as exc:
            raise MalformedXmlError(f"malformed XML: {exc}") from None
        for _event, elem in parser.read_events():
            parent = elem.getparent()
            if parent is None or parent.getparent() is not None:
                continue  # only direct children of the root count
            if parent.tag != "nm_response":
                raise MalformedXmlError(f"expected <nm_response>, got <{parent.tag}>")
            if elem.tag == "error_response":
                raise NmiErrorResponse((elem.text or "").strip() or "error_response")
            yield _record(elem)
            elem.clear(keep_tail=False)
            while elem.getprevious() is not None:
                del parent[0]

    for chunk in chunks:
        if not chunk:
            continue
        data = guard.feed(chunk)
        if data:
            saw_bytes = True
            yield from drain(data)
    tail = guard.close()
    if tail:
        saw_bytes = True
        yield from drain(tail)
    if not saw_bytes:
        raise TruncatedXmlError("empty response body")
    try:
        root = parser.close()
    except etree.XMLSyntaxError as exc:
        raise TruncatedXmlError(f"document ended early: {exc}") from None
    if root is None or root.tag != "nm_response":
        raise MalformedXmlError(f"expected <nm_response>, got {getattr(root, 'tag', None)!r}")


def _record(elem: Any) -> NmiRecord:
    record = NmiRecord()
    fields = record.fields
    for child in elem:
        tag = child.tag
        if tag == "action":
            record.actions.append({c.tag: c.text or "" for c in child})
        elif tag == "product":
            record.products.append({c.tag: c.text or "" for c in child})
        elif tag not in fields:  # first occurrence wins, as NMI's own clients read it
            fields[tag] = child.text or ""
    return record
