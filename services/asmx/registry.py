"""Bind every operation of every served WSDL to its handler function, or refuse to start.

Handlers live in services/asmx/ops/, in modules naming their service with `SERVICE` (one per
service, or several by subject for a large one; an operation has exactly one handler); the
function is named exactly like the operation and declares who may call it (services/asmx/access.py).
Binding happens once, at app creation, and checks each handler's declaration and signature against
the WSDL's parameters, so a served operation can never reach missing code, a misspelt parameter
name or an undeclared login at run time. Registries are per service: two services
may both have an operation called GetAliases.
"""
from __future__ import annotations

import importlib
import inspect
import pkgutil
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType

from services.asmx import ops
from services.asmx.access import Access, Handler, access_of
from services.asmx.contract import Service, load_service
from services.asmx.wsdl_serve import PublishedWsdl


class HandlerError(RuntimeError):
    """A served operation has no handler, or one whose parameters disagree with the WSDL."""


@dataclass(frozen=True)
class BoundService:
    """Everything served for one service: its operation table, handlers, their access and WSDL document."""
    contract: Service
    handlers: Mapping[str, Handler]
    access: Mapping[str, Access]
    wsdl: PublishedWsdl


def handler_modules() -> dict[str, list[ModuleType]]:
    """Handler modules by the service they declare: a large service (svcServerAdmin) is split into
    modules by subject, each declaring the same SERVICE."""
    modules: dict[str, list[ModuleType]] = {}
    for info in pkgutil.iter_modules(ops.__path__):
        module = importlib.import_module(f"{ops.__name__}.{info.name}")
        service = getattr(module, "SERVICE", None)
        if service is not None:
            modules.setdefault(service, []).append(module)
    return modules


def _check_signature(service: str, name: str, handler: Handler, access: Access, contract: list[str]) -> None:
    absent = [n for n in access.credentials or () if n not in contract]
    if absent:
        raise HandlerError(f"{service}.{name}: the WSDL has no parameter {', '.join(absent)} to log in with")
    expected = access.handler_parameters(contract)
    parameters = list(inspect.signature(handler).parameters.values())
    # The first parameter receives the Call, the next the caller's Actor when the operation logs in;
    # the rest are passed by their contract names.
    leading = 1 if access.credentials is None else 2
    positional = [p for p in parameters[:leading] if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)]
    named = {p.name: p for p in parameters[leading:] if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)}
    takes_any = any(p.kind is p.VAR_KEYWORD for p in parameters)
    missing = [n for n in expected if n not in named and not takes_any]
    extra = [n for n, p in named.items() if n not in expected and p.default is p.empty]
    if len(positional) < leading or missing or extra:
        raise HandlerError(f"{service}.{name}: handler parameters disagree with the WSDL "
                           f"(missing {missing or 'none'}, unexpected {extra or 'none'})")


def bind(contract: Service, modules: list[ModuleType], wsdl: PublishedWsdl) -> BoundService:
    if not modules:
        raise HandlerError(f"no module in {ops.__name__} declares SERVICE = {contract.name!r}")
    handlers, declared = {}, {}
    for op in contract.operations.values():
        found = list({id(h): h for m in modules if callable(h := getattr(m, op.name, None))}.values())
        if len(found) != 1:
            where = ", ".join(m.__name__ for m in modules)
            raise HandlerError(f"{contract.name}.{op.name} has {'no handler' if not found else 'several handlers'} "
                               f"in {where}")
        [handler] = found
        access = access_of(handler)
        if access is None:
            raise HandlerError(f"{contract.name}.{op.name}: the handler declares no access "
                               "(@authenticated or @anonymous)")
        _check_signature(contract.name, op.name, handler, access, [p.name for p in op.params])
        handlers[op.name], declared[op.name] = handler, access
    return BoundService(contract, handlers, declared, wsdl)


def load_services(wsdl_dir: Path) -> dict[str, BoundService]:
    """Every wsdl_dir/svcX.wsdl, bound to its handlers, by service name."""
    modules = handler_modules()
    services = {}
    for path in sorted(wsdl_dir.glob("*.wsdl")):
        data = path.read_bytes()
        contract = load_service(data)
        if contract.name != path.stem:
            raise HandlerError(f"{path.name} defines service {contract.name}")
        services[contract.name] = bind(contract, modules.get(contract.name, []), PublishedWsdl(data))
    if not services:
        raise HandlerError(f"no WSDL documents in {wsdl_dir}")
    return services
