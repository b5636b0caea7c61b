"""The webmail pages: folders and message lists, reading, attachments, compose/reply/forward, actions.

Each handler checks the session (and, on POST, the CSRF token), makes engine calls (mailsrv.mailstore.folders,
mailsrv.webmail.message_view, mailsrv.webmail.outgoing, mailsrv.webmail.service) and renders or redirects.
"""
from __future__ import annotations

import base64
from collections.abc import Awaitable, Callable
from dataclasses import replace
from urllib.parse import quote, urlencode

from starlette.concurrency import run_in_threadpool
from starlette.datastructures import FormData, UploadFile
from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response

from mailsrv.core.errors import MailsrvError, ResultCode
from mailsrv.directory.web_sessions import SignedIn, WebSessions
from mailsrv.mailstore.folders import INBOX, Mailbox
from mailsrv.webmail import message_view, outgoing
from mailsrv.webmail.service import Answering, Webmail
from services.web.render import page, redirect, security_headers
from services.web.signin import ADMIN_URL, LOGIN_URL, checked_post, client_ip, signed_in

Handler = Callable[[Request, SignedIn, Mailbox], Awaitable[Response]]
ACTIONS = ("delete", "move", "read", "unread")
# Types a browser shows as pictures, never runs: safe to display inline (e.g. cid: images).
_INLINE_SAFE = frozenset({"image/png", "image/jpeg", "image/gif", "image/webp"})


def list_url(folder: str, number: int = 1, notice: str = "") -> str:
    query = {"folder": folder, "page": number} | ({"notice": notice} if notice else {})
    return "/Mail?" + urlencode(query)


def message_url(folder: str, key: str, **extra: object) -> str:
    return "/Mail/Message?" + urlencode({"folder": folder, "id": key, **extra})


def _part_url(folder: str, key: str, index: int) -> str:
    return "/Mail/Attachment?" + urlencode({"folder": folder, "id": key, "part": index})


def _int(value: object, default: int) -> int:
    text = str(value or "")
    return int(text) if text.isdigit() else default


def _not_found(exc: MailsrvError) -> Response:
    return PlainTextResponse(exc.message, 404, headers=security_headers())


async def _uploads(form: FormData) -> tuple[outgoing.Upload, ...]:
    """The files attached in this form, after those kept from an earlier try (`kept_token`)."""
    files = [f for f in form.getlist("attachments") if isinstance(f, UploadFile) and f.filename]
    uploaded = [outgoing.Upload(f.filename or "", f.content_type or "", await f.read()) for f in files]
    return tuple([_kept(str(token)) for token in form.getlist("kept")] + uploaded)


def kept_token(upload: outgoing.Upload) -> str:
    """An attachment as a form value: a send that was refused re-renders the form with its
    attachments as checked boxes carrying these, as a browser cannot refill a file input."""
    return ".".join(base64.urlsafe_b64encode(part).decode("ascii")
                    for part in (upload.filename.encode(), upload.content_type.encode(), upload.data))


def _kept(token: str) -> outgoing.Upload:
    try:
        name, content_type, data = (base64.urlsafe_b64decode(part) for part in token.split("."))
        return outgoing.Upload(name.decode(), content_type.decode(), data)
    except (ValueError, UnicodeDecodeError):  # binascii.Error is a ValueError
        raise MailsrvError(ResultCode.INVALID_ARGUMENT, "An attachment kept from the last try was damaged; "
                                                         "please attach it again.") from None


class MailPages:
    def __init__(self, web_sessions: WebSessions, webmail: Webmail) -> None:
        self.web_sessions = web_sessions
        self.webmail = webmail

    def signed(self, handler: Handler, body_limit: int | None = None) -> Callable[[Request], Awaitable[Response]]:
        """`handler` for signed-in users only; POSTs must also carry the session's CSRF token and
        be at most `body_limit` bytes (None: no limit of its own)."""
        async def endpoint(request: Request) -> Response:
            session = await signed_in(self.web_sessions, request)
            if session is None:
                return redirect(LOGIN_URL)
            if not session.has_mailbox:  # a system administrator: nothing to read here
                return redirect(ADMIN_URL)
            if request.method == "POST":
                checked = await checked_post(session, request, body_limit)
                if isinstance(checked, Response):
                    return checked
                request = checked
            mailbox = await run_in_threadpool(self.webmail.mailbox, session.actor)
            try:
                return await handler(request, session, mailbox)
            except MailsrvError as exc:
                return _not_found(exc)
        return endpoint

    @staticmethod
    async def _context(session: SignedIn, mailbox: Mailbox, **extra: object) -> dict[str, object]:
        """What every signed-in page shows around its content: the user and the folder list."""
        folders = await run_in_threadpool(mailbox.folders)
        return {"session": session, "folders": folders, "list_url": list_url, "message_url": message_url, **extra}

    async def folder(self, request: Request, session: SignedIn, mailbox: Mailbox) -> Response:
        name = request.query_params.get("folder") or INBOX
        listing = await run_in_threadpool(mailbox.page, name, _int(request.query_params.get("page"), 1))
        return page(request, "folder.html", await self._context(
            session, mailbox, page=listing, notice=request.query_params.get("notice", "")))

    async def message(self, request: Request, session: SignedIn, mailbox: Mailbox) -> Response:
        folder, key = request.query_params.get("folder") or INBOX, request.query_params.get("id", "")
        show_remote = request.query_params.get("images") == "1"
        raw = await run_in_threadpool(mailbox.read, folder, key)
        view = await run_in_threadpool(message_view.view, raw, show_remote,
                                       lambda index: _part_url(folder, key, index))
        await run_in_threadpool(mailbox.set_flags, folder, key, "S")
        return page(request, "message.html", await self._context(
            session, mailbox, folder=folder, key=key, view=view, part_url=_part_url), show_remote_images=show_remote)

    async def attachment(self, request: Request, session: SignedIn, mailbox: Mailbox) -> Response:
        folder, key = request.query_params.get("folder") or INBOX, request.query_params.get("id", "")
        raw = await run_in_threadpool(mailbox.read, folder, key)
        found = await run_in_threadpool(message_view.attachment, raw, _int(request.query_params.get("part"), -1))
        if found is None:
            return PlainTextResponse("No such attachment.", 404, headers=security_headers())
        part, data = found
        # Always a download, never rendered on our origin: an HTML or SVG attachment would
        # otherwise run as one of our own pages.
        disposition = "inline" if part.content_type in _INLINE_SAFE else "attachment"
        headers = security_headers() | {
            "Content-Disposition": f"{disposition}; filename*=UTF-8''{quote(part.filename)}"}
        media_type = part.content_type if disposition == "inline" else "application/octet-stream"
        return Response(data, media_type=media_type, headers=headers)

    async def compose(self, request: Request, session: SignedIn, mailbox: Mailbox) -> Response:
        query = request.query_params
        folder, key = query.get("folder") or INBOX, query.get("id", "")
        mode = query.get("mode", "")
        draft, carried, answering = outgoing.Draft(), [], None
        if mode in ("reply", "replyall", "forward") and key:
            raw = await run_in_threadpool(mailbox.read, folder, key)
            view = await run_in_threadpool(message_view.view, raw, False, lambda index: "")
            if mode == "forward":
                draft, carried = outgoing.forward_draft(view), view.attachments
            else:
                draft = outgoing.reply_draft(view, session.address, mode == "replyall")
                answering = Answering(folder, key)
        return page(request, "compose.html", await self._context(
            session, mailbox, draft=draft, carried=carried, answering=answering,
            forward=(folder, key) if mode == "forward" else None, error="", kept=[]))

    async def send(self, request: Request, session: SignedIn, mailbox: Mailbox) -> Response:
        form = await request.form()
        draft = outgoing.Draft(
            to=str(form.get("to") or ""), cc=str(form.get("cc") or ""), bcc=str(form.get("bcc") or ""),
            subject=str(form.get("subject") or ""), body=str(form.get("body") or ""),
            in_reply_to=str(form.get("in_reply_to") or ""), references=str(form.get("references") or ""))
        forward_folder, forward_key = str(form.get("forward_folder") or ""), str(form.get("forward_id") or "")
        reply_folder, reply_key = str(form.get("reply_folder") or ""), str(form.get("reply_id") or "")
        answering = Answering(reply_folder, reply_key) if reply_key else None
        try:
            draft = replace(draft, attachments=await _uploads(form))
            if forward_key:
                raw = await run_in_threadpool(mailbox.read, forward_folder, forward_key)
                carry = [_int(i, -1) for i in form.getlist("carry")]
                draft = await run_in_threadpool(outgoing.with_attachments_of, draft, raw, carry)
            await self.webmail.send(session.actor, draft, client_ip(request), answering)
        except MailsrvError as exc:
            # Everything attached so far (uploads and forwarded parts alike) comes back as kept.
            return page(request, "compose.html", await self._context(
                session, mailbox, draft=draft, carried=[], answering=answering, forward=None, error=exc.message,
                kept=[(upload, kept_token(upload)) for upload in draft.attachments]), 400)
        return redirect(list_url(INBOX, notice="sent"))

    async def action(self, request: Request, session: SignedIn, mailbox: Mailbox) -> Response:
        form = await request.form()
        folder, action = str(form.get("folder") or INBOX), str(form.get("action") or "")
        keys = [str(k) for k in form.getlist("id")]
        target = str(form.get("target") or "")
        if action not in ACTIONS:
            return PlainTextResponse("Unknown action.", 400, headers=security_headers())

        def apply() -> None:
            for key in keys:
                if action == "delete":
                    mailbox.delete(folder, key)
                elif action == "move":
                    mailbox.move(folder, key, target)
                elif action == "read":
                    mailbox.set_flags(folder, key, add="S")
                else:
                    mailbox.set_flags(folder, key, remove="S")

        await run_in_threadpool(apply)
        return redirect(list_url(folder, _int(form.get("page"), 1)))

