"""No credentials in anything printed: URLs with passwords and secret query parameters."""

from __future__ import annotations

import logging

import pytest

from pipeline.urls import RedactingFilter, redact


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
