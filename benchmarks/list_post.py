"""One post to a large mailing list, next to plain delivery of as many messages, in the same run.

    .venv/bin/python benchmarks/list_post.py [--subscribers 10000] [--domains 100] [--database-url URL]

One MailServer in this process. Half the domains are local (their subscribers are mailboxes, each
with a Maildir), half are remote: a DNS server on loopback sends them to an SMTP sink (aiosmtpd,
answers at once) on 127.0.0.1. The list `team@` the first local domain has every address subscribed.

    phase 1   one post, taken as SMTP takes it (Intake.check_recipient and submit: the list server
              checks the sender, rewrites the post and spools it once for every subscriber); the
              queue runs until every copy is in its Maildir or at the sink
    phase 2   one plain message per subscriber address (Spool.enqueue, as SMTP acceptance does, 500
              at a time); the queue runs until all are delivered
Printed: each phase's time (acceptance included) and copies/s. Without --database-url an SQLite file in
a temporary directory; with it (e.g. PostgreSQL) every table in that database is dropped first and at
the end.
"""
from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import os
import sys
import tempfile
import time
from pathlib import Path

from aiosmtpd.controller import Controller
from aiosmtpd.smtp import SMTP, Envelope, Session
from sqlalchemy import insert, select

from mailsrv.core import settings
from mailsrv.core.config import parse_config
from mailsrv.directory.passwords import hash_password
from mailsrv.mta.intake import Submission
from mailsrv.mta.spool import LOCAL, REMOTE, IncomingMessage, NewRecipient, Spool
from mailsrv.server import MailServer
from mailsrv.store.db import Store
from mailsrv.store.models import SUBSCRIBER, Domain, ListMember, MailingList, User

from mail_bench import ADMIN, ROOT, command_line, free_port

sys.path.insert(0, str(ROOT / "tests"))
from dns_server import DnsServer  # noqa: E402  (the tests' DNS server, on loopback UDP)

CONTENT = (b"From: Poster <poster@client.example>\r\nTo: team@l0.example\r\nSubject: news\r\n"
           b"Message-ID: <post@client.example>\r\n\r\n" + (b"x" * 76 + b"\r\n") * 13)


class Sink:
    def __init__(self) -> None:
        self.received = 0  # recipients, not transactions

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        self.received += len(envelope.rcpt_tos)
        return "250 2.0.0 stored"


def populate(server: MailServer, local: list[str], remote: list[str], per_domain: int) -> list[NewRecipient]:
    """Local domains with `per_domain` users each, the list with every address subscribed; each address
    as a plain message's recipient."""
    admin = server.login(*ADMIN, "127.0.0.1")
    for name in local:
        server.domains.add(admin, name, "", "postmaster", "Domain-pass-1", "", "", {})
    password = hash_password("User-pass-123")
    user_settings = settings.defaults(settings.USER)
    with server.store.session() as s:
        domains = dict(s.execute(select(Domain.name, Domain.id)).all())
        paths = dict(s.execute(select(Domain.name, Domain.path)).all())
        s.execute(insert(User), [dict(domain_id=domains[d], name=f"u{i}", password_hash=password,
                                      settings=user_settings) for d in local for i in range(per_domain)])
        team = MailingList(domain_id=domains[local[0]], name="team", moderator="", description="bench",
                           settings={"whocanpost": "anyone", "prependsubject": True})
        s.add(team)
        s.flush()
        addresses = [f"u{i}@{d}" for d in local + remote for i in range(per_domain)]
        s.execute(insert(ListMember), [dict(list_id=team.id, kind=SUBSCRIBER, address=a, bounces=0,
                                            disabled=False) for a in addresses])
        ids = {(name, d): uid for uid, name, d in s.execute(
            select(User.id, User.name, Domain.name).join(Domain, Domain.id == User.domain_id))}
    for d in local:
        for i in range(per_domain):
            server.disk.create_mailbox(paths[d], f"u{i}")
    return [NewRecipient(a, a, LOCAL, ids[tuple(a.split("@"))]) if a.split("@")[1] in local
            else NewRecipient(a, a, REMOTE) for a in addresses]


def delivered_locally(server: MailServer, local: list[str], per_domain: int) -> int:
    with server.store.session() as s:
        paths = dict(s.execute(select(Domain.name, Domain.path)).all())
    return sum(len(os.listdir(server.disk.maildir(paths[d], f"u{i}") / "new"))
               for d in local for i in range(per_domain))


async def until_delivered(server: MailServer, sink: Sink, remote_target: int) -> None:
    stop = asyncio.Event()
    running = asyncio.create_task(server.delivery.run(stop))
    while sink.received < remote_target or await asyncio.to_thread(server.spool.count):
        await asyncio.sleep(0.02)
        if running.done():
            running.result()
            raise RuntimeError("the queue stopped")
    stop.set()
    await running


async def post(server: MailServer) -> None:
    intake = server.intake
    await intake.begin()
    client = intake.client("127.0.0.1", None)
    resolution = await intake.check_recipient(client, "poster@client.example", None, [], "team@l0.example",
                                              len(CONTENT))
    outcome = await intake.submit(Submission(
        sender="poster@client.example", content=CONTENT, accepted=[("team@l0.example", resolution)],
        own_domain=None, actor=None, client_ip="127.0.0.1", helo="client.example",
        trace=lambda message_id, now: f"Received: from client.example; id {message_id}\r\n"))
    assert isinstance(outcome, str), outcome


async def plain(server: MailServer, recipients: list[NewRecipient]) -> None:
    for start in range(0, len(recipients), 500):
        await asyncio.gather(*(server.spool.enqueue(IncomingMessage(
            id=Spool.new_id(), sender="poster@client.example", content=CONTENT,
            received_at=dt.datetime.now(dt.timezone.utc), client_ip="127.0.0.1", helo="client.example",
            trace_header="", recipients=[r])) for r in recipients[start:start + 500]))


async def main_async(args: argparse.Namespace, data_dir: Path) -> None:
    port = free_port()
    sink = Sink()
    controller = Controller(sink, hostname="127.0.0.1", port=port)
    controller.start()
    half = args.domains // 2
    local = [f"l{i}.example" for i in range(half)]
    remote = [f"r{i}.example" for i in range(args.domains - half)]
    per_domain = args.subscribers // args.domains
    records = {("mx.sink.example", "A"): ["127.0.0.1"]}
    records.update({(d, "MX"): ["10 mx.sink.example."] for d in remote})
    dns = DnsServer(records)
    server = MailServer(parse_config(
        f'data_dir = "{data_dir}"\ndatabase_url = "{args.database_url}"\n'
        f'[dns]\nnameservers = ["{dns.address}"]\n[smtp]\nhostname = "mx.bench.example"\n'
        f'[delivery]\nremote_port = {port}\n'))
    try:
        server.admins.reset_primary(*ADMIN)
        recipients = await asyncio.to_thread(populate, server, local, remote, per_domain)
        remote_count = sum(r.kind == REMOTE for r in recipients)
        started = time.monotonic()
        await post(server)
        accepted = time.monotonic() - started
        await until_delivered(server, sink, remote_count)
        listed = time.monotonic() - started
        assert await asyncio.to_thread(delivered_locally, server, local, per_domain) == len(recipients) - remote_count
        started = time.monotonic()
        await plain(server, recipients)
        enqueued = time.monotonic() - started
        await until_delivered(server, sink, 2 * remote_count)
        plain_time = time.monotonic() - started
    finally:
        await server.spool.close()
        server.remote_delivery.abort()
        if args.database_url:
            server.store.drop_all()
        server.close()
        controller.stop()
        dns.close()
    n = len(recipients)
    print(f"database            {'SQLite' if not args.database_url else args.database_url.split('@')[-1]}")
    print(f"subscribers         {n} over {args.domains} domains ({n - remote_count} local Maildirs, "
          f"{remote_count} at the SMTP sink)")
    print(f"list post           {listed:7.2f} s  ({n / listed:8.1f} copies/s; accepted and spooled in "
          f"{accepted:.2f} s)")
    print(f"plain messages      {plain_time:7.2f} s  ({n / plain_time:8.1f} copies/s; enqueued in {enqueued:.2f} s)")


def main() -> None:
    parser = command_line(__doc__, subscribers=10_000, domains=100)
    args = parser.parse_args()
    if args.database_url:
        Store(args.database_url).drop_all()
    with tempfile.TemporaryDirectory() as tmp:
        asyncio.run(main_async(args, Path(tmp) / "data"))


if __name__ == "__main__":
    main()
