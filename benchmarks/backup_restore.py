"""`mailsrv backup` while SMTP mail arrives, then `mailsrv restore`: how long each takes, and what
the restored store counts.

    .venv/bin/python benchmarks/backup_restore.py [--messages 5000] [--database-url URL
                                                   --restore-database-url URL2]

One `mailsrv serve` (benchmarks/mail_bench.py, one worker) takes --messages messages of about 3 KB
over one SMTP connection into one mailbox; then a second connection keeps sending while
`mailsrv backup` runs, and stops when it ends. `mailsrv restore` then builds a new data directory
(and, for PostgreSQL, fills --restore-database-url, which must exist and be empty). Printed: the
seconds of each command (whole processes: start-up included), the files and bytes copied, and the
restored `mailsrv stats` against the messages acknowledged before and after the backup.
"""
from __future__ import annotations

import json
import smtplib
import sys
import tempfile
import threading
import time
from pathlib import Path

from mail_bench import DOMAIN, USER, Mailsrv, command_line, mailsrv, provision

BODY = "From: far@away.example\r\nSubject: bench\r\n\r\n" + ("x" * 76 + "\r\n") * 40


def command(*args: str) -> tuple[float, dict]:
    started = time.monotonic()
    done = mailsrv(*args, "--json", capture_output=True, text=True)
    if done.returncode != 0:
        sys.exit(done.stderr)
    return time.monotonic() - started, json.loads(done.stdout)


def main() -> None:
    parser = command_line(__doc__, messages=5000)
    parser.add_argument("--restore-database-url", default="")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as scratch:
        root = Path(scratch)
        (root / "data").mkdir()
        config = provision(root / "data", args.database_url, workers=1)
        server = Mailsrv(config)
        server.start()
        try:
            with smtplib.SMTP("127.0.0.1", server.smtp_port) as smtp:
                for _ in range(args.messages):
                    smtp.sendmail("far@away.example", [f"{USER}@{DOMAIN}"], BODY)
            acknowledged = [args.messages]
            stop = threading.Event()

            def load() -> None:
                with smtplib.SMTP("127.0.0.1", server.smtp_port) as smtp:
                    while not stop.is_set():
                        smtp.sendmail("far@away.example", [f"{USER}@{DOMAIN}"], BODY)
                        acknowledged[0] += 1

            sender = threading.Thread(target=load)
            sender.start()
            before = acknowledged[0]
            backup_s, manifest = command("backup", str(root / "backup"), "--config", str(config))
            after = acknowledged[0]
            stop.set()
            sender.join()
        finally:
            server.stop()
        restore = ["restore", str(root / "backup"), "--data-dir", str(root / "restored")]
        restore_s, restored = command(*restore, *(["--database-url", args.restore_database_url]
                                                  if args.restore_database_url else []))
        _, stats = command("stats", DOMAIN, "--config", restored["config"])
    print(f"{'PostgreSQL' if args.database_url else 'SQLite'}, {args.messages} messages before the backup")
    print(f"backup:  {backup_s:6.2f} s  {manifest['files']} files, {manifest['bytes'] / 1e6:.1f} MB "
          f"(+ the database), {after - before} messages acknowledged meanwhile")
    print(f"restore: {restore_s:6.2f} s")
    print(f"restored counters: {stats['messages_received']} messages received "
          f"(acknowledged: {before} before the backup, {after} at its end)")


if __name__ == "__main__":
    main()
