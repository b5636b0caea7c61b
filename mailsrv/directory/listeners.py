"""What the server listens on, as svcServerAdmin describes it: ports, their IP assignments, the
greeting name per local IP, and which mail services are stopped.

A *port* (AddServerPort) is a protocol, an encryption, a port number and an optional certificate;
it is bound on every IP address it is assigned to (AssignPortToIP). When the store assigns no port
to any IP, the TOML `[listen]` section is what is bound (the bootstrap default, `to_bind`); once
one is assigned, the store's listeners are the whole description and `[listen]`'s mail addresses
are not bound any more (its web listener always is: it is not a port of this table).

Every change is one transaction that also raises `listener_generation`; each worker of each node
polls that number (mailsrv.serve) and rebinds what changed, so a change applies on every node
within about a second, without a restart. A stopped service stays stopped across restarts: the
state is a row, not a process's memory.

Binding is the wiring's; here an assignment only tries the address on the node that made the call
(without taking it) so that the caller hears at once of a port in use, privileged or not local.
What every node could not bind reaches ListServerPorts through the nodes' heartbeats.
"""
from __future__ import annotations

import ipaddress
import os
import ssl
import uuid
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field

from sqlalchemy import delete, select, update
from sqlalchemy.orm import Session

from mailsrv.core.actor import Actor
from mailsrv.core.errors import MailsrvError, ResultCode
from mailsrv.core.names import domain_name
from mailsrv.core.sockets import bind_problem
from mailsrv.core.tls import context_for
from mailsrv.store.db import Store
from mailsrv.store.models import (
    ListenerGeneration,
    Node,
    ServerHostname,
    ServerPort,
    ServerPortIp,
    StoppedService,
)

SMTP, SUBMISSION, POP, IMAP = "SMTP", "Submission", "POP", "IMAP"
PROTOCOLS = {name.lower(): name for name in (SMTP, SUBMISSION, POP, IMAP)}  # also the service names
NONE, STARTTLS, SSL = "None", "STARTTLS", "SSL"
ENCRYPTIONS = {"": NONE, "none": NONE, "starttls": STARTTLS, "ssl": SSL, "tls": SSL}
# What a caller may call the web/SOAP listener: it serves the very call that would stop it.
WEB_SERVICES = frozenset({"web", "http", "https", "soap", "webmail", "webserver", "webservices"})
RUNNING, STOPPED = "Running", "Stopped"

MAX_NAME = 128
MAX_DESCRIPTION = 1024
MAX_PATH = 4096


@dataclass(frozen=True)
class Listener:
    """One socket to serve: `protocol` (PROTOCOLS), `encryption` (None/STARTTLS: TLS offered by
    STARTTLS with the server's certificate; SSL: implicit TLS), `certificate_path` ("" = the
    server's certificate)."""
    protocol: str
    encryption: str
    ip: str
    port: int
    certificate_path: str = ""

    @property
    def address(self) -> str:
        return f"[{self.ip}]:{self.port}" if ":" in self.ip else f"{self.ip}:{self.port}"


@dataclass(frozen=True)
class PortView:
    id: str
    protocol: str
    encryption: str
    certificate_path: str
    name: str
    port: int
    description: str


@dataclass(frozen=True)
class PortList:
    ports: list[PortView]
    problems: list[str]  # "node: address (protocol): reason" for each listener a live node could not bind


@dataclass(frozen=True)
class Description:
    """Everything a worker needs to serve, read in one snapshot."""
    generation: int
    listeners: tuple[Listener, ...]  # the store's: every port on every IP it is assigned to
    stopped: frozenset[str]  # service (protocol) names
    hostnames: Mapping[str, str] = field(default_factory=dict)  # canonical IP -> greeting name

    def to_bind(self, bootstrap: Sequence[Listener]) -> list[Listener]:
        """The store's listeners, or `[listen]`'s when the store describes none; without stopped services."""
        return [listener for listener in (self.listeners or bootstrap) if listener.protocol not in self.stopped]


class Greetings:
    """The greeting name for each local IP, in this process: what the listeners print (refreshed by
    the wiring from each new Description; read at every connection, so no store access here)."""

    def __init__(self) -> None:
        self._names: Mapping[str, str] = {}

    def update(self, hostnames: Mapping[str, str]) -> None:
        self._names = dict(hostnames)

    def name_for(self, local_ip: str, default: str) -> str:
        if not self._names:
            return default
        try:
            ip = ipaddress.ip_address(local_ip.split("%")[0])
        except ValueError:
            return default
        if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped:
            ip = ip.ipv4_mapped
        return self._names.get(str(ip), default)


def canonical_ip(raw: str | None) -> str:
    try:
        return str(ipaddress.ip_address((raw or "").strip()))
    except ValueError:
        raise MailsrvError(ResultCode.INVALID_ARGUMENT, f"'{raw or ''}' is not an IP address.") from None


def protocol_name(raw: str | None) -> str:
    name = PROTOCOLS.get((raw or "").strip().lower())
    if name is None:
        raise MailsrvError(ResultCode.INVALID_ARGUMENT,
                           f"Unknown protocol '{raw or ''}': SMTP, Submission, POP or IMAP.")
    return name


def encryption_name(raw: str | None) -> str:
    name = ENCRYPTIONS.get((raw or "").strip().lower())
    if name is None:
        raise MailsrvError(ResultCode.INVALID_ARGUMENT,
                           f"Unknown encryption '{raw}': None, STARTTLS or SSL (implicit TLS).")
    return name


def _text(raw: str | None, what: str, limit: int) -> str:
    text = (raw or "").strip()
    if len(text) > limit:
        raise MailsrvError(ResultCode.VALUE_OUT_OF_RANGE, f"The {what} is longer than {limit} characters.")
    return text


def certificate_path(raw: str | None) -> str:
    """"" (the server's certificate) or a readable PEM file holding a certificate and its key."""
    path = _text(raw, "certificate path", MAX_PATH)
    if not path:
        return ""
    if not os.path.isabs(path):
        raise MailsrvError(ResultCode.INVALID_PATH, f"The certificate path '{path}' must be absolute.")
    try:
        context_for(path)
    except (OSError, ssl.SSLError) as exc:
        raise MailsrvError(ResultCode.INVALID_PATH,
                           f"The certificate '{path}' cannot be used: {getattr(exc, 'strerror', None) or exc} "
                           "(a readable PEM file with the certificate and its private key).") from None
    return path


def service_names(raw: Iterable[str | None], stopping: bool) -> set[str]:
    """The protocol names asked for; unknown names (all of them) refused, the web listener refused
    when stopping (it carries this very call)."""
    asked = [(name or "").strip() for name in raw]
    if not any(asked):
        raise MailsrvError(ResultCode.INVALID_ARGUMENT, "No service named: SMTP, Submission, POP or IMAP.")
    web = [name for name in asked if name.lower() in WEB_SERVICES]
    if web and stopping:
        raise MailsrvError(ResultCode.SERVICE_NOT_STOPPABLE,
                           f"The web/SOAP listener ('{web[0]}') cannot be stopped through itself.")
    unknown = [name for name in asked if name and name.lower() not in PROTOCOLS and name.lower() not in WEB_SERVICES]
    if unknown:
        raise MailsrvError(ResultCode.UNKNOWN_SERVICE,
                           f"Unknown service(s): {', '.join(repr(n) for n in unknown)}; "
                           "known: SMTP, Submission, POP, IMAP.")
    return {PROTOCOLS[name.lower()] for name in asked if name.lower() in PROTOCOLS}


def _raise_generation(s: Session) -> None:
    s.execute(update(ListenerGeneration).where(ListenerGeneration.id == 1)
              .values(generation=ListenerGeneration.generation + 1))


def _view(row: ServerPort) -> PortView:
    return PortView(row.id, row.protocol, row.encryption, row.certificate_path, row.name, row.port, row.description)


def _overlap(a: str, b: str) -> bool:
    """Whether a listener on `a` and one on `b` (same port) would take each other's connections."""
    ip_a, ip_b = ipaddress.ip_address(a), ipaddress.ip_address(b)
    return ip_a == ip_b or (ip_a.version == ip_b.version and (ip_a.is_unspecified or ip_b.is_unspecified))


class Listeners:
    def __init__(self, store: Store) -> None:
        self.store = store

    # -- what the wiring reads --------------------------------------------------------------------

    def generation(self) -> int:
        with self.store.read_connection() as conn:
            return conn.execute(select(ListenerGeneration.generation)).scalar_one()

    def describe(self) -> Description:
        with self.store.reading() as s:
            generation = s.execute(select(ListenerGeneration.generation)).scalar_one()
            rows = s.execute(select(ServerPort, ServerPortIp.ip_address).join(
                ServerPortIp, ServerPortIp.port_id == ServerPort.id)
                .order_by(ServerPort.port, ServerPortIp.ip_address)).all()
            stopped = frozenset(s.execute(select(StoppedService.name)).scalars())
            hostnames = dict(s.execute(select(ServerHostname.ip_address, ServerHostname.hostname)).all())
        listeners = tuple(Listener(port.protocol, port.encryption, ip, port.port, port.certificate_path)
                          for port, ip in rows)
        return Description(generation, listeners, stopped, hostnames)

    def service_states(self) -> dict[str, str]:
        """Service name -> Running / Stopped."""
        with self.store.reading() as s:
            stopped = set(s.execute(select(StoppedService.name)).scalars())
        return {name: STOPPED if name in stopped else RUNNING for name in PROTOCOLS.values()}

    # -- services ---------------------------------------------------------------------------------

    def stop_services(self, actor: Actor, names: Iterable[str | None]) -> None:
        actor.require_system()
        wanted = service_names(names, stopping=True)
        with self.store.session() as s:
            already = set(s.execute(select(StoppedService.name)).scalars())
            s.add_all(StoppedService(name=name) for name in sorted(wanted - already))
            _raise_generation(s)

    def start_services(self, actor: Actor, names: Iterable[str | None]) -> None:
        actor.require_system()
        wanted = service_names(names, stopping=False)
        with self.store.session() as s:
            s.execute(delete(StoppedService).where(StoppedService.name.in_(wanted)))
            _raise_generation(s)

    # -- ports ------------------------------------------------------------------------------------

    def add_port(self, actor: Actor, protocol: str | None, certificate: str | None, encryption: str | None,
                 name: str | None, port: int, description: str | None) -> str:
        """The new port's id. It listens nowhere until assigned to an IP."""
        actor.require_system()
        row = ServerPort(id=str(uuid.uuid4()), protocol=protocol_name(protocol), encryption=encryption_name(encryption),
                         name=_text(name, "name", MAX_NAME), port=port,
                         description=_text(description, "description", MAX_DESCRIPTION))
        if not 1 <= port <= 65535:
            raise MailsrvError(ResultCode.VALUE_OUT_OF_RANGE, f"Port {port} is not between 1 and 65535.")
        row.certificate_path = certificate_path(certificate)
        with self.store.session() as s:
            s.add(row)
            _raise_generation(s)
        return row.id

    def _port(self, s: Session, raw_id: str | None) -> ServerPort:
        row = s.get(ServerPort, (raw_id or "").strip().lower()) if raw_id else None
        if row is None:
            raise MailsrvError(ResultCode.ITEM_NOT_FOUND, f"No server port has the id '{raw_id or ''}'.")
        return row

    def delete_port(self, actor: Actor, port_id: str | None) -> None:
        actor.require_system()
        with self.store.session() as s:
            row = self._port(s, port_id)
            s.execute(delete(ServerPortIp).where(ServerPortIp.port_id == row.id))
            s.delete(row)
            _raise_generation(s)

    def list_ports(self, actor: Actor) -> PortList:
        """Every port, and what the nodes could not bind, as each published it with its last heartbeat."""
        actor.require_system()
        with self.store.reading() as s:
            ports = [_view(row) for row in s.execute(select(ServerPort).order_by(ServerPort.port, ServerPort.id)).scalars()]
            rows = s.execute(select(Node.id, Node.listen_errors).where(Node.listen_errors != "")
                             .order_by(Node.id)).all()
        return PortList(ports, [f"{node}: {line}" for node, errors in rows for line in errors.splitlines()])

    def ports_on_ip(self, actor: Actor, raw_ip: str | None) -> list[PortView]:
        actor.require_system()
        ip = canonical_ip(raw_ip)
        with self.store.reading() as s:
            return [_view(row) for row in s.execute(
                select(ServerPort).join(ServerPortIp, ServerPortIp.port_id == ServerPort.id)
                .where(ServerPortIp.ip_address == ip).order_by(ServerPort.port, ServerPort.id)).scalars()]

    def assign(self, actor: Actor, port_id: str | None, raw_ip: str | None) -> str:
        """Assign the port to an IP; "" or, when this node cannot bind it, why (the assignment stays:
        another node may, and every node reports it in ListServerPorts)."""
        actor.require_system()
        ip = canonical_ip(raw_ip)
        with self.store.session() as s:
            row = self._port(s, port_id)
            for other, other_ip in s.execute(select(ServerPort, ServerPortIp.ip_address).join(
                    ServerPortIp, ServerPortIp.port_id == ServerPort.id).where(ServerPort.port == row.port)).all():
                if _overlap(ip, other_ip):
                    raise MailsrvError(ResultCode.PORT_IN_USE,
                                       f"Port {row.port} on {other_ip} is already assigned "
                                       f"({other.protocol} '{other.name or other.id}').")
            s.add(ServerPortIp(port_id=row.id, ip_address=ip))
            _raise_generation(s)
            port = row.port
        problem = bind_problem(ip, port)
        return f"Assigned, but this node cannot listen on {Listener('', '', ip, port).address}: {problem}." \
            if problem else ""

    def unassign(self, actor: Actor, port_id: str | None, raw_ip: str | None) -> None:
        actor.require_system()
        ip = canonical_ip(raw_ip)
        with self.store.session() as s:
            row = self._port(s, port_id)
            if not s.execute(delete(ServerPortIp).where(ServerPortIp.port_id == row.id,
                                                        ServerPortIp.ip_address == ip)).rowcount:
                raise MailsrvError(ResultCode.ITEM_NOT_FOUND, f"Port '{row.id}' is not assigned to {ip}.")
            _raise_generation(s)

    # -- greeting names ---------------------------------------------------------------------------

    def add_hostname(self, actor: Actor, hostname: str | None, raw_ip: str | None) -> None:
        """Set (or replace) the greeting name for connections to `raw_ip`."""
        actor.require_system()
        ip = canonical_ip(raw_ip)
        name = domain_name(hostname)
        with self.store.session() as s:
            s.merge(ServerHostname(ip_address=ip, hostname=name))
            _raise_generation(s)

    def delete_hostname(self, actor: Actor, raw_ip: str | None) -> None:
        actor.require_system()
        ip = canonical_ip(raw_ip)
        with self.store.session() as s:
            if not s.execute(delete(ServerHostname).where(ServerHostname.ip_address == ip)).rowcount:
                raise MailsrvError(ResultCode.ITEM_NOT_FOUND, f"{ip} has no host name.")
            _raise_generation(s)

    def list_hostnames(self, actor: Actor) -> list[tuple[str, str]]:
        """(IP, host name) pairs, by IP."""
        actor.require_system()
        with self.store.reading() as s:
            return [(ip, name) for ip, name in s.execute(
                select(ServerHostname.ip_address, ServerHostname.hostname).order_by(ServerHostname.ip_address)).all()]
