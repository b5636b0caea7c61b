"""Messages a user writes in the web interface: new ones, replies and forwards, as RFC 5322 bytes.

Replies quote the original's text and thread with In-Reply-To/References (RFC 5322 §3.6.4);
forwards quote the original's headers and text and carry its attachments along.
"""
from __future__ import annotations

import datetime as dt
import email.policy
import email.utils
import mimetypes
from dataclasses import dataclass, field, replace
from email.message import EmailMessage

from mailsrv.webmail.message_view import MessageView, parse, part_bytes


@dataclass(frozen=True)
class Upload:
    filename: str
    content_type: str
    data: bytes


@dataclass(frozen=True)
class Draft:
    to: str = ""
    cc: str = ""
    bcc: str = ""
    subject: str = ""
    body: str = ""
    attachments: tuple[Upload, ...] = field(default_factory=tuple)
    in_reply_to: str = ""
    references: str = ""


def recipients(draft: Draft) -> list[str]:
    """Every envelope recipient (To, Cc and Bcc), each address once, in the order given."""
    seen: dict[str, str] = {}
    for _, address in email.utils.getaddresses([draft.to, draft.cc, draft.bcc]):
        if address:
            seen.setdefault(address.lower(), address)
    return list(seen.values())


def _prefixed(prefix: str, subject: str) -> str:
    return subject if subject.lower().startswith(prefix.lower()) else f"{prefix} {subject}"


def _quoted(original: MessageView) -> str:
    return "\n".join(f"> {line}" if line else ">" for line in original.text.splitlines())


def reply_draft(original: MessageView, own_address: str, to_all: bool) -> Draft:
    to = original.reply_to or original.sender
    cc = ""
    if to_all:
        others = [(n, a) for n, a in email.utils.getaddresses([original.to, original.cc])
                  if a and a.lower() != own_address.lower()]
        cc = ", ".join(email.utils.formataddr(pair) for pair in others)
    when = original.date.strftime("%Y-%m-%d %H:%M") if original.date else "an earlier date"
    body = f"\n\nOn {when}, {original.sender} wrote:\n{_quoted(original)}\n"
    return Draft(to=to, cc=cc, subject=_prefixed("Re:", original.subject), body=body,
                 in_reply_to=original.message_id,
                 references=" ".join(filter(None, [original.references, original.message_id])))


def forward_draft(original: MessageView) -> Draft:
    header = "\n".join(f"{name}: {value}" for name, value in (
        ("From", original.sender), ("Date", original.date.strftime("%Y-%m-%d %H:%M") if original.date else ""),
        ("Subject", original.subject), ("To", original.to)) if value)
    body = f"\n\n---------- Forwarded message ----------\n{header}\n\n{original.text}"
    return Draft(subject=_prefixed("Fwd:", original.subject), body=body)


def with_attachments_of(draft: Draft, raw: bytes, indexes: list[int]) -> Draft:
    """`draft` plus the original's attachments (by index): what a forward carries along."""
    leaves = [part for part in parse(raw).walk() if not part.is_multipart()]
    carried = tuple(Upload(leaves[i].get_filename() or f"part-{i + 1}", leaves[i].get_content_type(),
                           part_bytes(leaves[i])) for i in indexes if 0 <= i < len(leaves))
    return replace(draft, attachments=draft.attachments + carried)


def build(draft: Draft, sender: str, hostname: str, now: dt.datetime) -> bytes:
    """The message as sent: CRLF line ends, as SMTP would carry it; Bcc stays off the headers."""
    message = EmailMessage()
    message["From"] = sender
    if draft.to:
        message["To"] = draft.to
    if draft.cc:
        message["Cc"] = draft.cc
    message["Subject"] = draft.subject
    message["Date"] = email.utils.format_datetime(now)
    message["Message-ID"] = email.utils.make_msgid(domain=hostname)
    if draft.in_reply_to:
        message["In-Reply-To"] = draft.in_reply_to
        message["References"] = draft.references or draft.in_reply_to
    message.set_content(draft.body.replace("\r\n", "\n"))
    for upload in draft.attachments:
        content_type = upload.content_type or mimetypes.guess_type(upload.filename)[0] or "application/octet-stream"
        maintype, _, subtype = content_type.partition("/")
        if maintype in ("multipart", "message") or not subtype:
            maintype, subtype = "application", "octet-stream"  # sent as a file, never re-parsed as structure
        message.add_attachment(upload.data, maintype=maintype, subtype=subtype, filename=upload.filename)
    return message.as_bytes(policy=email.policy.SMTP)
