"""Operation handlers, in modules by ASMX service (`SERVICE` names it; svcServerAdmin is split by
subject: server_admin, server_settings, server_lists, server_listeners, server_autoclean,
server_gateways).

A handler is a module-level function named exactly like the contract operation, declaring who may
call it (services/asmx/access.py). An `@authenticated` handler is called as
`Handler(call, actor, **params)`: the dispatcher has logged the caller in from the declared
credential parameters and passes every other contract parameter; an `@anonymous` one as
`Handler(call, **params)`. Parameters come by their contract names, already converted:
string -> str | None (None when the element was absent or nil), boolean -> bool, int/long -> int,
dateTime -> datetime, guid -> str, ArrayOfString -> list[str] (empty when absent).

It returns None (only Result/ResultCode/Message) or an object whose attributes (or mapping keys)
are named like the fields of the operation's result type; nested complex values and array items are
read the same way. Result=true / ResultCode=0 are filled in unless the object supplies them. A refusal
is raised as mailsrv.core.errors.MailsrvError and becomes Result=false (LoginValidated=false for
LoginResult) with its code and message. A handler only translates: the rule lives in the engine.
"""
