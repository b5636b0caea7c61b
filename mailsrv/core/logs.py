"""Where and how the process logs (`[log]`): Postfix-like text or JSON lines, to standard error or a
file reopened on SIGHUP (`reopen`), at the configured level. The events themselves and their
fields: mailsrv.core.events.
"""
from __future__ import annotations

import json
import logging
import re
import sys
import time
from typing import Any

from mailsrv.core.config import LogConfig

# Fields written <between angle brackets> or [between square brackets] in text lines, as Postfix
# writes addresses and client IPs; `reply` follows `status` in parentheses.
_ADDRESSES = frozenset({"from", "to", "login", "orig_to"})
_IPS = frozenset({"ip"})
_TRANSLATE = {code: f"\\x{code:02x}" for code in range(32)} | {0x7f: "\\x7f", ord("\\"): "\\\\"}


_UNCLEAN = re.compile(r"[\x00-\x1f\x7f\\]")


def _clean(value: Any) -> str:
    # Clients choose logins and addresses: no control character may end a line or forge another.
    text = str(value)
    return text if _UNCLEAN.search(text) is None else text.translate(_TRANSLATE)  # one C scan mostly


_second: tuple[int, str] = (-1, "")  # the last second _stamp wrote out, and how


def _stamp(record: logging.LogRecord) -> str:
    # Many lines a second: the date and time of day are worked out once a second, not per line.
    global _second
    second = int(record.created)
    micros = round((record.created - second) * 1e6)  # rounded to the microsecond, as datetime does
    if micros == 1_000_000:
        second, micros = second + 1, 0
    if _second[0] != second:
        _second = (second, time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(second)))
    return f"{_second[1]}.{micros // 1000:03d}Z"


def _text_fields(fields: dict[str, Any]) -> str:
    parts: list[str] = []
    for key, value in fields.items():
        if key == "reply" or value is None:
            continue
        if key in _ADDRESSES:
            parts.append(f"{key}=<{value!s}>")
        elif key in _IPS:
            parts.append(f"{key}=[{value!s}]")
        elif key == "status" and fields.get("reply"):
            parts.append(f"status={value!s} ({fields['reply']!s})")
        else:
            parts.append(f"{key}={value!s}")
    # Cleaned once, the whole line: the names and marks around the values have no character that
    # _clean changes, so this is each value cleaned, for one scan instead of one a field.
    return _clean(", ".join(parts))


class TextFormatter(logging.Formatter):
    """`<time> mailsrv[<pid>]: <queue id or event>: key=value, ...`; other records as
    `<time> mailsrv[<pid>]: [<level>: ]<logger>: <message>`."""

    def format(self, record: logging.LogRecord) -> str:
        head = f"{_stamp(record)} mailsrv[{record.process}]: "
        event = getattr(record, "event", None)
        if event is not None:
            return head + f"{record.queue_id or event}: {_text_fields(record.fields)}"  # type: ignore[attr-defined]
        level = "" if record.levelno <= logging.INFO else f"{record.levelname.lower()}: "
        text = head + f"{level}{record.name}: {_clean(record.getMessage())}"
        if record.exc_info:
            text += "\n" + self.formatException(record.exc_info)
        return text


class JsonFormatter(logging.Formatter):
    """One JSON object per line: time, pid, level, event (or logger and message), queue_id, fields."""

    def format(self, record: logging.LogRecord) -> str:
        line: dict[str, Any] = {"time": _stamp(record), "pid": record.process, "level": record.levelname.lower()}
        event = getattr(record, "event", None)
        if event is not None:
            line["event"] = event
            if record.queue_id:  # type: ignore[attr-defined]
                line["queue_id"] = record.queue_id  # type: ignore[attr-defined]
            line.update((key, value) for key, value in record.fields.items()  # type: ignore[attr-defined]
                        if value is not None)  # a field left out, as in text lines
        else:
            line["logger"] = record.name
            line["message"] = record.getMessage()
            if record.exc_info:
                line["exception"] = self.formatException(record.exc_info)
        return json.dumps(line, ensure_ascii=False, default=str)


class _ReopenableFile(logging.FileHandler):
    """A file handler that `reopen` points at the file of that name now (after logrotate moved it)."""

    def reopen(self) -> None:
        self.acquire()
        try:
            if self.stream is not None:
                self.stream.close()
            self.stream = self._open()
        finally:
            self.release()


_handler: logging.Handler | None = None


def configure(config: LogConfig) -> None:
    """The process's logging as `[log]` says; replaces any earlier setup (a forked worker keeps its
    parent's, file included)."""
    global _handler
    handler: logging.Handler = (_ReopenableFile(config.file, encoding="utf-8", delay=False) if config.file
                                else logging.StreamHandler(sys.stderr))
    handler.setFormatter(JsonFormatter() if config.format == "json" else TextFormatter())
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
        old.close()
    root.addHandler(handler)
    root.setLevel(config.level)
    # Neither format shows where a line was logged from: spare every record the stack walk that
    # finds it (the logging HOWTO's "Optimization": `logging._srcfile = None`) and the thread names.
    logging._srcfile = None  # type: ignore[attr-defined]
    logging.logThreads = False
    logging.logMultiprocessing = False
    _handler = handler


def reopen() -> None:
    """SIGHUP: reopen the log file, if logging to one."""
    if isinstance(_handler, _ReopenableFile):
        _handler.reopen()
