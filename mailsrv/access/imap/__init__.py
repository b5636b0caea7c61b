"""IMAP4rev1 for mailsrv mailboxes: pymap embedded, with our logins, fixes and missing extensions."""
