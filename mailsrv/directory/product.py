"""What the server says about itself: product, version, edition and the stored license key."""
from __future__ import annotations

from dataclasses import dataclass

from mailsrv import __version__
from mailsrv.core.actor import Actor
from mailsrv.core.config import ProductConfig
from mailsrv.core.errors import MailsrvError, ResultCode
from mailsrv.store.db import Store
from mailsrv.store.models import ServerSetting

PRODUCT_NAME = "mailsrv"
_LICENSE_KEY = "license.key"


@dataclass(frozen=True)
class ProductInfo:
    name: str
    version: str


class Product:
    def __init__(self, store: Store, config: ProductConfig) -> None:
        self.store = store
        self.config = config  # [product]: the edition code and the version reported

    def info(self, actor: Actor) -> ProductInfo:
        actor.require_system()
        return ProductInfo(PRODUCT_NAME, self.config.reported_version or __version__)

    def edition(self, actor: Actor) -> str:
        """SmarterMail's edition code (PRO, ENT, FREE) as configured."""
        actor.require_system()
        return self.config.edition

    def license_key(self, actor: Actor) -> str:
        actor.require_system()
        with self.store.session() as s:
            row = s.get(ServerSetting, _LICENSE_KEY)
            return row.value if row else ""

    def set_license_key(self, actor: Actor, key: str | None) -> None:
        """Store the key a provisioning script hands over; mailsrv itself needs none."""
        actor.require_system()
        text = (key or "").strip()
        if not text or len(text) > 200 or any(ord(c) < 32 for c in text):
            raise MailsrvError(ResultCode.INVALID_ARGUMENT, "A license key is 1-200 printable characters.")
        with self.store.session() as s:
            s.merge(ServerSetting(key=_LICENSE_KEY, value=text))

    def activate_license(self, actor: Actor) -> None:
        """There is no vendor to activate with; say so rather than pretend it happened."""
        actor.require_system()
        raise MailsrvError(ResultCode.NOT_SUPPORTED,
                           "Online license activation is not available: mailsrv needs no activation.")
