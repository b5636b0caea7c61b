"""svcServerAdmin: folder auto-clean rules (the engine: mailsrv.directory.autoclean)."""
from __future__ import annotations

from typing import Any

from mailsrv.core.actor import Actor
from services.asmx.access import authenticated
from services.asmx.call import Call

SERVICE = "svcServerAdmin"


@authenticated("authUsername", "authPassword")
def AddFolderAutocleanRule(call: Call, actor: Actor, folder: str | None, enableRule: bool, type: str | None,
                           sizeBeforeAutoClean: int, sizeAfterClean: int, mailAgeInDays: int) -> dict[str, str]:
    rule_id = call.engine.autoclean.add(actor, folder, enableRule, type, sizeBeforeAutoClean, sizeAfterClean,
                                        mailAgeInDays)
    return {"Message": rule_id}


@authenticated("authUsername", "authPassword")
def DeleteFolderAutoCleanRule(call: Call, actor: Actor, id: str | None) -> None:
    call.engine.autoclean.delete(actor, id)


@authenticated("authUsername", "authPassword")
def ListFolderAutoCleanRules(call: Call, actor: Actor) -> dict[str, Any]:
    return {"Rules": [{"Enabled": r.enabled, "ID": r.id, "SizeBeforeCleanInMB": r.size_before_mb,
                       "SizeAfterCleanInMB": r.size_after_mb, "MailAgeInDays": r.age_days, "Type": r.type}
                      for r in call.engine.autoclean.list(actor)]}
