"""The STARTTLS server context: the configured certificate, or a self-signed one made at first start.

The self-signed key and certificate are written together into one PEM file, atomically (temporary
file, then rename): two nodes sharing a data directory and starting at once can then never pair
one node's key with the other's certificate.

`Certificates` keeps a process's contexts so that SIGHUP can load renewed files into them in place:
the listeners (asyncio servers, uvicorn) keep the context object they were started with, and every
new TLS session takes the certificate the context holds at its handshake; sessions already open
keep theirs.
"""
from __future__ import annotations

import datetime as dt
import os
import ssl
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.x509.oid import NameOID

from mailsrv.core.config import Config, ConfigError

SELF_SIGNED_NAME = "selfsigned.pem"
_VALID_DAYS = 3650


def certificate_files(config: Config) -> tuple[str, str]:
    """The PEM files of the certificate and its key: the configured pair, else the self-signed one."""
    cert_file, key_file = config.tls.cert_file, config.tls.key_file
    if bool(cert_file) != bool(key_file):
        raise ConfigError("configuration keys 'tls.cert_file' and 'tls.key_file' must be given together")
    if not cert_file:
        cert_file = key_file = str(ensure_self_signed(config.data_dir / "tls", config.smtp.hostname))
    return cert_file, key_file


def server_context(config: Config) -> ssl.SSLContext:
    """An SSLContext for the mail listeners (TLS 1.2 or newer, no client certificates)."""
    cert_file, key_file = certificate_files(config)
    try:
        return context_for(cert_file, key_file)
    except (OSError, ssl.SSLError) as exc:
        raise ConfigError(f"cannot load the TLS certificate {cert_file} / key {key_file}: {exc}") from None


def context_for(cert_file: str, key_file: str | None = None) -> ssl.SSLContext:
    """The mail listeners' TLS policy with this certificate (`key_file` None: the key is in the
    same PEM file, as svcServerAdmin's certificatePath gives it); OSError/SSLError if unusable."""
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    context.load_cert_chain(cert_file, key_file)
    return context


def fingerprint(cert_file: str) -> str:
    """The SHA-256 fingerprint (hex, colon-separated) of the first certificate in a PEM file."""
    cert = x509.load_pem_x509_certificates(Path(cert_file).read_bytes())[0]
    return cert.fingerprint(hashes.SHA256()).hex(":")


def is_self_signed(cert_file: str) -> bool:
    """Whether the PEM file's (first) certificate is its own issuer: no client trusts it unasked."""
    cert = x509.load_pem_x509_certificates(Path(cert_file).read_bytes())[0]
    return cert.issuer == cert.subject


class Certificates:
    """The TLS contexts of one process, one per certificate file pair, reloadable in place."""

    def __init__(self, config: Config) -> None:
        self.config = config
        self._contexts: dict[tuple[str, str | None], ssl.SSLContext] = {}
        self.server_files = certificate_files(config)
        self._contexts[self.server_files] = server_context(config)

    @property
    def server(self) -> ssl.SSLContext:
        """The context of the configured (or self-signed) certificate, shared by every listener."""
        return self._contexts[self.server_files]

    def for_file(self, cert_file: str) -> ssl.SSLContext:
        """The context of a listener's own certificate (key in the same PEM file); OSError/SSLError
        if unusable."""
        key = (cert_file, None)
        if key not in self._contexts:
            self._contexts[key] = context_for(cert_file)
        return self._contexts[key]

    def reload(self) -> list[str]:
        """Load every certificate file again into its context; one line per file saying what
        happened. A pair that no longer loads (half-copied, key and certificate apart) is left as
        it was, so a bad renewal never takes TLS down."""
        report = []
        for (cert_file, key_file), context in self._contexts.items():
            try:
                context_for(cert_file, key_file)  # all or nothing: the live context only gets a pair that loads
                context.load_cert_chain(cert_file, key_file)
                report.append(f"TLS certificate {cert_file} reloaded (SHA-256 {fingerprint(cert_file)})")
            except (OSError, ssl.SSLError, ValueError) as exc:
                report.append(f"TLS certificate {cert_file} NOT reloaded, the previous one stays: {exc}")
        return report


def ensure_self_signed(directory: Path, hostname: str) -> Path:
    """The self-signed key+certificate PEM in `directory`, created if missing."""
    path = directory / SELF_SIGNED_NAME
    if path.exists():
        return path
    directory.mkdir(mode=0o700, parents=True, exist_ok=True)
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, hostname[:64] or "localhost")])
    now = dt.datetime.now(dt.timezone.utc)
    san = [x509.DNSName(hostname)] if hostname else []
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name)
            .public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now - dt.timedelta(days=1)).not_valid_after(now + dt.timedelta(days=_VALID_DAYS))
            .add_extension(x509.SubjectAlternativeName(san), critical=False)
            .sign(key, hashes.SHA256()))
    pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                            serialization.NoEncryption()) + cert.public_bytes(serialization.Encoding.PEM)
    tmp = directory / f".{SELF_SIGNED_NAME}.{os.getpid()}.tmp"
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as out:
        out.write(pem)
        out.flush()
        os.fsync(out.fileno())
    os.replace(tmp, path)
    return path
