"""A domain's DKIM signing key: generated here, published by the admin in DNS as selector._domainkey.

Two algorithms (RFC 8463): RSA (`rsa-sha256`, the key sizes below) and Ed25519 (`ed25519-sha256`).
The algorithm is not stored apart: it is the PEM's own (PKCS#1 for RSA, PKCS#8 for Ed25519), so a
key stored before Ed25519 existed reads as what it is. A new key replaces the old one at once;
mail already accepted carries its signature (mailsrv.mta.filtering.dkim signs at acceptance), so
the old selector's DNS record should stay published until that mail has left the spool.
"""
from __future__ import annotations

import base64
import re
from dataclasses import dataclass

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ed25519, rsa
from sqlalchemy import select

from mailsrv.core.actor import Actor
from mailsrv.core.errors import MailsrvError, ResultCode
from mailsrv.directory.domains import domain_for
from mailsrv.store.db import Store
from mailsrv.store.models import Domain, DomainKey

RSA, ED25519 = "rsa", "ed25519"
KEY_SIZES = (1024, 2048, 3072, 4096)
_SELECTOR = re.compile(r"^[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?$")


@dataclass(frozen=True)
class KeyView:
    selector: str
    private_key: str  # PEM: PKCS#1 for RSA, PKCS#8 for Ed25519
    public_key: str   # the p= value of the DNS record: base64 DER SubjectPublicKeyInfo (RSA), the raw key (Ed25519)
    algorithm: str = RSA

    @property
    def dns_record(self) -> str:
        """The TXT value to publish at selector._domainkey.<domain>."""
        return f"v=DKIM1; k={self.algorithm}; p={self.public_key}"


@dataclass(frozen=True)
class SigningKey:
    """What dkimpy signs a domain's mail with."""
    domain: str
    selector: str
    algorithm: str  # RSA or ED25519
    private_key: bytes  # dkimpy's form: PEM for RSA, the base64 32-byte seed for Ed25519

    @property
    def signature_algorithm(self) -> bytes:
        return b"ed25519-sha256" if self.algorithm == ED25519 else b"rsa-sha256"


def _new_key(algorithm: str, key_size: int) -> tuple[str, str]:
    """(private PEM, public p= value) of a fresh key."""
    if algorithm == ED25519:
        ed = ed25519.Ed25519PrivateKey.generate()
        pem = ed.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                               serialization.NoEncryption())
        public = ed.public_key().public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
        return pem.decode("ascii"), base64.b64encode(public).decode("ascii")
    key = rsa.generate_private_key(public_exponent=65537, key_size=key_size)
    pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.TraditionalOpenSSL,
                            serialization.NoEncryption())
    public = key.public_key().public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    return pem.decode("ascii"), base64.b64encode(public).decode("ascii")


def _algorithm(pem: str) -> str:
    key = serialization.load_pem_private_key(pem.encode("ascii"), password=None)
    return ED25519 if isinstance(key, ed25519.Ed25519PrivateKey) else RSA


def _dkimpy_key(pem: str, algorithm: str) -> bytes:
    if algorithm != ED25519:
        return pem.encode("ascii")
    key = serialization.load_pem_private_key(pem.encode("ascii"), password=None)
    assert isinstance(key, ed25519.Ed25519PrivateKey)
    return base64.b64encode(key.private_bytes(serialization.Encoding.Raw, serialization.PrivateFormat.Raw,
                                              serialization.NoEncryption()))


class DkimKeys:
    def __init__(self, store: Store) -> None:
        self.store = store

    def generate(self, actor: Actor, raw_domain: str | None, key_size: int, raw_selector: str | None,
                 algorithm: str | None = RSA) -> KeyView:
        """A new key for the domain, replacing its old one: `algorithm` rsa (the default) or ed25519,
        whose keys have one size (`key_size` is not read for them)."""
        selector = (raw_selector or "").strip().lower()
        if not _SELECTOR.match(selector):
            raise MailsrvError(ResultCode.INVALID_ARGUMENT, f"'{raw_selector}' is not a valid DKIM selector (a DNS label).")
        kind = (algorithm or RSA).strip().lower()
        if kind not in (RSA, ED25519):
            raise MailsrvError(ResultCode.INVALID_ARGUMENT, f"'{algorithm}' is not a DKIM key type (rsa or ed25519).")
        if kind == RSA and key_size not in KEY_SIZES:
            raise MailsrvError(ResultCode.VALUE_OUT_OF_RANGE,
                               f"KeySize must be one of {', '.join(map(str, KEY_SIZES))}.")
        with self.store.session() as s:
            domain_for(s, actor, raw_domain)
        private, public = _new_key(kind, key_size)
        view = KeyView(selector, private, public, kind)
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
            return KeyView(row.selector, row.private_key, row.public_key, _algorithm(row.private_key))

    def signing_key(self, domain_name: str) -> SigningKey | None:
        """The key `domain_name`'s outgoing mail is signed with: None for a name that is not one of our
        domains, a domain without a key, or one with neither `enabledomainkeys` nor `enablemailsigning`."""
        with self.store.read_connection() as conn:
            row = conn.execute(select(Domain.name, Domain.settings, DomainKey.selector, DomainKey.private_key)
                               .join(DomainKey, DomainKey.domain_id == Domain.id)
                               .where(Domain.name == domain_name.lower())).first()
        if row is None or not (row.settings.get("enabledomainkeys") or row.settings.get("enablemailsigning")):
            return None
        algorithm = _algorithm(row.private_key)
        return SigningKey(row.name, row.selector, algorithm, _dkimpy_key(row.private_key, algorithm))
