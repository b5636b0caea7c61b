"""The administration web interface under /admin/: one module per page group, each action the
engine call the SOAP operations make (no rule lives here)."""
