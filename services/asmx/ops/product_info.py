"""svcProductInfo: product, version and license."""
from __future__ import annotations

from mailsrv.core.actor import Actor
from services.asmx.access import authenticated
from services.asmx.call import Call

SERVICE = "svcProductInfo"


@authenticated()
def GetProductInfo(call: Call, actor: Actor) -> dict[str, str]:
    info = call.engine.product.info(actor)
    return {"ProductName": info.name, "ProductVersion": info.version}


@authenticated()
def GetLicenseInfo(call: Call, actor: Actor) -> dict[str, str]:
    return {"LicenseKey": call.engine.product.license_key(actor)}


@authenticated()
def SetLicenseKey(call: Call, actor: Actor, Key: str | None) -> None:
    call.engine.product.set_license_key(actor, Key)


@authenticated()
def ActivateLicenseKey(call: Call, actor: Actor, AccountEmailAddress: str | None,
                       AccountPassword: str | None) -> None:
    call.engine.product.activate_license(actor)
