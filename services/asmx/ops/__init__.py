"""Operation handlers, one module per ASMX service (`SERVICE` names it).

A handler is a module-level function named exactly like the contract operation, called as
`Handler(call, **params)` with every contract parameter by its contract name, already converted:
string -> str | None (None when the element was absent or nil), boolean -> bool, int/long -> int,
dateTime -> datetime, guid -> str, ArrayOfString -> list[str] (empty when absent).

It returns None (only Result/ResultCode/Message) or an object whose attributes (or mapping keys)
are named like the fields of the operation's result type; nested complex values and array items are
read the same way. Result=true / ResultCode=0 are filled in unless the object supplies them. A refusal
is raised as mailsrv.core.errors.MailsrvError and becomes Result=false (LoginValidated=false for
LoginResult) with its code and message. A handler only translates: the rule lives in the engine.
"""
