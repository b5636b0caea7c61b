"""The address of MAIL and RCPT as the SMTP listener reads it (mailsrv.access.smtp): the same address
and parameters as aiosmtpd's own parse, for usual addresses, which take a shortcut, and for the
rest, on generated command arguments; malformed where aiosmtpd's parse crashed (an unclosed domain
literal)."""
from __future__ import annotations

import random
from types import SimpleNamespace

import pytest
from aiosmtpd.smtp import SMTP

from mailsrv.access.smtp import MailsrvSMTP

USUAL = ["<bob@a.test>", "<bob@a.test> SIZE=4096", "<Bob.Smith+tag@Mail-1.A.test>\tBODY=8BITMIME",
         "<a@b>", "<o'hara@x.test>   ", "<a@b> (a comment) SIZE=1", "< bob@a.test>", "<bob@[192.0.2.1]>",
         "<\"quoted name\"@a.test>", "<bob@a..test>", "<.bob@a.test>", "<>", "bob@a.test SIZE=1", "<bob@a.test",
         "<bøb@a.test>", "<bob@a_b.test>", "<bob@[192.0.2.1>"]


def generated(count: int) -> list[str]:
    rng = random.Random(5321)
    blanks_and_more = " \t()<>@=SIZE1"
    out = []
    for _ in range(count):
        local = "".join(rng.choice("ab.-+_'\"") for _ in range(rng.randint(0, 5)))
        domain = "".join(rng.choice("ab.-_[]") for _ in range(rng.randint(0, 5)))
        out.append(f"<{local}@{domain}>" + "".join(rng.choice(blanks_and_more) for _ in range(rng.randint(0, 4))))
    return out


@pytest.mark.parametrize("limit", [0, 3])
def test_the_address_and_parameters_are_aiosmtpds(limit):
    session = SimpleNamespace(local_part_limit=limit)
    for arg in USUAL + generated(20_000):
        try:
            expected = SMTP._getaddr(session, arg)  # type: ignore[arg-type]
        except AttributeError:  # the email package's parser on an unclosed "["
            expected = (None, None)
        assert MailsrvSMTP._getaddr(session, arg) == expected, arg  # type: ignore[arg-type]
