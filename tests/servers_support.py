"""Several independent mailsrv servers on loopback, as an administrator combines them: each a
`mailsrv serve` process on its own 127.0.0.x address with its own data directory, configuration and
database (SQLite, or a PostgreSQL database of its own created beside the test database: servers
sharing one database would be nodes of one server), all resolving through one DNS server the test
runs (MX 10 → primary, 20 → backup).

Every server's SMTP listens on one port shared by all (remote delivery dials every MX on
`[delivery] remote_port`); its web listener on a port of its own, read from its log. Everything is
set up the way an administrator does it: the first login with `mailsrv admin reset`, the rest over
SOAP (HTTP POST binding). A server can be stopped and started again on the same address.

    for lab in server_lab(tmp_path, env):
        primary, backup = lab.add("primary"), lab.add("backup")
        lab.mx("b.test", primary, backup)
"""
from __future__ import annotations

import os
import re
import smtplib
import ssl
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import sqlalchemy
from contract_clients import HttpClient, ok
from dns_server import DnsServer
from serve_support import MAILSRV, Serving, listen_table
from smtp_peer import free_port
from sqlalchemy import select

from mailsrv.mailstore.disk import Disk
from mailsrv.store.db import Store
from mailsrv.store.models import SpoolRecipient

ADMIN = {"AuthUserName": "sysadmin", "AuthPassword": "Lab-admin-pass-1"}
USER_PASSWORD = "Lab-user-pass-1"
DOMAIN_ADMIN_PASSWORD = "Lab-domain-pass-1"
_LISTENER = re.compile(r"(web) listener \(SOAP/HTTP\) on http://(\S+)|(SMTP) listener on (\S+)$")


def _database_url(test_url: str, name: str) -> str:
    """A PostgreSQL database of its own for one server, created empty on the test database's server."""
    base = sqlalchemy.make_url(test_url)
    database = f"{base.database}_{name}"
    admin = sqlalchemy.create_engine(base, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(sqlalchemy.text(f'DROP DATABASE IF EXISTS "{database}" WITH (FORCE)'))
        conn.execute(sqlalchemy.text(f'CREATE DATABASE "{database}"'))
    admin.dispose()
    return base.set(database=database).render_as_string(hide_password=False)


def _drop_database(test_url: str, url: str) -> None:
    admin = sqlalchemy.create_engine(sqlalchemy.make_url(test_url), isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(sqlalchemy.text(f'DROP DATABASE IF EXISTS "{sqlalchemy.make_url(url).database}" WITH (FORCE)'))
    admin.dispose()


@dataclass
class LabServer:
    """One mailsrv server of the lab."""
    name: str
    address: str  # its loopback address: SMTP on `smtp_port`, the web on a port of its own
    smtp_port: int
    data_dir: Path
    database_url: str  # "" : SQLite in its data directory
    config: Path
    env: dict[str, str]
    serving: Serving | None = None
    base_url: str = ""
    soap: HttpClient = field(init=False)

    def start(self, timeout: float = 60) -> None:
        """`mailsrv serve`, returning once its web and SMTP listeners are bound."""
        self.serving = Serving(self.config, self.env)
        found: dict[str, str] = {}
        deadline = time.monotonic() + timeout
        while len(found) < 2:
            match = self.serving.wait_for(_LISTENER, max(0.1, deadline - time.monotonic()))
            found[match[1] or match[3]] = match[2] or match[4]
        self.base_url = f"http://{found['web']}"
        self.soap = HttpClient(self.base_url, "POST")

    def stop(self) -> None:
        assert self.serving is not None
        assert self.serving.stop() == 0
        self.serving = None

    @property
    def running(self) -> bool:
        return self.serving is not None and self.serving.process.poll() is None

    # -- administration over SOAP -------------------------------------------------------------

    def call(self, service: str, operation: str, **params: Any) -> Any:
        """An operation as the system administrator; the result as plain values (not checked)."""
        return self.soap.call(service, operation, **ADMIN, **params)

    def settings(self, *assignments: str) -> None:
        """General Settings, e.g. settings("retryminutes=1,1,1")."""
        ok(self.call("svcServerAdmin", "SetRequestedSystemSettings", newSettings=list(assignments)))

    def add_domain(self, domain: str) -> None:
        ok(self.call("svcDomainAdmin", "AddDomain", DomainName=domain, Path="", PrimaryDomainAdminUserName="postmaster",
                     PrimaryDomainAdminPassword=DOMAIN_ADMIN_PASSWORD, PrimaryDomainAdminFirstName="",
                     PrimaryDomainAdminLastName="", IP=self.address, ImapPort=143, PopPort=110, SmtpPort=25,
                     MaxAliases=10, MaxDomainSizeInMB=0, MaxDomainUsers=0, MaxMailboxSizeInMB=0,
                     MaxMessageSize=0, MaxRecipients=0, MaxDomainAliases=0, MaxLists=0, ShowDomainAliasMenu=True,
                     ShowContentFilteringMenu=True, ShowSpamMenu=True, ShowStatsMenu=True,
                     RequireSmtpAuthentication=True, ShowListMenu=False, ListCommandAddress=""))

    def add_user(self, address: str, password: str = USER_PASSWORD) -> None:
        user, _, domain = address.partition("@")
        ok(self.soap.call("svcUserAdmin", "AddUser", **ADMIN, NewUsername=user, NewPassword=password,
                          DomainName=domain, FirstName="", LastName="", IsDomainAdmin=False))

    def spool_count(self) -> int:
        return ok(self.call("svcServerAdmin", "GetSpoolMessageCount"))["messageCount"]

    # -- mail -----------------------------------------------------------------------------------

    def smtp(self) -> smtplib.SMTP:
        return smtplib.SMTP(self.address, self.smtp_port, local_hostname="client.test", timeout=30)

    def send(self, sender: str, recipients: list[str], content: bytes, password: str = USER_PASSWORD) -> None:
        """A message submitted by its sender, a user of this server: STARTTLS, AUTH, MAIL, RCPT, DATA."""
        context = ssl.create_default_context()
        context.check_hostname, context.verify_mode = False, ssl.CERT_NONE  # its self-signed certificate
        with self.smtp() as smtp:
            smtp.starttls(context=context)
            smtp.login(sender, password)
            refused = smtp.sendmail(sender, recipients, content)
            assert refused == {}, refused

    def maildir(self, address: str) -> Path:
        """A mailbox of a domain added without a Path (so in its default place)."""
        user, _, domain = address.partition("@")
        return Disk.maildir(Disk(self.data_dir).domain_path(domain, "", others=[]), user)

    def messages(self, address: str) -> list[bytes]:
        """The messages in a mailbox (new/ and cur/), by file name."""
        root = self.maildir(address)
        return [path.read_bytes() for part in ("new", "cur") if (root / part).is_dir()
                for path in sorted((root / part).iterdir())]

    def spool_rows(self) -> list[tuple[str, str, str, int]]:
        """(address, kind, status, attempts) of every delivery in its spool, read from its store:
        what the spool's count does not tell (was it tried? is it deferred or failed?)."""
        store = Store(self.database_url or f"sqlite:///{self.data_dir / 'mailsrv.db'}")
        try:
            with store.session() as s:
                rows = s.execute(select(SpoolRecipient.address, SpoolRecipient.kind, SpoolRecipient.status,
                                        SpoolRecipient.attempts).order_by(SpoolRecipient.id)).all()
        finally:
            store.close()
        return [tuple(row) for row in rows]


@dataclass
class ServerLab:
    root: Path
    env: dict[str, str]
    dns: DnsServer
    smtp_port: int
    test_database_url: str  # "" : every server on SQLite
    servers: list[LabServer] = field(default_factory=list)

    def add(self, name: str, extra_config: str = "", start: bool = True) -> LabServer:
        """A new server on the next loopback address (127.0.0.11, .12, …), with the admin login set
        up and, by default, started."""
        address = f"127.0.0.{11 + len(self.servers)}"
        data_dir = self.root / name
        data_dir.mkdir()
        database_url = _database_url(self.test_database_url, name) if self.test_database_url else ""
        config = data_dir / "mailsrv.toml"
        listen = listen_table(f"{address}:0", f'smtp = "{address}:{self.smtp_port}"\n')
        config.write_text(f'data_dir = "{data_dir}"\ndatabase_url = "{database_url}"\n{listen}'
                          f'[smtp]\nhostname = "{name}.lab.test"\n'
                          f'[dns]\nnameservers = ["{self.dns.address}"]\n'
                          f'[delivery]\nremote_port = {self.smtp_port}\n'
                          # one process per server: several servers share two CPUs in the suite
                          f'[server]\nworkers = 1\n{extra_config}')
        server = LabServer(name, address, self.smtp_port, data_dir, database_url, config, self.env)
        self.servers.append(server)
        done = subprocess.run([MAILSRV, "admin", "reset", "--config", str(config), "--username",
                               ADMIN["AuthUserName"], "--create"], input=f"{ADMIN['AuthPassword']}\n",
                              env=self.env, capture_output=True, text=True, timeout=60)
        assert done.returncode == 0, done.stderr
        self.dns.add({(f"{name}.lab.test", "A"): [address]})
        if start:
            server.start()
        return server

    def mx(self, domain: str, primary: LabServer, backup: LabServer | None = None) -> None:
        """The domain's MX records: 10 → primary, 20 → backup."""
        records = [f"10 {primary.name}.lab.test."] + ([f"20 {backup.name}.lab.test."] if backup else [])
        self.dns.add({(domain, "MX"): records})

    def close(self) -> None:
        for server in self.servers:
            if server.serving is not None:
                server.serving.__exit__()
            if server.database_url:
                _drop_database(self.test_database_url, server.database_url)
        self.dns.close()


def server_lab(tmp_path: Path, env: dict[str, str]) -> Iterator[ServerLab]:
    """A lab without servers yet (`ServerLab.add`); every server killed, its database dropped and
    the DNS server closed afterwards."""
    lab = ServerLab(tmp_path.resolve(), env, DnsServer({}), free_port(),
                    os.environ.get("MAILSRV_TEST_DATABASE_URL", ""))
    try:
        yield lab
    finally:
        lab.close()
