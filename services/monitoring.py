"""What monitoring asks the web listener: /metrics (Prometheus), /healthz (the process answers) and
/readyz (it can serve: store, listeners, spool; 503 naming what fails).

/metrics is answered to loopback and the `[metrics] allow` networks only, 403 to anyone else: the
figures tell what the server carries and whom it refuses. The health pages say no more than
"ok" or the failing item, so they are open to the load balancers that ask them.
"""
from __future__ import annotations

import asyncio

from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response
from starlette.routing import BaseRoute, Route

from mailsrv.core import metrics
from mailsrv.core.config import MetricsConfig
from mailsrv.core.networks import address_in, parse_network
from mailsrv.mta.status import ServerStatus

_LOOPBACK = ["127.0.0.0/8", "::1/128"]


def monitoring_routes(status: ServerStatus, config: MetricsConfig) -> list[BaseRoute]:
    allowed = [net for spec in [*_LOOPBACK, *config.allow] for net in parse_network(spec)]

    async def metrics_page(request: Request) -> Response:
        client = request.client.host if request.client else ""
        if not address_in(client.removeprefix("::ffff:"), allowed):
            return PlainTextResponse("403 Forbidden: /metrics is not open to this address\n", status_code=403)
        body = await asyncio.to_thread(metrics.scrape, status.spool_figures)
        return Response(body, media_type=metrics.CONTENT_TYPE_LATEST)

    async def healthz(_request: Request) -> Response:
        return PlainTextResponse("ok\n")

    async def readyz(_request: Request) -> Response:
        problems = await asyncio.to_thread(status.readiness)
        if problems:
            return PlainTextResponse("".join(f"{problem}\n" for problem in problems), status_code=503)
        return PlainTextResponse("ok\n")

    return [Route("/metrics", metrics_page, methods=["GET"]),
            Route("/healthz", healthz, methods=["GET"]),
            Route("/readyz", readyz, methods=["GET"])]
