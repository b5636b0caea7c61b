#!/bin/sh
# Installs a renewed certificate for mailsrv and has every worker load it (SIGHUP: new TLS sessions
# get the new certificate, open ones keep theirs).
#
# certbot:  certbot certonly --standalone -d mail.example.com \
#               --deploy-hook /opt/mailsrv/contrib/certbot-deploy-hook.sh
#           (renewals run the same hook; certbot sets RENEWED_LINEAGE to /etc/letsencrypt/live/NAME)
# acme.sh:  acme.sh --install-cert -d mail.example.com \
#               --fullchain-file /etc/mailsrv/tls/fullchain.pem --key-file /etc/mailsrv/tls/privkey.pem \
#               --reloadcmd "systemctl reload mailsrv"
#           (acme.sh copies the files itself; the reload is the part of this hook it needs)
# then in /etc/mailsrv/mailsrv.toml:
#   [tls]
#   cert_file = "/etc/mailsrv/tls/fullchain.pem"
#   key_file = "/etc/mailsrv/tls/privkey.pem"
#
# The files are copied, not linked: /etc/letsencrypt/live and archive are readable by root only, and
# mailsrv runs as its own user. Each is written beside its final name and renamed over it, so the
# server never reads half a file; the reload comes after both, and a pair that does not load is
# refused by the server, which keeps the previous certificate (logged).
#
# Settings (environment): MAILSRV_TLS_DIR (/etc/mailsrv/tls), MAILSRV_GROUP (mailsrv: may read the
# key), MAILSRV_RELOAD (the command that sends SIGHUP; default `systemctl reload mailsrv`).
set -eu

: "${RENEWED_LINEAGE:?set by certbot: the directory holding fullchain.pem and privkey.pem}"
dir="${MAILSRV_TLS_DIR:-/etc/mailsrv/tls}"
group="${MAILSRV_GROUP:-mailsrv}"
reload="${MAILSRV_RELOAD:-systemctl reload mailsrv}"

install -d -m 0750 -g "$group" "$dir"
install -m 0644 "$RENEWED_LINEAGE/fullchain.pem" "$dir/.fullchain.pem.new"
install -m 0640 -g "$group" "$RENEWED_LINEAGE/privkey.pem" "$dir/.privkey.pem.new"
mv -f "$dir/.privkey.pem.new" "$dir/privkey.pem"
mv -f "$dir/.fullchain.pem.new" "$dir/fullchain.pem"
sh -c "$reload"
