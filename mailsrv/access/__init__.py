"""The network listeners users and peers talk to: SMTP, POP3, IMAP."""
