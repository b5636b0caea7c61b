"""Web interface sessions: signing in through the shared Authenticator, and who a cookie belongs to.

A session lasts SESSION_LIFETIME from sign-in and ends at logout, when the user or its domain is
deleted or disabled, when the user's password changes, or when it expires. A system administrator's
session (the administration pages) ends likewise when the administrator is deleted or its login
changes (mailsrv.directory.admins clears its sessions). Each has its own CSRF token, which every state-changing
form must send back.
"""
from __future__ import annotations

import datetime as dt
import hashlib
import secrets
from dataclasses import dataclass

from sqlalchemy import delete, select

from mailsrv.core.actor import Actor, Role
from mailsrv.core.clock import Clock
from mailsrv.core.errors import MailsrvError, ResultCode
from mailsrv.directory.auth import LOGIN_FAILED_MESSAGE, Authenticator, user_actor
from mailsrv.store.db import Store
from mailsrv.store.models import Domain, SystemAdmin, User, WebSession

# A working day: long enough not to interrupt one, short enough that a forgotten session on a
# shared machine does not stay open for days.
SESSION_LIFETIME = dt.timedelta(hours=12)


@dataclass(frozen=True)
class SignedIn:
    actor: Actor
    csrf_token: str

    @property
    def address(self) -> str:
        return f"{self.actor.user}@{self.actor.domain}" if self.actor.user else self.actor.login

    @property
    def has_mailbox(self) -> bool:
        return bool(self.actor.user)


def _hash(token: str) -> str:
    return hashlib.sha256(token.encode("utf-8")).hexdigest()


class WebSessions:
    def __init__(self, store: Store, auth: Authenticator, clock: Clock) -> None:
        self.store = store
        self.auth = auth
        self.clock = clock

    def sign_in(self, login: str | None, password: str | None, client_ip: str) -> tuple[str, Actor]:
        """A new session's token and whom it signs in; LOGIN_FAILED / LOGIN_LOCKED as for every
        protocol (blocking). System administrators sign in too: they have the administration pages."""
        actor = self.auth.login(login, password, client_ip, protocol="web")
        token = secrets.token_urlsafe(32)
        now = self.clock.now()
        with self.store.session() as s:
            admin_id = None
            if actor.role is Role.SYSTEM_ADMIN:
                admin_id = s.execute(select(SystemAdmin.id).where(SystemAdmin.username == actor.login)).scalar()
                if admin_id is None:  # renamed or deleted since the password was checked
                    raise MailsrvError(ResultCode.LOGIN_FAILED, LOGIN_FAILED_MESSAGE)
            # Expired sessions are cleared here rather than by a timer: sign-ins are rare enough.
            s.execute(delete(WebSession).where(WebSession.expires_at < now))
            s.add(WebSession(token_hash=_hash(token), user_id=actor.user_id or None, admin_id=admin_id,
                             csrf_token=secrets.token_urlsafe(32), expires_at=now + SESSION_LIFETIME,
                             credential_epoch=actor.credential_epoch))
        return token, actor

    def find(self, token: str | None) -> SignedIn | None:
        """The live session for a cookie's token, None when there is none."""
        if not token:
            return None
        with self.store.session() as s:
            admin = s.execute(select(WebSession.csrf_token, SystemAdmin.username, SystemAdmin.setup_pending)
                              .join(SystemAdmin, SystemAdmin.id == WebSession.admin_id)
                              .where(WebSession.token_hash == _hash(token),
                                     WebSession.expires_at > self.clock.now())).first()
            if admin is not None:
                csrf_token, username, setup_pending = admin
                return SignedIn(Actor(Role.SYSTEM_ADMIN, username, setup_pending=setup_pending), csrf_token)
            row = s.execute(select(WebSession, User, Domain).join(User, User.id == WebSession.user_id)
                            .join(Domain, Domain.id == User.domain_id)
                            .where(WebSession.token_hash == _hash(token),
                                   WebSession.expires_at > self.clock.now(),
                                   WebSession.credential_epoch == User.credential_epoch)).first()
            # Never issued, signed out, expired (cleared at a later sign-in), or the password changed since.
            if row is None:
                return None
            session, user, domain = row
            actor = user_actor(user, domain)
            if actor is None:
                s.delete(session)
                return None
            return SignedIn(actor, session.csrf_token)

    def sign_out(self, token: str | None) -> None:
        if token:
            with self.store.session() as s:
                s.execute(delete(WebSession).where(WebSession.token_hash == _hash(token)))
