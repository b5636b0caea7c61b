"""The HTML help pages ASP.NET serves for an .asmx URL: the service page listing its operations, and
one page per operation with a test form (local callers only) and sample messages.

Relative links (`svcX.asmx?op=Name`, `svcX.asmx/Name`) resolve against /Services/svcX.asmx however
the client spelled it. Every text taken from the contract is HTML-escaped.
"""
from __future__ import annotations

import ipaddress
from html import escape

from services.asmx.contract import Operation, Service
from services.asmx.samples import samples

LOCAL_ONLY = "The test form is only available for requests from the local machine."

_STYLE = """
body { color: #000000; background-color: white; font-family: Verdana, sans-serif; margin: 0 2em 2em 2em; }
#content { font-size: .75em; padding-bottom: 2em; }
.heading1 { color: #ffffff; font-family: Tahoma, sans-serif; font-size: 26px; font-weight: normal;
  background-color: #003366; margin: 0 -2em .5em -2em; padding: 10px 2em 3px 2em; display: block; }
h2 { font-size: 1.5em; font-weight: bold; margin-top: 25px; margin-bottom: 10px; }
h3 { font-size: 1.1em; color: #000000; margin-top: 25px; margin-bottom: 10px; }
pre { background-color: #e5e5cc; padding: 5px; font-family: Courier New, monospace; font-size: x-small;
  margin-top: -5px; border: 1px #f0f0e0 solid; white-space: pre-wrap; }
li { margin-top: 10px; }
.frmheader { color: #000099; font-weight: normal; background-color: #dcdcdc; }
"""


def is_local_client(host: str | None) -> bool:
    """True when the TCP peer is this machine (loopback, IPv4 or IPv6, also IPv4-mapped)."""
    try:
        address = ipaddress.ip_address(host or "")
    except ValueError:
        return False
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped:
        address = address.ipv4_mapped
    return address.is_loopback


def _page(title: str, body: str) -> str:
    return (f'<!DOCTYPE html>\n<html><head><meta charset="utf-8"><title>{escape(title)}</title>'
            f"<style>{_STYLE}</style></head>\n"
            f'<body><div id="content"><span class="heading1">{escape(title)}</span>\n{body}\n</div></body></html>\n')


def _asmx(service: Service) -> str:
    return f"{service.name}.asmx"


def service_page(service: Service) -> str:
    items = "\n".join(
        f'<li><a href="{_asmx(service)}?op={escape(op.name)}">{escape(op.name)}</a>'
        f"<br>{escape(op.documentation)}</li>"
        for op in sorted(service.operations.values(), key=lambda o: o.name.lower()))
    return _page(service.name, f"<p>{escape(service.documentation)}</p>\n"
                               f"<p>The following operations are supported. For a formal definition, please review "
                               f'the <a href="{_asmx(service)}?WSDL">Service Description</a>.</p>\n'
                               f"<ul>\n{items}\n</ul>")


def _test_section(service: Service, op: Operation, local: bool) -> str:
    if not local:
        return f"<p>{LOCAL_ONLY}</p>"
    method = "POST" if "POST" in op.http_verbs else "GET" if "GET" in op.http_verbs else None
    if method is None:
        return "<p>No test form is available: this operation is offered over SOAP only.</p>"
    rows = "\n".join(f'<tr><td>{escape(p.name)}:</td><td><input type="text" size="50" name="{escape(p.name)}">'
                     f"</td></tr>" for p in op.params)
    return (f"<p>To test the operation using the HTTP {method} protocol, click the 'Invoke' button.</p>\n"
            f'<form target="_blank" action="{_asmx(service)}/{escape(op.name)}" method="{method}">\n'
            f'<table cellspacing="0" cellpadding="4">\n'
            f'<tr><td class="frmheader">Parameter</td><td class="frmheader">Value</td></tr>\n{rows}\n'
            f'<tr><td></td><td align="right"><input type="submit" value="Invoke"></td></tr>\n</table></form>')


def operation_page(service: Service, op: Operation, path: str, host: str, local: bool) -> str:
    """The ?op= page; `path` is the service path and `host` the Host the client used, for the samples."""
    sections = "\n".join(
        f"<h3>{s.protocol}</h3>\n<p>The following is a sample {s.protocol} request and response. "
        f"The <b>placeholders</b> shown need to be replaced with actual values.</p>\n"
        f"<pre>{escape(s.request)}</pre>\n<pre>{escape(s.response)}</pre>"
        for s in samples(service, op, path, host))
    return _page(service.name,
                 f'<p>Click <a href="{_asmx(service)}">here</a> for a complete list of operations.</p>\n'
                 f"<h2>{escape(op.name)}</h2>\n<p>{escape(op.documentation)}</p>\n"
                 f"<h3>Test</h3>\n{_test_section(service, op, local)}\n{sections}")


def unknown_operation_page(service: Service, name: str) -> str:
    return _page(service.name, f"<p>{escape(service.name)} has no operation named <b>{escape(name)}</b>. "
                               f'See the <a href="{_asmx(service)}">list of operations</a>.</p>')


def not_found_page(path: str) -> str:
    return _page("Not found", f"<p>There is no web service at {escape(path)}.</p>")
