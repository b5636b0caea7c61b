"""Per-domain message-archiving rules (SetDomainArchiveRule). Stored only: see README."""
from __future__ import annotations

from collections.abc import Iterable

from mailsrv.core import settings
from mailsrv.core.actor import Actor
from mailsrv.core.errors import MailsrvError, ResultCode
from mailsrv.directory.domains import domain_for
from mailsrv.store.db import Store
from mailsrv.store.models import ArchiveRule

RULE = settings.keys(domainname="", enabled=True, archiveincoming=True, archiveoutgoing=True, retentiondays=0)


class ArchiveRules:
    def __init__(self, store: Store) -> None:
        self.store = store

    def set(self, actor: Actor, parameters: Iterable[str | None]) -> list[str]:
        """Create or change the rule of the domain named by `domainname=`; answer the whole rule."""
        changes = settings.parse_assignments(RULE, parameters)
        if not changes.get("domainname"):
            raise MailsrvError(ResultCode.INVALID_ARGUMENT, "The parameters must name the domain: domainname=example.com.")
        with self.store.session() as s:
            domain = domain_for(s, actor, changes.pop("domainname"))
            rule = s.query(ArchiveRule).filter_by(domain_id=domain.id).one_or_none()
            if rule is None:
                rule = ArchiveRule(domain_id=domain.id, parameters=settings.defaults(RULE))
                s.add(rule)
            rule.parameters = {**rule.parameters, **changes, "domainname": domain.name}
            return settings.read_requested(RULE, rule.parameters, list(RULE))
