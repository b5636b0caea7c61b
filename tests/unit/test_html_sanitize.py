"""HTML mail made safe (mailsrv.webmail.message_view) without a server: scripts, handlers, remote images."""
from __future__ import annotations

from mailsrv.webmail.message_view import sanitize, view


def clean(html: str, show_remote: bool = False, cids: dict[str, str] | None = None) -> tuple[str, bool]:
    return sanitize(html, show_remote, (cids or {}).get)


def test_scripts_styles_forms_and_frames_are_removed():
    html, _ = clean('<p>hi</p><script>alert(1)</script><style>p{}</style><form action="/x"><input></form>'
                    '<iframe src="https://evil.example/"></iframe><object data="x"></object>')
    assert html == "<p>hi</p>"


def test_event_handlers_and_javascript_links_are_removed():
    html, _ = clean('<p onclick="steal()" onmouseover="steal()">a</p><a href="javascript:steal()">b</a>'
                    '<img src="cid:x" onerror="steal()">', cids={"x": "/part/1"})
    assert "steal" not in html and "javascript" not in html
    assert "<p>a</p>" in html and '<img src="/part/1">' in html


def test_links_keep_safe_schemes_and_open_without_an_opener():
    html, _ = clean('<a href="https://example.org/">w</a><a href="mailto:bob@b.test">m</a><a href="file:///etc">f</a>')
    assert '<a href="https://example.org/" rel="noopener noreferrer">w</a>' in html
    assert 'href="mailto:bob@b.test"' in html and "file:" not in html


def test_remote_images_are_blocked_unless_the_reader_asks():
    source = '<p>x</p><img src="https://tracker.example/pixel.gif" alt="t">'
    html, blocked = clean(source)
    assert blocked and "tracker" not in html and "<img" in html  # the image stays, without its source
    html, blocked = clean(source, show_remote=True)
    assert not blocked and 'src="https://tracker.example/pixel.gif"' in html


def test_embedded_images_point_at_their_part_and_unknown_ones_lose_their_source():
    html, blocked = clean('<img src="cid:logo@b.test"><img src="cid:missing">', cids={"logo@b.test": "/part/2"})
    assert not blocked and html == '<img src="/part/2"><img>'


def test_a_message_view_uses_the_sanitized_html_and_says_what_was_blocked():
    raw = (b"From: Bob <bob@b.test>\r\nSubject: news\r\nMIME-Version: 1.0\r\n"
           b"Content-Type: text/html; charset=utf-8\r\n\r\n"
           b'<p onclick="x()">caf\xc3\xa9</p><img src="http://t.example/p.gif"><script>x()</script>\r\n')
    seen = view(raw, show_remote=False, part_url=lambda index: f"/part/{index}")
    assert seen.html.strip() == "<p>café</p><img>" and seen.remote_blocked
    assert (seen.subject, seen.sender, seen.text) == ("news", "Bob <bob@b.test>", "")
