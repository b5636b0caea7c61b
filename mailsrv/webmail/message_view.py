"""A stored message as a reader sees it: headers, its text, its HTML made safe, its attachments.

HTML goes through nh3 (the maintained Rust `ammonia` sanitizer): no scripts, styles, event handlers,
forms or frames survive, links get rel="noopener noreferrer". Remote images are removed unless the
reader asked for them (they tell the sender when and where the mail was read); images the message
carries itself (cid:) are pointed at the attachment download.
"""
from __future__ import annotations

import datetime as dt
import email.policy
import email.utils
from collections.abc import Callable
from dataclasses import dataclass, field
from email.message import EmailMessage, Message
from email.parser import BytesParser

import nh3

_URL_SCHEMES = {"http", "https", "mailto", "cid"}


@dataclass(frozen=True)
class Attachment:
    index: int  # the part's position among the message's leaf parts: its download address
    filename: str
    content_type: str
    size: int


@dataclass(frozen=True)
class MessageView:
    subject: str
    sender: str
    reply_to: str  # where answers go when the sender asked for somewhere else than From
    to: str
    cc: str
    date: dt.datetime | None
    message_id: str
    references: str
    text: str  # the plain text body ("" when the message has only HTML)
    html: str  # the sanitized HTML body, "" when there is none
    remote_blocked: bool  # remote images were taken out of `html`
    attachments: list[Attachment] = field(default_factory=list)


def parse(raw: bytes) -> EmailMessage:
    return BytesParser(policy=email.policy.default).parsebytes(raw)  # type: ignore[return-value]


def _leaves(message: Message) -> list[Message]:
    return [part for part in message.walk() if not part.is_multipart()]


def part_text(part: Message) -> str:
    try:
        return str(part.get_content())  # type: ignore[attr-defined]
    except (LookupError, UnicodeError):
        # An unknown or lying charset: show what can be read rather than nothing.
        return (part.get_payload(decode=True) or b"").decode("utf-8", "replace")


def part_bytes(part: Message) -> bytes:
    return part.get_payload(decode=True) or b""


def _header(message: Message, name: str) -> str:
    return str(message.get(name, "") or "")


def _date(message: Message) -> dt.datetime | None:
    try:
        return email.utils.parsedate_to_datetime(_header(message, "Date"))
    except (TypeError, ValueError):
        return None


def sanitize(html: str, show_remote: bool, cid_url: Callable[[str], str | None]) -> tuple[str, bool]:
    """(safe HTML, whether remote images were removed)."""
    blocked = False

    def keep(element: str, attribute: str, value: str) -> str | None:
        nonlocal blocked
        if element == "img" and attribute == "src":
            if value.lower().startswith("cid:"):
                return cid_url(value[4:].strip("<>"))
            if not show_remote:
                blocked = True
                return None
        return value

    cleaned = nh3.clean(html, url_schemes=_URL_SCHEMES, attribute_filter=keep)
    return cleaned, blocked


def view(raw: bytes, show_remote: bool, part_url: Callable[[int], str]) -> MessageView:
    """The message in `raw`; `part_url(index)` is where a part of it can be downloaded."""
    message = parse(raw)
    html_part = message.get_body(preferencelist=("html",))
    text_part = message.get_body(preferencelist=("plain",))
    leaves = _leaves(message)
    by_cid = {_header(p, "Content-ID").strip("<> "): i for i, p in enumerate(leaves) if p.get("Content-ID")}

    def cid_url(cid: str) -> str | None:
        return part_url(by_cid[cid]) if cid in by_cid else None

    html, blocked = sanitize(part_text(html_part), show_remote, cid_url) if html_part is not None else ("", False)
    attachments = [
        Attachment(i, part.get_filename() or f"part-{i + 1}", part.get_content_type(), len(part_bytes(part)))
        for i, part in enumerate(leaves) if part is not html_part and part is not text_part]
    return MessageView(
        subject=_header(message, "Subject"), sender=_header(message, "From"),
        reply_to=_header(message, "Reply-To"), to=_header(message, "To"),
        cc=_header(message, "Cc"), date=_date(message), message_id=_header(message, "Message-ID"),
        references=_header(message, "References"),
        text=part_text(text_part) if text_part is not None else "", html=html, remote_blocked=blocked,
        attachments=attachments)


def attachment(raw: bytes, index: int) -> tuple[Attachment, bytes] | None:
    """Leaf part `index` of the message and its decoded content; None when there is no such part."""
    leaves = _leaves(parse(raw))
    if not 0 <= index < len(leaves):
        return None
    part = leaves[index]
    data = part_bytes(part)
    return Attachment(index, part.get_filename() or f"part-{index + 1}", part.get_content_type(), len(data)), data
