"""A domain's DKIM signing key: generated here, published by the admin in DNS as selector._domainkey."""
from __future__ import annotations

import base64
import re
from dataclasses import dataclass

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from mailsrv.core.actor import Actor
from mailsrv.core.errors import MailsrvError, ResultCode
from mailsrv.directory.domains import domain_for
from mailsrv.store.db import Store
from mailsrv.store.models import DomainKey

KEY_SIZES = (1024, 2048, 3072, 4096)
_SELECTOR = re.compile(r"^[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?$")


@dataclass(frozen=True)
class KeyView:
    selector: str
    private_key: str  # PEM, PKCS#1 (what dkimpy signs with)
    public_key: str   # base64 DER SubjectPublicKeyInfo: the p= value of the DNS record


class DkimKeys:
    def __init__(self, store: Store) -> None:
        self.store = store

    def generate(self, actor: Actor, raw_domain: str | None, key_size: int, raw_selector: str | None) -> KeyView:
        selector = (raw_selector or "").strip().lower()
        if not _SELECTOR.match(selector):
            raise MailsrvError(ResultCode.INVALID_ARGUMENT, f"'{raw_selector}' is not a valid DKIM selector (a DNS label).")
        if key_size not in KEY_SIZES:
            raise MailsrvError(ResultCode.VALUE_OUT_OF_RANGE,
                               f"KeySize must be one of {', '.join(map(str, KEY_SIZES))}.")
        with self.store.session() as s:
            domain_for(s, actor, raw_domain)
        key = rsa.generate_private_key(public_exponent=65537, key_size=key_size)
        view = KeyView(
            selector,
            key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.TraditionalOpenSSL,
                              serialization.NoEncryption()).decode("ascii"),
            base64.b64encode(key.public_key().public_bytes(
                serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)).decode("ascii"))
        with self.store.session() as s:
            domain = domain_for(s, actor, raw_domain)
            s.merge(DomainKey(domain_id=domain.id, selector=view.selector, private_key=view.private_key,
                              public_key=view.public_key))
        return view

    def get(self, actor: Actor, raw_domain: str | None) -> KeyView:
        with self.store.session() as s:
            domain = domain_for(s, actor, raw_domain)
            row = s.get(DomainKey, domain.id)
            if row is None:
                raise MailsrvError(ResultCode.ITEM_NOT_FOUND, f"The domain {domain.name} has no DKIM key yet.")
            return KeyView(row.selector, row.private_key, row.public_key)
