"""SMTP acceptance with the sender checks (SPF, DKIM verification, DMARC) on and off, in one run.

    .venv/bin/python benchmarks/sender_auth.py [--messages 2000] [--sessions 16] [--size 4096]
                                               [--ttl 300] [--database-url URL]

The same mailsrv set-up twice, one after the other: first with `spfcheck`, `dkimverify` and
`dmarcaction` off, then on (dmarcaction Reject). Every message is the same RSA-2048 DKIM-signed
message from sender@client.example, whose SPF (`ip4:127.0.0.1`), DMARC (`p=reject`) and DKIM key
records are served by a DNS server on loopback (mailsrv's `[dns] nameservers`) with a TTL of --ttl
seconds: with the checks on, each message needs an SPF, a DKIM key and a DMARC lookup (answered from
mailsrv's cache within the TTL) and an RSA verification, and passes all three. Load: --sessions threads, each an smtplib session sending its
share of --messages over one connection. Printed: accepted msg/s (messages / time until the last
250) for each run, and their ratio.
"""
from __future__ import annotations

import argparse
import smtplib
import sys
import tempfile
import threading
import time
from pathlib import Path

import dkim
from mail_bench import DOMAIN, ROOT, USER, Mailsrv, command_line, provision

sys.path.insert(0, str(ROOT / "tests"))
from dns_server import DnsServer, txt  # noqa: E402  (the tests' loopback DNS server)

SENDER = "sender@client.example"


def signed_message(size: int, dns: DnsServer) -> bytes:
    from mailsrv.directory.dkim_keys import RSA, _dkimpy_key, _new_key
    private, public = _new_key(RSA, 2048)
    dns.add({("s1._domainkey.client.example", "TXT"): [txt(f"v=DKIM1; k=rsa; p={public}")]})
    head = (f"From: Sender <{SENDER}>\r\nTo: {USER}@{DOMAIN}\r\nSubject: measured\r\n"
            "Date: Tue, 10 Mar 2026 09:30:15 +0000\r\nMessage-ID: <bench@client.example>\r\n\r\n").encode()
    body = b"".join(b"%075d\r\n" % n for n in range(max(1, (size - len(head)) // 77)))
    message = head + body
    return dkim.sign(message, b"s1", b"client.example", _dkimpy_key(private, RSA),
                     canonicalize=(b"relaxed", b"relaxed")) + message


def load(port: int, message: bytes, messages: int, sessions: int) -> float:
    """Accepted msg/s: `messages` over `sessions` concurrent connections."""
    failures: list[str] = []

    def session(count: int) -> None:
        with smtplib.SMTP("127.0.0.1", port, local_hostname="client.example", timeout=120) as smtp:
            for _ in range(count):
                try:
                    smtp.sendmail(SENDER, [f"{USER}@{DOMAIN}"], message)
                except smtplib.SMTPException as exc:
                    failures.append(str(exc))
    shares = [messages // sessions + (i < messages % sessions) for i in range(sessions)]
    threads = [threading.Thread(target=session, args=(share,)) for share in shares]
    start = time.monotonic()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    elapsed = time.monotonic() - start
    if failures:
        raise RuntimeError(f"{len(failures)} messages refused, e.g. {failures[0]}")
    return messages / elapsed


def set_sender_checks(config: Path, checks: bool) -> None:
    """SPF, DKIM verification and DMARC (action Reject) on, or all three off, in the store."""
    from mailsrv.core.config import parse_config
    from mailsrv.server import MailServer
    server = MailServer(parse_config(config.read_text()))
    try:
        server.system_settings.update({"spfcheck": checks, "dkimverify": checks,
                                       "dmarcaction": "Reject" if checks else "Off"})
    finally:
        server.close()


def run(args: argparse.Namespace, tmp: Path, dns: DnsServer, message: bytes, checks: bool) -> float:
    data_dir = tmp / ("on" if checks else "off")
    data_dir.mkdir()
    if args.database_url:  # each run starts on an empty database
        from mailsrv.store.db import Store
        store = Store(args.database_url)
        store.drop_all()
        store.close()
    config = provision(data_dir, args.database_url)
    config.write_text(config.read_text() + f'[dns]\nnameservers = ["{dns.address}"]\n')
    set_sender_checks(config, checks)
    mailsrv = Mailsrv(config)
    mailsrv.start()
    try:
        return load(mailsrv.smtp_port, message, args.messages, args.sessions)
    finally:
        mailsrv.stop()


def main() -> int:
    parser = command_line(__doc__, messages=2000, sessions=16, size=4096)
    parser.add_argument("--ttl", type=int, default=300, help="the records' TTL (0: every message asks the DNS)")
    args = parser.parse_args()
    dns = DnsServer({("client.example", "TXT"): [txt("v=spf1 ip4:127.0.0.1 -all")],
                     ("_dmarc.client.example", "TXT"): [txt("v=DMARC1; p=reject")]}, ttl=args.ttl)
    message = signed_message(args.size, dns)
    try:
        with tempfile.TemporaryDirectory(prefix="mailsrv-sender-auth-") as name:
            off = run(args, Path(name), dns, message, checks=False)
            on = run(args, Path(name), dns, message, checks=True)
    finally:
        dns.close()
    print(f"checks off: accepted {off:.0f} msg/s; SPF + DKIM verify + DMARC on: accepted {on:.0f} msg/s; "
          f"on / off {on / off:.2f} ({args.messages} x {len(message)} B, {args.sessions} sessions)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
