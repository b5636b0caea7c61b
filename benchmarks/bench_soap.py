"""SOAP layer throughput and scaling, printed as figures.

    .venv/bin/python benchmarks/bench_soap.py [--seconds 10] [--warm-up 2] [--clients 8] [--large 10000] [--database-url URL]

Starts `mailsrv serve` (this checkout's mailsrv, run by this interpreter) on a fresh data
directory, then measures with N concurrent keep-alive clients (raw HTTP/1.1 SOAP 1.1
posts, one connection per client):
  - the floor: a bare Starlette endpoint under the same uvicorn settings (mailsrv.serve.serve_web,
    one process) that reads the same request and answers GetEdition's response bytes, with no
    parsing, login or serialising: what the HTTP stack alone costs on this machine;
  - calls/s of GetDomainSettings and AddUser next to GetEdition, the baseline: an operation that
    does nothing but the login every call pays, on the same server in the same run;
  - per-call time of AddDomain and GetAllDomains with 100 domains and with --large domains.
"""
from __future__ import annotations

import argparse
import http.client
import itertools
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path

from mail_bench import ADMIN, DOMAIN, Mailsrv, command_line, environment, free_port, mailsrv


def envelope(op: str, params: dict[str, str]) -> bytes:
    body = "".join(f"<{k}>{v}</{k}>" for k, v in params.items())
    return (f'<?xml version="1.0" encoding="utf-8"?><soap:Envelope xmlns:soap="http://schemas.xmlsoap.org/soap/envelope/">'
            f'<soap:Body><{op} xmlns="http://tempuri.org/">{body}</{op}></soap:Body></soap:Envelope>').encode()


class Client:
    def __init__(self, port: int) -> None:
        self.conn = http.client.HTTPConnection("127.0.0.1", port, timeout=120)

    def call(self, service: str, op: str, **params: str) -> bytes:
        self.conn.request("POST", f"/Services/{service}.asmx", envelope(op, params),
                          {"Content-Type": "text/xml; charset=utf-8", "SOAPAction": f'"http://tempuri.org/{op}"'})
        response = self.conn.getresponse()
        data = response.read()
        if response.status != 200 or b"<Result>true</Result>" not in data:
            raise RuntimeError(f"{op} failed: {response.status} {data[:300]!r}")
        return data


def auth(user: str = "AuthUserName", password: str = "AuthPassword") -> dict[str, str]:
    return {user: ADMIN[0], password: ADMIN[1]}


def add_domain_params(name: str) -> dict[str, str]:
    return {**auth(), "DomainName": name, "Path": "", "PrimaryDomainAdminUserName": "postmaster",
            "PrimaryDomainAdminPassword": "Domain-pass-1", "PrimaryDomainAdminFirstName": "",
            "PrimaryDomainAdminLastName": "", "IP": ""}


@dataclass(frozen=True)
class Rate:
    calls_per_second: float
    # The server process's CPU time (every thread, user + system) per call: steadier than calls/s
    # on a machine shared with other work, and what one more core would buy.
    cpu_ms_per_call: float

    def line(self, label: str, ratio: str = "") -> str:
        return f"  {label:<36}{self.calls_per_second:8.1f} calls/s {self.cpu_ms_per_call:6.3f} ms CPU/call  {ratio}"


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")  # utime, stime


def throughput(port: int, pid: int, clients: int, seconds: float, make_call) -> Rate:  # type: ignore[no-untyped-def]
    """Calls per second over `seconds` with `clients` keep-alive connections to process `pid`."""
    counts = [0] * clients
    stop = time.monotonic() + seconds
    errors: list[BaseException] = []

    def worker(index: int) -> None:
        client = Client(port)
        try:
            while time.monotonic() < stop:
                make_call(client, index, counts[index])
                counts[index] += 1
        except BaseException as exc:  # reported after the run
            errors.append(exc)

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(clients)]
    started, cpu_before = time.monotonic(), cpu_seconds(pid)
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    if errors:
        raise errors[0]
    calls = sum(counts)
    return Rate(calls / (time.monotonic() - started), (cpu_seconds(pid) - cpu_before) * 1000 / calls)


def fill_domains(port: int, clients: int, first: int, last: int) -> None:
    """Create domains d<first>..d<last-1> with `clients` connections."""
    numbers = iter(range(first, last))
    lock = threading.Lock()
    errors: list[BaseException] = []

    def worker() -> None:
        client = Client(port)
        while not errors:
            with lock:
                n = next(numbers, None)
            if n is None:
                return
            try:
                client.call("svcDomainAdmin", "AddDomainEx", **add_domain_params(f"d{n:06d}.example"))
            except BaseException as exc:  # the run stops at the first failure and reports it
                errors.append(exc)

    threads = [threading.Thread(target=worker) for _ in range(clients)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    if errors:
        raise errors[0]


def per_call_ms(client: Client, calls: int, make_call) -> float:  # type: ignore[no-untyped-def]
    times = []
    for i in range(calls):
        started = time.perf_counter()
        make_call(client, i)
        times.append((time.perf_counter() - started) * 1000)
    return statistics.median(times)


def main() -> None:
    parser = command_line(__doc__, clients=8, large=10000)
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--warm-up", type=float, default=2.0,
                        help="seconds of unmeasured GetEdition calls to each server before the first phase")
    parser.add_argument("--skip-large", action="store_true", help="only the calls/s figures")
    parser.add_argument("--workers", type=int, default=1,
                        help="[server] workers of mailsrv (the floor is one process; CPU per call is the first process's)")
    parser.add_argument("--floor-server", nargs=2, metavar=("PORT", "ANSWER_FILE"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.floor_server:
        serve_floor(int(args.floor_server[0]), args.floor_server[1])
        return

    with tempfile.TemporaryDirectory() as tmp:
        config = Path(tmp) / "mailsrv.toml"
        # Only the web listener: the mail ports may be taken by other servers on the machine.
        config.write_text(f'data_dir = "{tmp}/data"\ndatabase_url = "{args.database_url}"\n'
                          f'[server]\nworkers = {args.workers}\n'
                          '[listen]\nweb = "127.0.0.1:0"\nsmtp = ""\nsubmission = ""\nimap = ""\npop3 = ""\nwebs = ""\nsubmissions = ""\nimaps = ""\npop3s = ""\n')
        mailsrv("admin", "reset", "--create", "--username", ADMIN[0], "--config", str(config),
                input=f"{ADMIN[1]}\n", text=True, check=True, stdout=subprocess.DEVNULL)
        # A server error answers a generic fault: its cause, in the server's log, is printed as it comes.
        server = Mailsrv(config, needs=("web",))
        server.start()
        try:
            edition = wait_for(server.web_port)
            floor_port = free_port()
            answer = Path(tmp) / "floor-answer.xml"
            answer.write_bytes(edition)
            floor = subprocess.Popen([sys.executable, __file__, "--floor-server", str(floor_port), str(answer)],
                                     env=environment())
            try:
                wait_for(floor_port)
                run(server.web_port, server.process.pid, floor_port, floor.pid, args)
            finally:
                floor.terminate()
                floor.wait(30)
        finally:
            server.stop()


def wait_for(port: int) -> bytes:
    """GetEdition's answer once the server on `port` gives one."""
    for _ in range(400):
        try:
            return Client(port).call("svcServerAdmin", "GetEdition", **auth())
        except (OSError, RuntimeError):
            time.sleep(0.05)
    raise RuntimeError(f"no server answered on port {port}")


def serve_floor(port: int, answer_file: str) -> None:
    """The floor: mailsrv's own uvicorn set-up (serve_web, the same listening socket) around an
    endpoint that reads the body and answers fixed bytes, until SIGTERM."""
    import asyncio
    import signal

    from starlette.applications import Starlette
    from starlette.requests import Request
    from starlette.responses import Response
    from starlette.routing import Route

    from mailsrv.serve import serve_web, tcp_listener

    answer = Path(answer_file).read_bytes()

    async def endpoint(request: Request) -> Response:
        await request.body()
        return Response(answer, media_type="text/xml; charset=utf-8")

    app = Starlette(routes=[Route("/Services/{service}", endpoint, methods=["POST"])])

    async def main() -> None:
        stop = asyncio.Event()
        asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stop.set)
        await serve_web(app, tcp_listener("127.0.0.1", port), None, stop)

    asyncio.run(main())


def run(port: int, pid: int, floor_port: int, floor_pid: int, args: argparse.Namespace) -> None:
    setup = Client(port)
    setup.call("svcDomainAdmin", "AddDomainEx", **add_domain_params(DOMAIN))
    setup.call("svcDomainAdmin", "SetRequestedDomainSettings", **auth(), DomainName=DOMAIN,
               newSettings="<string>maxusers=0</string>")
    print(f"mailsrv SOAP benchmark: {args.clients} keep-alive clients, {args.seconds:.0f} s per operation, "
          f"{os.cpu_count()} cores, database {args.database_url or 'SQLite (embedded default)'}")

    edition = lambda c, i, n: c.call("svcServerAdmin", "GetEdition", **auth())
    # Unmeasured: whichever phase came first paid for both servers' first calls (caches, the
    # loop's and the pools' first connections, the allocator growing) and read low.
    for warm_port, warm_pid in ((floor_port, floor_pid), (port, pid)):
        throughput(warm_port, warm_pid, args.clients, args.warm_up, edition)
    floor = throughput(floor_port, floor_pid, args.clients, args.seconds, edition)
    baseline = throughput(port, pid, args.clients, args.seconds, edition)
    settings = throughput(port, pid, args.clients, args.seconds,
                          lambda c, i, n: c.call("svcDomainAdmin", "GetDomainSettings", **auth(), domainName=DOMAIN))
    add_user = throughput(port, pid, args.clients, args.seconds, lambda c, i, n: c.call(
        "svcUserAdmin", "AddUser", **auth(), NewUsername=f"u{i}x{n}", NewPassword="User-pass-123",
        DomainName=DOMAIN, FirstName="", LastName="", IsDomainAdmin="false"))
    print(floor.line("floor (bare Starlette, same bytes)"))
    # By CPU too: calls/s swing with what else the machine runs, CPU per call much less.
    print(baseline.line("GetEdition (baseline: login only)",
                        f"{baseline.calls_per_second / floor.calls_per_second:5.2f} x floor "
                        f"({floor.cpu_ms_per_call / baseline.cpu_ms_per_call:4.2f} x by CPU/call)"))
    for label, rate in (("GetDomainSettings", settings), ("AddUser", add_user)):
        print(rate.line(label, f"{rate.calls_per_second / baseline.calls_per_second:5.2f} x baseline"))

    if args.skip_large:
        return
    counter = itertools.count()
    add = lambda c, i: c.call("svcDomainAdmin", "AddDomainEx", **add_domain_params(f"t{next(counter):06d}.example"))
    list_all = lambda c, i: c.call("svcDomainAdmin", "GetAllDomains", **auth())
    read_one = lambda c, i: c.call("svcDomainAdmin", "GetDomainSettings", **auth(), domainName=f"d{1 + i:06d}.example")
    users = lambda c, i: c.call("svcUserAdmin", "GetUsers", **auth(), DomainName=f"d{1 + i:06d}.example")
    user = lambda c, i: c.call("svcUserAdmin", "GetUser", **auth(), EmailAddress=f"postmaster@d{1 + i:06d}.example")
    existing = 1
    for size in (100, args.large):
        fill_domains(port, args.clients, existing, size)
        existing = size
        print(f"  at {size:6d} domains (median ms/call of 20): AddDomain {per_call_ms(Client(port), 20, add):7.2f}, "
              f"GetAllDomains {per_call_ms(Client(port), 20, list_all):7.2f}, "
              f"GetDomainSettings {per_call_ms(Client(port), 20, read_one):5.2f}, "
              f"GetUsers {per_call_ms(Client(port), 20, users):5.2f}, GetUser {per_call_ms(Client(port), 20, user):5.2f}")
        existing += 20


if __name__ == "__main__":
    main()
