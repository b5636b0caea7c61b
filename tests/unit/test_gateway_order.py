"""The order in which a route tries the outgoing gateways (mailsrv.mta.outgoing_gateways), without
sockets or a store: balancing, the cool-down, LeastQueued's lengths."""
from __future__ import annotations

from mailsrv.directory.gateways import Gateway, SmLogin
from mailsrv.mta.outgoing_gateways import GatewayRouter, destination


class Clock:
    now = 1000.0

    def __call__(self) -> float:
        return self.now


class Counts:
    def __init__(self, counts: dict[str, int | None]) -> None:
        self.counts = counts

    def count(self, login: SmLogin) -> int | None:
        return self.counts[login.url]


def gateway(name: str, sm: bool = False) -> Gateway:
    return Gateway(name, name, name, 25, True, SmLogin(f"http://{name}/", "admin", "pw") if sm else None)


A, B, C = gateway("a"), gateway("b"), gateway("c")


def router(clock: Clock, in_flight: dict[str, int] | None = None, counts: Counts | None = None) -> GatewayRouter:
    busy = in_flight or {}
    return GatewayRouter(None, None, 60, lambda d: busy.get(d, 0), counts, clock)  # type: ignore[arg-type]


def names(gateways: list[Gateway]) -> list[str]:
    return [g.guid for g in gateways]


def test_round_robin_starts_one_further_each_time():
    r = router(Clock())
    orders = [names(r.order([A, B, C], {"gatewaybalance": "RoundRobin"})) for _ in range(4)]
    assert orders == [["a", "b", "c"], ["b", "c", "a"], ["c", "a", "b"], ["a", "b", "c"]]


def test_failover_keeps_the_added_order():
    r = router(Clock())
    assert [names(r.order([A, B, C], {"gatewaybalance": "Failover"})) for _ in range(2)] == [["a", "b", "c"]] * 2


def test_a_gateway_that_refused_goes_last_until_its_cool_down_ends():
    clock = Clock()
    r = router(clock)
    r.cool_down(A)
    clock.now += 30
    r.cool_down(B)
    assert names(r.order([A, B, C], {"gatewaybalance": "Failover"})) == ["c", "a", "b"]
    clock.now += 31  # a's cool-down is over, b's is not
    assert names(r.order([A, B, C], {"gatewaybalance": "Failover"})) == ["a", "c", "b"]


def test_least_queued_by_spool_count_or_connections_in_flight_unknown_last():
    sm_a, sm_b = gateway("a", sm=True), gateway("b", sm=True)
    counts = Counts({"http://a/": 7, "http://b/": None})
    r = router(Clock(), {destination(C): 3}, counts)
    assert names(r.order([sm_a, sm_b, C], {"gatewaybalance": "LeastQueued"})) == ["c", "a", "b"]
    counts.counts["http://a/"] = 3  # as short as c: the added order decides
    assert names(r.order([sm_a, sm_b, C], {"gatewaybalance": "LeastQueued"})) == ["a", "c", "b"]
