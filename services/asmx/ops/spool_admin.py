"""svcSpoolAdmin: spool control (extensions.md; the rules are mailsrv.mta.spool_control's)."""
from __future__ import annotations

from typing import Any

from mailsrv.core.actor import Actor
from services.asmx.access import authenticated
from services.asmx.call import Call

SERVICE = "svcSpoolAdmin"


@authenticated()
def GetSpoolMessages(call: Call, actor: Actor, maxResults: int) -> dict[str, Any]:
    return {"Messages": [{"ID": m.id, "Sender": m.sender, "Recipients": m.recipients, "SizeBytes": m.size,
                          "Attempts": m.attempts, "NextAttempt": m.next_attempt, "LastError": m.last_error,
                          "Held": m.held} for m in call.engine.spool_control.list(actor, maxResults)]}


@authenticated()
def ResetRetryCounts(call: Call, actor: Actor, messageIDs: list[str]) -> None:
    call.engine.spool_control.reset_retries(actor, messageIDs)


@authenticated()
def HoldSpoolMessages(call: Call, actor: Actor, messageIDs: list[str]) -> None:
    call.engine.spool_control.hold(actor, messageIDs)


@authenticated()
def ReleaseSpoolMessages(call: Call, actor: Actor, messageIDs: list[str]) -> None:
    call.engine.spool_control.release(actor, messageIDs)


@authenticated()
def DeleteSpoolMessages(call: Call, actor: Actor, messageIDs: list[str]) -> None:
    call.engine.spool_control.delete(actor, messageIDs)
