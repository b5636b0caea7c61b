"""IMAP on a big INBOX: mailsrv (pymap) next to Dovecot on the same machine and the same Maildir.

    .venv/bin/python benchmarks/imap_vs_dovecot.py [--messages 10000] [--fetch 100] [--rounds 3]
                                                   [--no-dovecot]

One INBOX of --messages unread messages (2-12 KB, CRLF, as local delivery writes them) is made
once and copied, so each server serves its own identical Maildir. For each server, --rounds times,
imaplib over loopback times:
  login      LOGIN (plaintext: both servers allow it from loopback)
  select     SELECT INBOX
  flags      UID FETCH 1:* (FLAGS)          (a client's first sync of the flags)
  fetch      --fetch × UID FETCH <uid> (BODY.PEEK[])   (opening messages one by one)
and, outside the totals, the cost of one command: --commands × NOOP and × UID FETCH <uid> (FLAGS),
reported in milliseconds per command (the round trip through imaplib included).
Round 1 is cold (mailsrv writes its dovecot-uidlist, Dovecot builds its index); the other rounds
are reported as their median. The ratio is mailsrv / Dovecot: below 1 mailsrv is faster.
Dovecot (Debian `dovecot-imapd`) runs from its own config file under a temp dir, on a free loopback
port, passwd-file auth holding the same argon2id hash mailsrv stores (--dovecot-passwords plain: the
password in clear, as the figures before 2026-12-05 were taken); it never touches the machine's own
configuration.
"""
from __future__ import annotations

import argparse
import imaplib
import random
import re
import shutil
import socket
import statistics
import subprocess
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path

from mailsrv.directory.passwords import hash_password

from mail_bench import DOMAIN, USER, USER_PASSWORD, Mailsrv, command_line, free_port, maildir, provision

_NOBODY = 65534
STEPS = ("login", "select", "flags", "fetch")
PER_COMMAND = ("noop", "uid-flags")


def fill_inbox(root: Path, count: int) -> None:
    rng = random.Random(4)
    filler = "The quick brown fox jumps over the lazy dog, again and again.\r\n"
    start = 1_764_000_000
    for n in range(count):
        body = filler * rng.randint(30, 190)
        content = (f"Return-Path: <sender{n % 97}@example.org>\r\nDelivered-To: {USER}@{DOMAIN}\r\n"
                   f"From: Sender {n % 97} <sender{n % 97}@example.org>\r\nTo: {USER}@{DOMAIN}\r\n"
                   f"Subject: Message number {n}\r\nDate: Mon, 24 Nov 2025 12:00:00 +0000\r\n"
                   f"Message-ID: <{n}.bench@example.org>\r\nMIME-Version: 1.0\r\n"
                   f"Content-Type: text/plain; charset=us-ascii\r\n\r\n{body}")
        (root / "new" / f"{start + n // 10}.M{(n % 10) * 1000}P{n}.bench").write_bytes(content.encode())


def measure(port: int, login: str, fetch: int, commands: int) -> dict[str, float]:
    times: dict[str, float] = {}
    t0 = time.perf_counter()
    client = imaplib.IMAP4("127.0.0.1", port, timeout=600)
    client.login(login, USER_PASSWORD)
    times["login"] = time.perf_counter() - t0
    t0 = time.perf_counter()
    typ, data = client.select("INBOX")
    times["select"] = time.perf_counter() - t0
    exists = int(data[0])
    t0 = time.perf_counter()
    typ, flags = client.uid("FETCH", "1:*", "(FLAGS)")
    times["flags"] = time.perf_counter() - t0
    uids = sorted(int(m[1]) for line in flags if (m := re.search(rb"UID (\d+)", line)))
    assert typ == "OK" and len(uids) == exists, (typ, len(uids), exists)
    picked = uids[:: max(1, len(uids) // fetch)][:fetch]
    t0 = time.perf_counter()
    for uid in picked:
        typ, data = client.uid("FETCH", str(uid), "(BODY.PEEK[])")
        assert typ == "OK" and isinstance(data[0], tuple) and b"Subject: Message number" in data[0][1]
    times["fetch"] = time.perf_counter() - t0
    t0 = time.perf_counter()
    for _ in range(commands):
        client.noop()
    times["noop"] = (time.perf_counter() - t0) / commands
    t0 = time.perf_counter()
    for n in range(commands):
        client.uid("FETCH", str(picked[n % len(picked)]), "(FLAGS)")
    times["uid-flags"] = (time.perf_counter() - t0) / commands
    client.logout()
    return times


def run_rounds(name: str, port: int, login: str, args: argparse.Namespace) -> list[dict[str, float]]:
    rounds = []
    for n in range(args.rounds):
        result = measure(port, login, args.fetch, args.commands)
        rounds.append(result)
        print(f"  {name} round {n + 1}: " + "  ".join(f"{k} {result[k]:.3f}s" for k in STEPS)
              + "  " + "  ".join(f"{k} {result[k] * 1000:.3f}ms" for k in PER_COMMAND), flush=True)
    return rounds


def mailsrv_imap(data_dir: Path) -> Mailsrv:
    """`mailsrv serve` with only web, SMTP and IMAP listeners on free loopback ports."""
    config = provision(data_dir)
    config.write_text(config.read_text().replace('imap = ""', 'imap = "127.0.0.1:0"'))
    return Mailsrv(config, needs=("web", "SMTP", "IMAP"))


def stored_password(scheme: str) -> str:
    """USER_PASSWORD as Dovecot's passwd-file stores it: "argon2id" is the very hash mailsrv keeps
    (argon2id, 19 MiB, t=2), which Dovecot verifies with libsodium, so that a login costs both
    servers the same work; "plain" is the password in clear (a cheaper login than mailsrv's)."""
    if scheme == "plain":
        return f"{{PLAIN}}{USER_PASSWORD}"
    return f"{{ARGON2ID}}{hash_password(USER_PASSWORD)}"


class Dovecot:
    """Dovecot serving `users` (all with USER_PASSWORD, stored as `stored_password(scheme)`); `mail`
    is the Maildir, in which "%n" stands for the user's name; `extra` is appended to the
    configuration (e.g. process limits)."""

    def __init__(self, tmp: Path, mail: Path | str, users: Sequence[str] = (USER,), extra: str = "",
                 scheme: str = "plain") -> None:
        self.tmp = tmp
        self.port = free_port()
        (tmp / "run").mkdir()
        stored = stored_password(scheme)
        (tmp / "passwd").write_text("".join(f"{user}:{stored}::::::\n" for user in users))
        self.config = tmp / "dovecot.conf"
        self.config.write_text(f"""
base_dir = {tmp}/run
state_dir = {tmp}/state
log_path = {tmp}/dovecot.log
protocols = imap
listen = 127.0.0.1
ssl = no
disable_plaintext_auth = no
auth_mechanisms = plain
mail_location = maildir:{mail}:INDEX={tmp}/index/%n
passdb {{
  driver = passwd-file
  args = scheme=PLAIN {tmp}/passwd
}}
userdb {{
  driver = static
  args = uid={_NOBODY} gid={_NOBODY} home={tmp}/home/%n
}}
service imap-login {{
  inet_listener imap {{
    address = 127.0.0.1
    port = {self.port}
  }}
  inet_listener imaps {{
    port = 0
  }}
}}
service stats {{
  unix_listener stats-reader {{
    mode = 0600
  }}
  unix_listener stats-writer {{
    mode = 0600
  }}
}}
{extra}""")

    def start(self) -> None:
        # Dovecot refuses to serve mail as root: its copy of the mail belongs to "nobody".
        subprocess.run(["chown", "-R", f"{_NOBODY}:{_NOBODY}", str(self.tmp)], check=True)
        subprocess.run(["dovecot", "-c", str(self.config)], check=True)
        deadline = time.monotonic() + 30
        while True:
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=1).close()
                return
            except OSError:
                if time.monotonic() > deadline:
                    raise RuntimeError(f"Dovecot did not start; see {self.tmp}/dovecot.log") from None
                time.sleep(0.1)

    def stop(self) -> None:
        subprocess.run(["doveadm", "-c", str(self.config), "stop"], check=False)


def summary(rounds: list[dict[str, float]]) -> tuple[dict[str, float], dict[str, float]]:
    cold = rounds[0]
    warm_rounds = rounds[1:] or rounds
    warm = {step: statistics.median(r[step] for r in warm_rounds) for step in (*STEPS, *PER_COMMAND)}
    return cold, warm


def main() -> None:
    parser = command_line(__doc__, None, messages=10_000, fetch=100, rounds=3, commands=200)
    parser.add_argument("--no-dovecot", action="store_true")
    parser.add_argument("--dovecot-passwords", choices=("argon2id", "plain"), default="argon2id",
                        help="how Dovecot's passwd-file stores the password: the same argon2id hash as "
                             "mailsrv's (default: a login costs both the same), or in clear")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="imap-bench-") as tmp_name:
        tmp = Path(tmp_name)
        # Dovecot's auth process runs as its own unprivileged user and must reach the passwd file.
        tmp.chmod(0o755)
        (tmp / "mailsrv").mkdir()
        mailsrv = mailsrv_imap(tmp / "mailsrv")
        inbox = maildir(tmp / "mailsrv")
        print(f"filling an INBOX with {args.messages} messages…", flush=True)
        fill_inbox(inbox, args.messages)
        results: dict[str, list[dict[str, float]]] = {}
        if not args.no_dovecot:
            dovecot_mail = tmp / "dovecot" / "Maildir"
            shutil.copytree(inbox, dovecot_mail)
            dovecot = Dovecot(tmp / "dovecot", dovecot_mail, scheme=args.dovecot_passwords)
            dovecot.start()
            try:
                results["dovecot"] = run_rounds("dovecot", dovecot.port, USER, args)
            finally:
                dovecot.stop()
        mailsrv.start()
        try:
            results["mailsrv"] = run_rounds("mailsrv", mailsrv.ports["IMAP"], f"{USER}@{DOMAIN}", args)
        finally:
            mailsrv.stop()
    print(f"\n{args.messages}-message INBOX, {args.fetch} messages fetched one by one, Dovecot's passwords "
          f"{args.dovecot_passwords}; seconds")
    header = f"{'':22}" + "".join(f"{step:>10}" for step in (*STEPS, "total"))
    print(header)
    table = {name: summary(rounds) for name, rounds in results.items()}
    for name, (cold, warm) in table.items():
        for label, row in (("cold", cold), ("warm", warm)):
            print(f"{name + ' ' + label:22}" + "".join(f"{row[s]:10.3f}" for s in STEPS)
                  + f"{sum(row[s] for s in STEPS):10.3f}")
    if "dovecot" in table:
        for index, label in ((0, "cold"), (1, "warm")):
            ours, theirs = table["mailsrv"][index], table["dovecot"][index]
            print(f"{'ratio ' + label:22}" + "".join(f"{ours[s] / theirs[s]:10.1f}" for s in STEPS)
                  + f"{sum(ours[s] for s in STEPS) / sum(theirs[s] for s in STEPS):10.1f}")
        print("ratio = mailsrv / Dovecot (goal: total within 1.5 cold, 1.2 warm)")
    print("\none command, warm (median), milliseconds")
    print(f"{'':22}" + "".join(f"{step:>10}" for step in PER_COMMAND))
    for name, (_, warm) in table.items():
        print(f"{name:22}" + "".join(f"{warm[s] * 1000:10.3f}" for s in PER_COMMAND))
    if "dovecot" in table:
        print(f"{'ratio':22}" + "".join(f"{table['mailsrv'][1][s] / table['dovecot'][1][s]:10.1f}" for s in PER_COMMAND))


if __name__ == "__main__":
    main()
