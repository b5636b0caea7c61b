"""A mailbox's own options: forwarding, auto-responder, ActiveSync and RSS feeds (svcUserAdmin).

Rights as for the user itself (`user_access.managed_user`). ActiveSync and RSS feeds are stored
only; forwarding and auto-responders are enforced by the mail engine (README, "Stored-only
features").
"""
from __future__ import annotations

import re
import uuid
from dataclasses import dataclass
from urllib.parse import urlsplit

from sqlalchemy import select

from mailsrv.core import names, settings
from mailsrv.core.actor import Actor
from mailsrv.core.errors import MailsrvError, ResultCode
from mailsrv.directory import address_lists
from mailsrv.directory.user_access import NAME_LIMIT, by_name, checked_text, managed_user
from mailsrv.store.db import Store
from mailsrv.store.models import RssFeed

SUBJECT_LIMIT = 998  # one header line (RFC 5322)
TEXT_LIMIT = 100_000  # auto-responder bodies
URL_LIMIT = 2048
# UpdateUserForwardingInfo's one string may carry several addresses.
_FORWARD_SEPARATORS = re.compile(r"[,;]")


@dataclass(frozen=True)
class Forwarding:
    delete_on_forward: bool
    addresses: list[str]


@dataclass(frozen=True)
class AutoResponse:
    enabled: bool
    subject: str
    body: str


@dataclass(frozen=True)
class FeedView:
    uid: str
    name: str
    url: str
    folder: str


@dataclass(frozen=True)
class Feeds:
    feeds: list[FeedView]
    folders: list[str]  # the distinct non-empty folders the feeds file into


def _forward_targets(raw: str | None) -> list[str]:
    """The addresses of a forwarding string (`,` or `;` separated), validated and de-duplicated."""
    return names.address_list(_FORWARD_SEPARATORS.split(raw or ""), "Forwarding")


def _feed_url(raw: str | None) -> str:
    text = (raw or "").strip()
    try:
        parts = urlsplit(text)
        valid = parts.scheme.lower() in ("http", "https") and bool(parts.hostname)
    except ValueError:  # e.g. an unbalanced [ in the host
        valid = False
    if not valid or len(text) > URL_LIMIT or any(c.isspace() or ord(c) < 32 for c in text):
        raise MailsrvError(ResultCode.INVALID_ARGUMENT, f"'{raw}' is not an http or https URL.")
    return text


class UserOptions:
    def __init__(self, store: Store) -> None:
        self.store = store

    # Forwarding, auto-responder, ActiveSync

    def forwarding(self, actor: Actor, raw_address: str | None) -> Forwarding:
        with managed_user(self.store, actor, raw_address) as (_, user):
            return Forwarding(user.delete_on_forward, list(user.forwarding_addresses))

    def set_forwarding(self, actor: Actor, raw_address: str | None, delete_on_forward: bool,
                       raw_addresses: str | None) -> None:
        """Forward to the `,`/`;` separated addresses (blank: stop forwarding). Delete-on-forward
        only takes effect while there is somewhere to forward to."""
        targets = _forward_targets(raw_addresses)
        with managed_user(self.store, actor, raw_address) as (s, user):
            bypass = settings.value(settings.DOMAIN, user.domain.settings, "bypassforwardblacklist")
            address_lists.forwarding_refusal(s, targets, bool(bypass))
            user.forwarding_addresses, user.delete_on_forward = targets, delete_on_forward

    def auto_response(self, actor: Actor, raw_address: str | None) -> AutoResponse:
        with managed_user(self.store, actor, raw_address) as (_, user):
            return AutoResponse(user.autoresponder_enabled, user.autoresponder_subject, user.autoresponder_body)

    def set_auto_response(self, actor: Actor, raw_address: str | None, enabled: bool, subject: str | None,
                          body: str | None) -> None:
        subject_text = checked_text(subject, "auto-responder subject", SUBJECT_LIMIT)
        body_text = checked_text(body, "auto-responder body", TEXT_LIMIT, multiline=True)
        with managed_user(self.store, actor, raw_address) as (_, user):
            user.autoresponder_enabled = enabled
            user.autoresponder_subject, user.autoresponder_body = subject_text, body_text

    def activesync_enabled(self, actor: Actor, raw_address: str | None) -> bool:
        with managed_user(self.store, actor, raw_address) as (_, user):
            return user.activesync_enabled

    def set_activesync(self, actor: Actor, raw_address: str | None, enabled: bool) -> None:
        with managed_user(self.store, actor, raw_address) as (_, user):
            user.activesync_enabled = enabled

    # RSS feeds

    def add_feed(self, actor: Actor, raw_address: str | None, raw_url: str | None, raw_name: str | None,
                 raw_folder: str | None) -> str:
        """Subscribe a user to a feed; a blank name is the URL. The new feed's uid."""
        url = _feed_url(raw_url)
        feed = RssFeed(id=str(uuid.uuid4()), url=url, name=checked_text(raw_name, "feed name", NAME_LIMIT) or url,
                       folder=checked_text(raw_folder, "folder name", NAME_LIMIT))
        with managed_user(self.store, actor, raw_address) as (s, user):
            feed.user_id = user.id
            s.add(feed)
        return feed.id

    def delete_feed(self, actor: Actor, raw_address: str | None, raw_uid: str | None) -> None:
        with managed_user(self.store, actor, raw_address) as (s, user):
            feed = s.get(RssFeed, (raw_uid or "").strip().lower())
            if feed is None or feed.user_id != user.id:
                raise MailsrvError(ResultCode.ITEM_NOT_FOUND,
                                   f"{user.name}@{user.domain.name} has no RSS feed '{raw_uid}'.")
            s.delete(feed)

    def feeds(self, actor: Actor, raw_address: str | None) -> Feeds:
        with managed_user(self.store, actor, raw_address) as (s, user):
            rows = s.execute(select(RssFeed).where(RssFeed.user_id == user.id)).scalars()
            feeds = sorted((FeedView(f.id, f.name, f.url, f.folder) for f in rows),
                           key=lambda f: by_name(f.name, f.uid))
        return Feeds(feeds, sorted({f.folder for f in feeds if f.folder}, key=str.casefold))
