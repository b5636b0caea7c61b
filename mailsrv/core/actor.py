"""Who is calling, as every engine operation sees it: the caller's role and the rights checks on it.

Rights: a system administrator may do everything; a domain administrator (a user with
IsDomainAdmin, logging in as user@domain) manages its own domain's users, aliases and settings and
nothing server-wide; any other user may only check its own credentials. The factory admin/admin
login grants nothing but completing setup. How a login becomes an Actor is mailsrv.directory.auth.
"""
from __future__ import annotations

from dataclasses import dataclass
from enum import Enum

from mailsrv.core.errors import MailsrvError, ResultCode


class Role(Enum):
    SYSTEM_ADMIN = "system"
    DOMAIN_ADMIN = "domain"
    USER = "user"


@dataclass(frozen=True)
class Actor:
    role: Role
    login: str
    domain: str = ""  # the user's domain (ASCII form) for domain admins and users
    user: str = ""
    setup_pending: bool = False
    user_id: int = 0  # mailbox users: the row id, and its credential_epoch when this actor logged in
    credential_epoch: int = 0

    def require_system(self) -> None:
        self._require_setup_done()
        if self.role is not Role.SYSTEM_ADMIN:
            raise MailsrvError(ResultCode.PERMISSION_DENIED,
                               "Permission denied: this operation requires a system administrator.")

    def require_domain(self, domain: str) -> None:
        """Allow system admins, and domain admins of `domain` (ASCII form)."""
        self._require_setup_done()
        if self.role is Role.SYSTEM_ADMIN or (self.role is Role.DOMAIN_ADMIN and self.domain == domain):
            return
        raise MailsrvError(ResultCode.PERMISSION_DENIED,
                           f"Permission denied: {self.login} may not manage the domain {domain}.")

    def _require_setup_done(self) -> None:
        if self.setup_pending:
            raise MailsrvError(ResultCode.SETUP_REQUIRED,
                               "Setup must be completed first: change the factory administrator login "
                               "(web setup wizard, or `mailsrv admin reset`).")
