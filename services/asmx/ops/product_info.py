"""svcProductInfo: product, version and license."""
from __future__ import annotations

from services.asmx.call import Call

SERVICE = "svcProductInfo"


def GetProductInfo(call: Call, AuthUserName: str | None, AuthPassword: str | None) -> dict[str, str]:
    info = call.server.product.info(call.server.login(AuthUserName, AuthPassword, call.client_ip))
    return {"ProductName": info.name, "ProductVersion": info.version}


def GetLicenseInfo(call: Call, AuthUserName: str | None, AuthPassword: str | None) -> dict[str, str]:
    actor = call.server.login(AuthUserName, AuthPassword, call.client_ip)
    return {"LicenseKey": call.server.product.license_key(actor)}


def SetLicenseKey(call: Call, AuthUserName: str | None, AuthPassword: str | None, Key: str | None) -> None:
    call.server.product.set_license_key(call.server.login(AuthUserName, AuthPassword, call.client_ip), Key)


def ActivateLicenseKey(call: Call, AuthUserName: str | None, AuthPassword: str | None,
                       AccountEmailAddress: str | None, AccountPassword: str | None) -> None:
    call.server.product.activate_license(call.server.login(AuthUserName, AuthPassword, call.client_ip))
