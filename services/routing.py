"""Routes whose paths match in any case, as IIS paths do (/services, /SERVICES, /login.aspx, ...)."""
from __future__ import annotations

import re
from typing import TypeVar

from starlette.routing import Mount, Route

R = TypeVar("R", Route, Mount)


def ignore_case(route: R) -> R:
    route.path_regex = re.compile(route.path_regex.pattern, re.IGNORECASE)
    return route
