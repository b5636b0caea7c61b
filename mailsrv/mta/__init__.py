"""The mail transfer agent: intake (recipients, policy), the durable spool, the queue, local and remote delivery, notices (DSNs, auto-replies)."""
