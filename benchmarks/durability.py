"""Nothing acknowledged is lost when the server is killed: SMTP acceptance under SIGKILL.

    .venv/bin/python benchmarks/durability.py [--messages 1000] [--connections 8] [--kill-after 300]
                                              [--database-url URL] [--fault-point NAME]

Starts `mailsrv serve` on a fresh data directory (SMTP and web on free loopback ports) and submits
up to --messages messages, each with a unique `X-Sequence` header, over --connections concurrent
SMTP sessions into one mailbox. Once --kill-after DATA commands have been answered 250 it SIGKILLs
the server, mid-transaction for the other sessions. It restarts the server on the same data, waits
until the spool is empty (GetSpoolMessageCount) and counts the Maildir:

    lost                        acknowledged numbers missing from the Maildir (must be 0)
    duplicates                  copies beyond the first of any number (must be 0: exactly-once delivery)
    unacknowledged, delivered   sent but never answered 250, yet delivered (allowed: the kill came
                                between the commit and the reply; a real client would send it again)

    counted                     MessagesReceived of the mailbox (the store's traffic counters) against
                                the messages in its Maildir (must be equal)

The restarted server releases at start what the killed process had claimed (same host, process
gone: mailsrv.mta.queue) and delivers it at once, and finishes the deliveries at acceptance that
were committed but not yet renamed into new/ (mailsrv.mta.spool); "done" says how long after the
restart the spool and the pending renames were empty. --fault-point kills the first server at a
named point of the code instead (MAILSRV_FAULT_POINT, e.g. maildir-renames-committed: in the group
commit, after its transaction and before its renames). Exit status 1 when anything was lost,
doubled or miscounted.
"""
from __future__ import annotations

import collections
import re
import smtplib
import sys
import tempfile
import threading
import time
from pathlib import Path

from mail_bench import DOMAIN, USER, Mailsrv, command_line, maildir, maildir_files, provision
from sqlalchemy import func, select

from mailsrv.core.config import parse_config
from mailsrv.store.db import Store
from mailsrv.store.models import MaildirRename, TrafficDaily

_SEQUENCE = re.compile(rb"^X-Sequence: (\d+)\r?$", re.MULTILINE)


def message(number: int) -> bytes:
    return (f"From: sender@client.example\r\nTo: {USER}@{DOMAIN}\r\nSubject: durability {number}\r\n"
            f"Message-ID: <durability-{number}@client.example>\r\nX-Sequence: {number}\r\n\r\n"
            f"message {number}\r\n").encode()


class Submission:
    """The numbers the client threads share, and what became of each one they sent."""

    def __init__(self, total: int, kill_after: int) -> None:
        self.numbers = iter(range(1, total + 1))
        self.acknowledged: set[int] = set()
        self.unacknowledged: set[int] = set()  # DATA sent, no 250 (the connection died, or 4xx)
        self.kill_after = kill_after
        self.kill = threading.Event()
        self.lock = threading.Lock()

    def take(self) -> int | None:
        with self.lock:
            return None if self.kill.is_set() else next(self.numbers, None)

    def answered(self, number: int, ok: bool) -> None:
        with self.lock:
            (self.acknowledged if ok else self.unacknowledged).add(number)
            if len(self.acknowledged) >= self.kill_after:
                self.kill.set()


def pending_renames(store: Store) -> int:
    with store.reading() as s:
        return s.execute(select(func.count()).select_from(MaildirRename)).scalar_one()


def messages_received(store: Store) -> int:
    """MessagesReceived of the one mailbox, every day together (user_id 0 is not a mailbox)."""
    with store.reading() as s:
        return s.execute(select(func.coalesce(func.sum(TrafficDaily.messages_received), 0))
                         .where(TrafficDaily.user_id != 0)).scalar_one()


def client(port: int, work: Submission) -> None:
    """Send until the numbers run out or the server is gone."""
    with smtplib.SMTP("127.0.0.1", port, local_hostname="client.example", timeout=60) as smtp:
        while (number := work.take()) is not None:
            try:
                smtp.sendmail("sender@client.example", [f"{USER}@{DOMAIN}"], message(number))
            except (smtplib.SMTPException, OSError):
                work.answered(number, False)
                return
            work.answered(number, True)


def main() -> int:
    parser = command_line(__doc__, messages=1000, connections=8, kill_after=300)
    parser.add_argument("--fault-point", default="")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory(prefix="mailsrv-durability-") as tmp:
        data_dir = Path(tmp).resolve()
        server = Mailsrv(provision(data_dir, args.database_url))
        work = Submission(args.messages, args.kill_after)
        if args.fault_point:
            server.env = {"MAILSRV_FAULT_POINT": args.fault_point}
        server.start()
        server.env = {}
        # The kill comes from a watcher, not from a client thread, so that it lands while the
        # other sessions are mid-transaction.
        watcher = threading.Thread(target=lambda: (work.kill.wait(), server.kill()))
        watcher.start()
        clients = [threading.Thread(target=client, args=(server.smtp_port, work)) for _ in range(args.connections)]
        for thread in clients:
            thread.start()
        for thread in clients:
            thread.join()
        work.kill.set()  # should fewer than --kill-after messages have been acknowledged at all
        watcher.join()

        server.start()
        restarted = time.monotonic()
        server.wait_until_spool_empty(timeout=1200)
        store = Store(parse_config(server.config.read_text()).effective_database_url)
        while pending_renames(store):
            time.sleep(0.05)
        emptied = time.monotonic() - restarted
        server.stop()
        counted = messages_received(store)
        store.close()

        delivered = collections.Counter(
            int(number) for path in maildir_files(maildir(data_dir)) for number in _SEQUENCE.findall(path.read_bytes()))
        lost = work.acknowledged - set(delivered)
        duplicates = sum(count - 1 for count in delivered.values() if count > 1)
        late = work.unacknowledged & set(delivered)
        database = "PostgreSQL" if args.database_url.startswith("postgresql") else "SQLite"
        print(f"{database}: {args.connections} connections, SIGKILL after {len(work.acknowledged)} acknowledgements "
              f"({len(work.unacknowledged)} in flight, never answered 250); done {emptied:.1f} s after the restart")
        print(f"acknowledged {len(work.acknowledged)}, delivered {sum(delivered.values())}, lost {len(lost)}, "
              f"duplicates {duplicates}, unacknowledged but delivered {len(late)} of {len(work.unacknowledged)}, "
              f"counted {counted} (MessagesReceived) for {sum(delivered.values())} in the Maildir")
        return 1 if lost or duplicates or counted != sum(delivered.values()) else 0


if __name__ == "__main__":
    sys.exit(main())
