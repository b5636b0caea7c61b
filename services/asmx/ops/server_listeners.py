"""svcServerAdmin: status, services, greeting names and listening ports (mailsrv.directory.listeners,
mailsrv.mta.status)."""
from __future__ import annotations

from typing import Any

from mailsrv.core.actor import Actor
from mailsrv.directory.listeners import PortView
from services.asmx.access import authenticated
from services.asmx.call import Call

SERVICE = "svcServerAdmin"


def _ports(ports: list[PortView]) -> list[dict[str, Any]]:
    return [{"ID": p.id, "Protocol": p.protocol, "Encryption": p.encryption, "CertificatePath": p.certificate_path,
             "Name": p.name, "Port": p.port, "Description": p.description} for p in ports]


@authenticated()
def RequestStatus(call: Call, actor: Actor, reqStats: list[str]) -> dict[str, list[str]]:
    return {"KeyValuePairs": call.engine.status.request(actor, reqStats)}


@authenticated()
def StopServices(call: Call, actor: Actor, ServicesToStop: list[str]) -> None:
    call.engine.listeners.stop_services(actor, ServicesToStop)


@authenticated()
def StartServices(call: Call, actor: Actor, ServicesToStart: list[str]) -> None:
    call.engine.listeners.start_services(actor, ServicesToStart)


@authenticated("authUsername", "authPassword")
def AddHostname(call: Call, actor: Actor, hostname: str | None, ipAddress: str | None) -> None:
    call.engine.listeners.add_hostname(actor, hostname, ipAddress)


@authenticated("authUsername", "authPassword")
def DeleteHostname(call: Call, actor: Actor, ipAddress: str | None) -> None:
    call.engine.listeners.delete_hostname(actor, ipAddress)


@authenticated("authUsername", "authPassword")
def ListHostnames(call: Call, actor: Actor) -> dict[str, Any]:
    return {"Hostnames": [{"IPAddress": ip, "Hostname": name} for ip, name in call.engine.listeners.list_hostnames(actor)]}


@authenticated("authUsername", "authPassword")
def AddServerPort(call: Call, actor: Actor, protocol: str | None, certificatePath: str | None, encryption: str | None,
                  name: str | None, port: int, description: str | None) -> dict[str, str]:
    return {"NewID": call.engine.listeners.add_port(actor, protocol, certificatePath, encryption, name, port, description)}


@authenticated("authUsername", "authPassword")
def DeleteServerPort(call: Call, actor: Actor, portId: str | None) -> None:
    call.engine.listeners.delete_port(actor, portId)


@authenticated("authUsername", "authPassword")
def ListServerPorts(call: Call, actor: Actor) -> dict[str, Any]:
    listed = call.engine.listeners.list_ports(actor)
    # Result=true all the same: the ports are listed; Message says what some node could not bind.
    return {"Ports": _ports(listed.ports), "Message": "; ".join(listed.problems)}


@authenticated("authUsername", "authPassword")
def AssignPortToIP(call: Call, actor: Actor, portID: str | None, ipAddress: str | None) -> dict[str, str]:
    return {"Message": call.engine.listeners.assign(actor, portID, ipAddress)}


@authenticated("authUsername", "authPassword")
def RemovePortFromIP(call: Call, actor: Actor, portID: str | None, ipAddress: str | None) -> None:
    call.engine.listeners.unassign(actor, portID, ipAddress)


@authenticated("authUsername", "authPassword")
def ListPortsAssignedToIP(call: Call, actor: Actor, ipAddress: str | None) -> dict[str, Any]:
    return {"Ports": _ports(call.engine.listeners.ports_on_ip(actor, ipAddress))}
