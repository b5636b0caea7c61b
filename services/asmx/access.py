"""Who may call an operation, declared next to its handler, and the one place a caller logs in.

The contract carries the caller's credentials as ordinary parameters of nearly every operation
(AuthUserName/AuthPassword, or authUsername/authPassword in svcServerAdmin). A handler declares
which pair it takes with `@authenticated(...)`; the dispatcher then logs the caller in from them
before the handler runs and passes the `Actor` instead of the pair. `@anonymous` handlers
(AuthenticateUser, LoginValidated) get every parameter, as checking credentials is their whole job.

The declaration decides only whether a login is needed: what the logged-in caller may do is the
engine's rule (mailsrv.directory.auth's rights), checked by the engine call the handler makes.
"""
from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, TypeVar

from services.asmx.call import Call

Handler = Callable[..., Any]
H = TypeVar("H", bound=Handler)

_ATTRIBUTE = "asmx_access"


# What `Access.run_quick` answers when the call must run in a worker thread after all.
NOT_QUICK = object()


@dataclass(frozen=True)
class Access:
    """The parameters carrying the caller's login name and password; None for an anonymous operation.
    `quick`: the handler only reads, at most one prepared read (mailsrv.store.db.Store.fetch), so
    that with the login's quick path it may run on the event loop's thread (mailsrv.core.on_loop)."""
    credentials: tuple[str, str] | None
    # The request carries a whole address list: its body may be up to `[web] max_list_request_bytes`
    # instead of `max_request_bytes` (services.asmx.endpoint, decided before the body is read).
    address_list: bool = False
    quick: bool = False

    def handler_parameters(self, contract_parameters: list[str]) -> list[str]:
        """The contract parameters the handler takes by name (all but the credentials)."""
        return [name for name in contract_parameters if name not in (self.credentials or ())]

    def run(self, handler: Handler, call: Call, params: Mapping[str, Any]) -> Any:
        """Log the caller in when the operation needs it, then call the handler."""
        if self.credentials is None:
            return handler(call, **params)
        user, password = self.credentials
        rest = {name: value for name, value in params.items() if name not in self.credentials}
        actor = call.engine.auth.login(params.get(user), params.get(password), call.client_ip)
        return handler(call, actor, **rest)

    def run_quick(self, handler: Handler, call: Call, params: Mapping[str, Any]) -> Any:
        """`run` on the event loop's thread, under Store.run_read (mailsrv.store.db), when the login is quick
        (Authenticator.quick_login) and the handler declared quick; else NOT_QUICK, and nothing was
        done but one read. The handler reads the directory as the login's read saw it, what was read
        at that generation already from the process's memory (Store.directory_at)."""
        if not self.quick or self.credentials is None:
            return NOT_QUICK
        user, password = self.credentials
        auth = call.engine.auth
        login = auth.quick_login(params.get(user), params.get(password), call.client_ip)
        if login is None:
            return NOT_QUICK
        actor, generation = login
        with auth.store.directory_at(generation):
            return handler(call, actor, **{name: value for name, value in params.items()
                                           if name not in self.credentials})


def _declare(access: Access) -> Callable[[H], H]:
    def mark(handler: H) -> H:
        setattr(handler, _ATTRIBUTE, access)
        return handler
    return mark


def authenticated(user: str = "AuthUserName", password: str = "AuthPassword", *,
                  address_list: bool = False, quick: bool = False) -> Callable[[H], H]:
    """The operation needs a login, carried by the parameters `user` and `password`; `address_list`:
    it replaces a whole address list; `quick`: see Access."""
    return _declare(Access((user, password), address_list, quick))


def anonymous(handler: H) -> H:
    """The operation needs no login: it gets every contract parameter."""
    return _declare(Access(None))(handler)


def access_of(handler: Handler) -> Access | None:
    """The handler's declaration, None when it has none."""
    return getattr(handler, _ATTRIBUTE, None)
