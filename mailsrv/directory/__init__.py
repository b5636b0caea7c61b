"""The provisioned world in the store: domains, users, aliases, administrators, logins, server settings, statistics and counters."""
