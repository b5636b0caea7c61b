FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    # So `docker compose run --rm mailsrv mailsrv admin reset ...` uses the same configuration.
    MAILSRV_CONFIG=/etc/mailsrv/mailsrv.toml

WORKDIR /opt/mailsrv
COPY pyproject.toml ./
COPY mailsrv ./mailsrv
COPY services ./services
COPY wsdl ./wsdl
# Editable: the served WSDL documents are read from wsdl/ beside the packages, not from site-packages.
RUN pip install -e . \
    && useradd --system --home-dir /var/lib/mailsrv --shell /usr/sbin/nologin mailsrv \
    && mkdir -p /var/lib/mailsrv /etc/mailsrv \
    && chown mailsrv:mailsrv /var/lib/mailsrv
COPY docker/mailsrv.toml /etc/mailsrv/mailsrv.toml

# Never root: the mail ports below 1024 are bound as this user because the container's network
# namespace lets any user bind them (docker-compose.yml sets net.ipv4.ip_unprivileged_port_start=0,
# Docker's own default since 20.10).
USER mailsrv
VOLUME /var/lib/mailsrv
# SMTP, submissions (implicit TLS), submission, POP3, POP3S, IMAP, IMAPS; web/SOAP over HTTP and HTTPS.
EXPOSE 25 465 587 110 995 143 993 9998 443
# Probes the address of the image's own configuration file: change it with [listen] web.
HEALTHCHECK --interval=10s --timeout=5s --start-period=20s \
    CMD ["python", "-c", "import urllib.request; urllib.request.urlopen('http://127.0.0.1:9998/Services/svcProductInfo.asmx', timeout=4)"]
CMD ["mailsrv", "serve", "--config", "/etc/mailsrv/mailsrv.toml"]
