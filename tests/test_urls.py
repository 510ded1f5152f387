"""No credentials in anything printed: URLs with passwords and secret query parameters."""

from __future__ import annotations

import logging

import pytest

from pipeline.urls import RedactingFilter, check_source, holds_secret, redact, with_password


@pytest.mark.parametrize(
    ("text", "shown"),
    [
        (
            "rtsp://admin:12345@10.0.0.5:554/Streaming/Channels/101",
            "rtsp://admin:***@10.0.0.5:554/Streaming/Channels/101",
        ),
        (
            "cannot open 'rtsp://u:p%40ss@cam/x': refused; rtsp://u:p%40ss@cam/x",
            "cannot open 'rtsp://u:***@cam/x': refused; rtsp://u:***@cam/x",
        ),
        (
            "rtsp://10.0.0.5/cam/realmonitor?channel=1&user=admin&password=secret",
            "rtsp://10.0.0.5/cam/realmonitor?channel=1&user=admin&password=***",
        ),
        ("https://host/clip.mp4?token=abc.def&x=1", "https://host/clip.mp4?token=***&x=1"),
        ("rtsp://10.0.0.5/stream1", "rtsp://10.0.0.5/stream1"),  # nothing to hide: unchanged
        ("rtsp://user@10.0.0.5/stream1", "rtsp://user@10.0.0.5/stream1"),  # a user name alone is no secret
        ("rtsp://admin:p@ss@10.0.0.5/stream", "rtsp://admin:***@10.0.0.5/stream"),  # '@' in a password
        ("rtsp://john@corp.com:pw@10.0.0.5/x", "rtsp://john@corp.com:***@10.0.0.5/x"),  # '@' in a user
        ("'rtsp://a:b@h:554' and rtsp://c:d@h2/y", "'rtsp://a:***@h:554' and rtsp://c:***@h2/y"),
        ("rtsp://admin:Qu0te'S\"X@h/live", "rtsp://admin:***@h/live"),  # quotes in a password
        ("{'source': 'rtsp://a:b@h/x'}", "{'source': 'rtsp://a:***@h/x'}"),
        ("rtsp://admin%3Asecret@cam/x", "rtsp://***@cam/x"),  # FFmpeg decodes %3A: a password
        ("rtsp://u:LEAK/ME3@cam/x", "rtsp://u:***@cam/x"),  # a '/' in a password
        ("http://cam/snap?authbasic=YWRtaW4&passcode=42", "http://cam/snap?authbasic=***&passcode=***"),
        ("http://cam/a?access_token=t0&signature=s1", "http://cam/a?access_token=***&signature=***"),
    ],
)
def test_redact(text: str, shown: str) -> None:
    assert redact(text) == shown


def test_the_log_filter_scrubs_messages_arguments_and_tracebacks() -> None:
    record = logging.LogRecord(
        "x", logging.WARNING, __file__, 1, "camera %s: %s", ("c1", "rtsp://a:pw1@h/x"), None
    )
    try:
        raise OSError("cannot open rtsp://a:pw2@h/x")
    except OSError:
        import sys

        record.exc_info = sys.exc_info()
    assert RedactingFilter().filter(record)
    text = logging.Formatter().format(record)
    assert "pw1" not in text and "pw2" not in text and "rtsp://a:***@h/x" in text


@pytest.mark.parametrize(
    "source", ["rtsp://u:LEAK ME2@cam/x", "rtsp://u:LEAK/ME3@cam:x/y", "rtsp://u:LEAK\x7fME4@cam/x"]
)
def test_a_refused_source_is_never_quoted_with_its_password(source: str) -> None:
    with pytest.raises(ValueError) as err:
        check_source(source)
    assert "LEAK" not in str(err.value) and "ME" not in str(err.value)


@pytest.mark.parametrize(
    ("url", "secret"),
    [
        ("rtsp://admin:pw@cam/1", True),
        ("rtsp://admin%3Apw@cam/1", True),
        ("rtsp://cam/1?%70assword=x", True),
        ("http://cam/1?passcode=1", True),
        ("rtsp://admin@cam/1", False),
        ("rtsp://cam:554/Streaming/Channels/101?transportmode=unicast", False),
    ],
)
def test_a_url_holding_a_secret_is_told_apart(url: str, secret: bool) -> None:
    assert holds_secret(url) is secret


@pytest.mark.parametrize("password", ["p@ss:w/rd #%?&", "ü ñ 密码", "a@evil.example:80/"])
def test_a_password_put_into_a_url_cannot_move_its_host_and_is_redacted(password: str) -> None:
    from urllib.parse import unquote, urlsplit

    url = with_password("rtsp://admin@cam.example:554/stream1?x=1", password)
    u = urlsplit(url)
    assert (u.hostname, u.port, u.path, u.query) == ("cam.example", 554, "/stream1", "x=1")
    assert unquote(u.password or "") == password and u.username == "admin"
    assert redact(url) == "rtsp://admin:***@cam.example:554/stream1?x=1"
