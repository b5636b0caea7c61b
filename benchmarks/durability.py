"""Nothing acknowledged is lost when the server is killed: SMTP acceptance under SIGKILL.

    .venv/bin/python benchmarks/durability.py [--messages 1000] [--connections 8] [--kill-after 300]
                                              [--database-url URL]

Starts `mailsrv serve` on a fresh data directory (SMTP and web on free loopback ports), submits
--messages messages over --connections concurrent SMTP sessions into one mailbox, each carrying a
unique `X-Sequence` header, and SIGKILLs the server once --kill-after DATA commands have been
answered 250. It restarts the server and the clients send every message not yet acknowledged
again, as a sending MTA would; then it waits until the spool is empty (GetSpoolMessageCount) and
counts the Maildir:

    acknowledged N, delivered M, lost L of the acknowledged, duplicates D

lost: acknowledged sequence numbers not in the Maildir (must be 0: a 250 means durably spooled);
duplicates: numbers delivered more than once (allowed: a message whose 250 the kill swallowed is
sent again). Exit status 1 when anything acknowledged was lost.
"""
from __future__ import annotations

import argparse
import collections
import re
import smtplib
import sys
import tempfile
import threading
from pathlib import Path

from mail_bench import DOMAIN, USER, Mailsrv, maildir, maildir_files, provision

_SEQUENCE = re.compile(rb"^X-Sequence: (\d+)\r?$", re.MULTILINE)


def message(number: int) -> bytes:
    return (f"From: sender@client.example\r\nTo: {USER}@{DOMAIN}\r\nSubject: durability {number}\r\n"
            f"Message-ID: <durability-{number}@client.example>\r\nX-Sequence: {number}\r\n\r\n"
            f"message {number}\r\n").encode()


class Submission:
    """The shared work list of the client threads and what the server acknowledged."""

    def __init__(self, total: int, kill_after: int, on_kill: threading.Event) -> None:
        self.pending = collections.deque(range(1, total + 1))
        self.acknowledged: set[int] = set()
        self.kill_after = kill_after
        self.on_kill = on_kill
        self.lock = threading.Lock()

    def take(self) -> int | None:
        with self.lock:
            return self.pending.popleft() if self.pending and not self.on_kill.is_set() else None

    def give_back(self, number: int) -> None:
        with self.lock:
            self.pending.append(number)

    def acknowledge(self, number: int) -> None:
        with self.lock:
            self.acknowledged.add(number)
            if len(self.acknowledged) >= self.kill_after:
                self.on_kill.set()


def client(port: int, work: Submission) -> None:
    """Send until the work list is empty or the kill was ordered; a message without a 250 goes back."""
    try:
        smtp = smtplib.SMTP("127.0.0.1", port, local_hostname="client.example", timeout=60)
    except OSError:
        return
    with smtp:
        while (number := work.take()) is not None:
            try:
                smtp.sendmail("sender@client.example", [f"{USER}@{DOMAIN}"], message(number))
            except (smtplib.SMTPException, OSError):
                work.give_back(number)  # no 250: the sender must try again
                return
            work.acknowledge(number)


def submit(server: Mailsrv, work: Submission, connections: int) -> None:
    threads = [threading.Thread(target=client, args=(server.smtp_port, work)) for _ in range(connections)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--messages", type=int, default=1000)
    parser.add_argument("--connections", type=int, default=8)
    parser.add_argument("--kill-after", type=int, default=300)
    parser.add_argument("--database-url", default="")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory(prefix="mailsrv-durability-") as tmp:
        data_dir = Path(tmp).resolve()
        server = Mailsrv(provision(data_dir, args.database_url))
        killed = threading.Event()
        work = Submission(args.messages, args.kill_after, killed)
        server.start()
        # The kill comes from a watcher, not from a client thread, so that it lands while the
        # other sessions are mid-transaction.
        watcher = threading.Thread(target=lambda: (killed.wait(), server.kill()))
        watcher.start()
        submit(server, work, args.connections)
        killed.set()  # in case fewer than --kill-after messages were acknowledged at all
        watcher.join()
        before_kill = len(work.acknowledged)

        server.start()
        killed.clear()
        work.kill_after = args.messages + 1  # no second kill
        submit(server, work, args.connections)
        waited = server.wait_until_spool_empty()
        server.stop()

        delivered = collections.Counter(
            int(number) for path in maildir_files(maildir(data_dir)) for number in _SEQUENCE.findall(path.read_bytes()))
        lost = work.acknowledged - set(delivered)
        duplicates = sum(count - 1 for count in delivered.values() if count > 1)
        print(f"killed after {before_kill} acknowledgements; spool empty {waited:.1f} s after the last submission")
        print(f"acknowledged {len(work.acknowledged)}, delivered {sum(delivered.values())}, "
              f"lost {len(lost)} of the acknowledged, duplicates {duplicates}")
        return 1 if lost else 0


if __name__ == "__main__":
    sys.exit(main())
