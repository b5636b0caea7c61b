"""svcSpamAdmin: the DNS blocklists and spam options (extensions.md; the rules are
mailsrv.directory.content_filters')."""
from __future__ import annotations

from typing import Any

from mailsrv.core.actor import Actor
from mailsrv.directory.system_settings import SYSTEM
from services.asmx.access import authenticated
from services.asmx.call import Call

SERVICE = "svcSpamAdmin"


@authenticated()
def GetSPFSettings(call: Call, actor: Actor) -> dict[str, Any]:
    # The SPF keys are General Settings (mailsrv.directory.system_settings): whichever it has.
    return {"KeyValuePairs": call.engine.system_settings.read_requested(actor, [k for k in SYSTEM if "spf" in k])}


@authenticated()
def ListRBLs(call: Call, actor: Actor) -> dict[str, Any]:
    return {"KeyValuePairs": call.engine.content_filters.rbls(actor)}


@authenticated()
def SetAntispamOptions(call: Call, actor: Actor, newSettings: list[str | None]) -> None:
    call.engine.content_filters.set_antispam(actor, newSettings)
