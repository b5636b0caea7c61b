"""Log the caller in, call the operation's handler, and turn what it returns, or refuses, into the
operation's result.

The login is made here, once, from the parameters the handler's declaration names
(services/asmx/access.py); a refused login is a MailsrvError like any other refusal. The login and
the handler use the database, so they run in this module's thread pool, but for a quick call's
(services.asmx.access.Access.quick), run on the event loop's thread (mailsrv.store.db.Store.run_read). Their outcome is filled in
as services/asmx/ops/__init__.py promises: a result type carrying `ResultCode` gets Result
(LoginValidated for LoginResult) = true and ResultCode = 0 unless the handler supplied them, and a
MailsrvError becomes Result=false with its code and message. A result type that cannot express a
refusal (an array result such as GetMigrationStatus's, or a void operation) answers a MailsrvError
with a client fault carrying the message instead. Any other exception propagates: the caller logs
it and answers with a generic server fault.
"""
from __future__ import annotations

import asyncio
import re
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from mailsrv.core import events, metrics
from mailsrv.core.errors import MailsrvError
from services.asmx.access import NOT_QUICK
from services.asmx.call import Call
from services.asmx.codec import check_keys, member
from services.asmx.contract import ComplexType, Operation, Service
from services.asmx.faults import RequestError
from services.asmx.registry import BoundService

# The threads every call's login and handler run in (as many as anyio's default limit, which
# Starlette's run_in_threadpool uses). asyncio's own hand-over to a pool costs a third of
# run_in_threadpool's per call (no capacity limiter, no cancel scope), and each call pays it once.
_WORKERS = ThreadPoolExecutor(max_workers=40, thread_name_prefix="asmx")


def _outcome_type(service: Service, op: Operation) -> tuple[ComplexType, str] | None:
    """The result type and its status field, when the result reports an outcome."""
    if op.result is None or op.result.simple:
        return None
    complex_type = service.types[op.result.type]
    status = complex_type.outcome_status
    return (complex_type, status) if status else None


def _success(service: Service, op: Operation, returned: Any) -> Any:
    outcome = _outcome_type(service, op)
    if outcome is None:
        return returned
    complex_type, status = outcome
    check_keys(complex_type, returned)
    if returned is None:
        filled = {}
    elif type(returned) is dict:
        # Its keys are the type's (check_keys): copied over every field's None, not looked up
        # field by field (~23 for a domain's settings).
        filled = dict.fromkeys(complex_type.field_names)
        filled.update(returned)
    else:
        filled = {f.name: member(returned, f.name) for f in complex_type.fields}
    if filled.get(status) is None:
        filled[status] = True
    if filled.get("ResultCode") is None:
        filled["ResultCode"] = 0
    return filled


def _refusal(service: Service, op: Operation, error: MailsrvError) -> Any:
    outcome = _outcome_type(service, op)
    if outcome is None:
        raise RequestError(error.message)
    return {outcome[1]: False, "ResultCode": int(error.code), "Message": error.message}


# Operations that change nothing, by their names' first word: logged at DEBUG only.
_READS = re.compile(r"^(Get|List|Request|Is|Check|Validate|Login|Authenticate|Test|Ping|Can|Has|Search|Find)"
                    r"(?![a-z])")
# Parameters that name the object an operation works on; anything that may carry a secret is
# never written (passwords, keys, tokens, message bodies), whatever its name also says.
_OBJECT = re.compile(r"domain|user|email|address|alias|list|name|login|messageid|group|gateway|ip", re.IGNORECASE)
_SECRET = re.compile(r"pass|secret|key|token|hash|body|content|signature|cert", re.IGNORECASE)


def _objects(params: dict[str, Any], credentials: tuple[str, str] | None) -> dict[str, str]:
    """The object-naming parameters of a call, for its log line (short text values only)."""
    named: dict[str, str] = {}
    for name, value in params.items():
        if name in (credentials or ()) or not _OBJECT.search(name) or _SECRET.search(name):
            continue
        if isinstance(value, str) and value and len(value) <= 255:
            named[name] = value
    return named


async def invoke(bound: BoundService, op: Operation, params: dict[str, Any], call: Call) -> Any:
    """Log in and run the handler (in a worker thread unless quick); return the value to serialise as the
    operation's result. Each call is logged (who, what, on which objects; mailsrv.core.events) and measured."""
    started = time.perf_counter()
    access, handler = bound.access[op.name], bound.handlers[op.name]
    code = 0
    try:
        # A quick call on the loop's thread: the hand-over to a worker and back cost as much CPU as
        # the rest of the call (~65 us of ~140 for GetEdition). Its reads of PostgreSQL are awaited
        # on the loop (Store.run_read), which serves other requests meanwhile.
        returned = (await call.engine.auth.store.run_read(access.run_quick, handler, call, params)
                    if access.quick else NOT_QUICK)
        if returned is NOT_QUICK:
            returned = await asyncio.get_running_loop().run_in_executor(_WORKERS, access.run, handler, call, params)
    except MailsrvError as error:
        code = int(error.code)
        return _refusal(bound.contract, op, error)
    except Exception:
        code = -1  # a server fault
        raise
    finally:
        service = bound.contract.name
        metrics.soap_call(service, op.name, code, time.perf_counter() - started)
        event = "admin_read" if _READS.match(op.name) else "admin"
        if events.is_enabled(event):
            who = params.get(access.credentials[0]) if access.credentials else None
            fields: dict[str, Any] = {"by": who or "anonymous", "ip": call.client_ip, "service": service,
                                      "operation": op.name}
            for name, value in _objects(params, access.credentials).items():
                fields.setdefault(name, value)
            events.emit(event, **fields, result=code)
    return _success(bound.contract, op, returned)
