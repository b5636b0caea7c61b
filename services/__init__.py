"""Everything mailsrv serves over HTTP: the ASMX automation layer, its help pages and the web UI."""
