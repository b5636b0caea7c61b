"""Mailboxes on disk: domain and user directories (with their journal), Maildir folders, message headers, disk usage."""
