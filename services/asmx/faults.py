"""The ways a request can fail, shared by every binding (each renders them in its own form: a SOAP
fault, or ASP.NET's HTTP 500 text/plain for the GET/POST bindings)."""
from __future__ import annotations


class RequestError(ValueError):
    """The request cannot be read as a call of an operation; the message is safe to return.

    `code` is the SOAP 1.1 fault code; SOAP 1.2 translates it (Client -> Sender)."""

    code = "Client"


class VersionMismatch(RequestError):
    """A SOAP envelope of the other SOAP version than the Content-Type announced."""

    code = "VersionMismatch"


class ResultShapeError(TypeError):
    """A handler returned something its result type cannot hold: our bug, never the caller's."""


# What the caller learns about an unexpected error: nothing that could leak paths or internals.
SERVER_ERROR = "Server was unable to process request."
