"""svcVirusAdmin: the ClamAV options (extensions.md; the rules are mailsrv.directory.content_filters',
the scanning mailsrv.mta.filtering.clamd's)."""
from __future__ import annotations

from typing import Any

from mailsrv.core.actor import Actor
from services.asmx.access import authenticated
from services.asmx.call import Call

SERVICE = "svcVirusAdmin"


@authenticated()
def GetAntivirusOptions(call: Call, actor: Actor) -> dict[str, Any]:
    return {"KeyValuePairs": call.engine.content_filters.antivirus_options(actor)}


@authenticated()
def GetClamAvSettings(call: Call, actor: Actor) -> dict[str, Any]:
    return {"KeyValuePairs": call.engine.content_filters.clamav_settings(actor)}


@authenticated()
def SetAntivirusOptions(call: Call, actor: Actor, newSettings: list[str | None]) -> None:
    call.engine.content_filters.set_antivirus(actor, newSettings)
