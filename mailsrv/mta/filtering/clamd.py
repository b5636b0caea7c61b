"""Virus scanning with ClamAV's clamd (svcVirusAdmin `SetAntivirusOptions`): every message, from
authenticated senders too, streamed to clamd with INSTREAM over TCP or its unix socket
(`clamdaddress`). An infected message is refused at DATA with 554 5.7.1 naming the signature.

clamd down, timing out or answering garbage: `onfailure` Defer answers 451 4.7.1 (the client keeps
the message and retries), Accept takes it marked `X-Virus-Scanned: no`. A message over `maxkb` is
not sent (clamd would refuse it: StreamMaxLength) and is accepted marked so. Either way one log line.
"""
from __future__ import annotations

import asyncio
import logging
import struct
from collections.abc import Awaitable, Callable, Mapping
from typing import TYPE_CHECKING, Any

from mailsrv.directory.content_filters import DEFER, split_address
from mailsrv.mta.filtering.pipeline import Check, Findings
from mailsrv.mta.policy import Reply

if TYPE_CHECKING:  # the intake imports the filters; its types only annotate here
    from mailsrv.mta.intake import Submission

log = logging.getLogger(__name__)

_CHUNK = 256 * 1024
_MAX_ANSWER = 64 * 1024


class ClamdError(Exception):
    """clamd could not be reached, timed out, or answered something that is not a verdict."""


async def _open(address: str) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    if address.startswith("/"):
        return await asyncio.open_unix_connection(address)
    host, port = split_address(address)
    return await asyncio.open_connection(host, port)


async def _exchange(address: str, request: bytes, chunks: list[bytes], timeout: float) -> str:
    async def run() -> bytes:
        reader, writer = await _open(address)
        try:
            writer.write(request)
            for chunk in chunks:
                writer.write(struct.pack(">I", len(chunk)) + chunk)
                await writer.drain()
            if chunks:
                writer.write(struct.pack(">I", 0))
            await writer.drain()
            answer = await reader.readuntil(b"\0")
            return answer[:-1]
        finally:
            writer.close()
    try:
        answer = await asyncio.wait_for(run(), timeout)
    except (OSError, ValueError, asyncio.TimeoutError, asyncio.IncompleteReadError, asyncio.LimitOverrunError) as exc:
        raise ClamdError(f"{exc.__class__.__name__}: {exc}") from None
    try:
        return answer.decode("ascii")
    except UnicodeDecodeError:
        raise ClamdError(f"not a clamd answer: {answer[:60]!r}") from None


async def scan(address: str, content: bytes, timeout: float) -> str | None:
    """The signature clamd found in `content`, None when clean; ClamdError when it cannot tell."""
    chunks = [content[i:i + _CHUNK] for i in range(0, len(content), _CHUNK)] or [b""]
    answer = await _exchange(address, b"zINSTREAM\0", [c for c in chunks if c], timeout)
    # "stream: OK", "stream: Eicar-Signature FOUND", "INSTREAM size limit exceeded. ERROR"
    verdict = answer.removeprefix("stream: ")
    if verdict == "OK":
        return None
    if verdict.endswith(" FOUND") and verdict != answer:
        return verdict[:-len(" FOUND")].strip()
    raise ClamdError(f"clamd answered {answer[:120]!r}")


async def version(address: str, timeout: float) -> str:
    return await _exchange(address, b"zVERSION\0", [], timeout)


class ClamAvCheck(Check):
    name = "clamav"

    def __init__(self, options: Callable[[], Awaitable[Mapping[str, Any]]]) -> None:
        self.options = options  # the antivirus options (FilterOptions.antivirus)

    async def data(self, message: Submission, findings: Findings) -> Reply | None:
        options = await self.options()
        if not options["enabled"]:
            return None
        if len(message.content) > options["maxkb"] * 1024:
            log.info("clamav: %d bytes from %s not scanned (over the size limit)", len(message.content),
                     message.client_ip)
            findings.headers.append(("X-Virus-Scanned", "no (over the size limit)"))
            return None
        try:
            found = await scan(options["clamdaddress"], message.content, options["timeoutms"] / 1000)
        except ClamdError as exc:
            if options["onfailure"] == DEFER:
                log.warning("clamav: clamd at %s failed (%s); message from %s deferred", options["clamdaddress"],
                            exc, message.client_ip)
                return Reply(451, "4.7.1", "virus scanner unavailable, try again later")
            log.warning("clamav: clamd at %s failed (%s); message from %s accepted unscanned",
                        options["clamdaddress"], exc, message.client_ip)
            findings.headers.append(("X-Virus-Scanned", "no (scanner unavailable)"))
            return None
        if found is not None:
            log.info("clamav: message from %s refused: %s", message.client_ip, found)
            return Reply(554, "5.7.1", f"message infected: {found}")
        log.info("clamav: message from %s clean", message.client_ip)
        findings.headers.append(("X-Virus-Scanned", "clean (ClamAV)"))
        return None
