"""The text log line's fields (mailsrv.core.logs): cleaned as a whole line, they are what cleaning
each value gives, so no client-chosen value can end a line or forge another."""
from __future__ import annotations

import random

from mailsrv.core.logs import _clean, _text_fields


def each_value_cleaned(fields: dict[str, object]) -> str:
    """The rule field by field, as the line was first built."""
    parts = []
    for key, value in fields.items():
        if key == "reply" or value is None:
            continue
        if key in ("from", "to", "login", "orig_to"):
            parts.append(f"{key}=<{_clean(value)}>")
        elif key == "ip":
            parts.append(f"{key}=[{_clean(value)}]")
        elif key == "status" and fields.get("reply"):
            parts.append(f"status={_clean(value)} ({_clean(fields['reply'])})")
        else:
            parts.append(f"{key}={_clean(value)}")
    return ", ".join(parts)


def test_control_characters_and_backslashes_are_escaped_inside_their_field():
    line = _text_fields({"to": "a\r\nb@x.test", "ip": "192.0.2.7", "status": "sent", "reply": "ok\\\x7f", "size": 4})
    assert line == "to=<a\\x0d\\x0ab@x.test>, ip=[192.0.2.7], status=sent (ok\\\\\\x7f), size=4"


def test_the_whole_line_cleaned_is_each_value_cleaned():
    rng = random.Random(7)
    alphabet = "ab@.<>[]()=, \\\r\n\t\x00\x1b\x7f\u00e9"
    keys = ["from", "to", "orig_to", "login", "ip", "status", "reply", "relay", "size", "delay", "path"]
    for _ in range(5000):
        fields: dict[str, object] = {}
        for key in rng.sample(keys, rng.randint(0, len(keys))):
            fields[key] = rng.choice([None, rng.randint(0, 10**6), rng.random(),
                                      "".join(rng.choice(alphabet) for _ in range(rng.randint(0, 12)))])
        assert _text_fields(fields) == each_value_cleaned(fields), fields
