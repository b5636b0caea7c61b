"""svcProductInfo: product, version and license."""
from __future__ import annotations

from services.asmx.call import Call

SERVICE = "svcProductInfo"


def GetProductInfo(call: Call, AuthUserName: str | None, AuthPassword: str | None) -> dict[str, str]:
    info = call.engine.product.info(call.engine.auth.login(AuthUserName, AuthPassword, call.client_ip))
    return {"ProductName": info.name, "ProductVersion": info.version}


def GetLicenseInfo(call: Call, AuthUserName: str | None, AuthPassword: str | None) -> dict[str, str]:
    actor = call.engine.auth.login(AuthUserName, AuthPassword, call.client_ip)
    return {"LicenseKey": call.engine.product.license_key(actor)}


def SetLicenseKey(call: Call, AuthUserName: str | None, AuthPassword: str | None, Key: str | None) -> None:
    call.engine.product.set_license_key(call.engine.auth.login(AuthUserName, AuthPassword, call.client_ip), Key)


def ActivateLicenseKey(call: Call, AuthUserName: str | None, AuthPassword: str | None,
                       AccountEmailAddress: str | None, AccountPassword: str | None) -> None:
    call.engine.product.activate_license(call.engine.auth.login(AuthUserName, AuthPassword, call.client_ip))
