"""What the transaction of the spool's group commit of direct deliveries costs in CPU, in an ORM
session (`Store.session`) and in the driver's own transaction (`Store.driver_transaction`), in turn
in one process: the same statements as mailsrv.mta.spool's `Spool._commit` for a group of --group
messages into one mailbox (the previous group's rename rows deleted, the mailbox's owner read, a
rename row per copy, the traffic counters' upsert).

    .venv/bin/python benchmarks/group_commit.py [--transactions 1000] [--group 4] [--rounds 3] [--database-url URL]

Printed per round and kind: user and system CPU time of this process per transaction. In one
process, one after the other, the two are compared under the same load, which on a shared machine
swings more between runs than the difference does.
"""
from __future__ import annotations

import datetime as dt
import os
import sys
import tempfile
import time
from pathlib import Path

from mail_bench import USER, command_line, provision


def main() -> int:
    args = command_line(__doc__, transactions=1000, group=4, rounds=3).parse_args()
    from sqlalchemy import text

    from mailsrv.core.config import parse_config
    from mailsrv.directory.counters import TrafficEvent, record
    from mailsrv.mta import spool
    from mailsrv.server import MailServer
    from mailsrv.store.db import Transaction, execute_many, fetch_in

    data_dir = Path(tempfile.mkdtemp(prefix="mailsrv-group-commit-"))
    server = MailServer(parse_config(provision(data_dir, args.database_url).read_text()))
    store = server.store
    with store.engine.connect() as conn:
        domain_id, user_id = conn.execute(text("SELECT domain_id, id FROM users WHERE name = :user"),
                                          {"user": USER}).one()
    renamed: list[str] = []

    def group(tx: Transaction) -> None:
        nonlocal renamed
        execute_many(tx, spool._DROP_RENAME, [{"name": name} for name in renamed])
        fetch_in(tx, spool._USER_NAME, {"id": user_id})
        renamed = [f"{time.time()}.{index}.mailsrv" for index in range(args.group)]
        execute_many(tx, spool._ADD_RENAME, [{"name": name, "maildir": str(data_dir)} for name in renamed])
        record(tx, TrafficEvent(domain_id, user_id, dt.date.today(), messages_received=args.group,
                                bytes_received=args.group * 4096))

    try:
        for round_ in range(1, args.rounds + 1):
            for kind, transaction in (("ORM session", store.session), ("driver", store.driver_transaction)):
                for _ in range(50):  # statements prepared, connections opened
                    with transaction() as tx:
                        group(tx)
                start = os.times()
                for _ in range(args.transactions):
                    with transaction() as tx:
                        group(tx)
                end = os.times()
                print(f"round {round_}, {kind}: user {(end.user - start.user) / args.transactions * 1e6:.0f} us, "
                      f"system {(end.system - start.system) / args.transactions * 1e6:.0f} us a transaction",
                      flush=True)
    finally:
        server.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
