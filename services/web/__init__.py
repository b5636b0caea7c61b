"""The web interface: Login.aspx and webmail, server-rendered pages over mailsrv's engine."""
