"""Foundations every other package may use: configuration, clock, errors, names, setting tables, the caller (Actor), networks, TLS and DNS helpers. Imports nothing else of mailsrv."""
