"""Camera source URLs: which are live, which are well formed, and how to print them without secrets."""

from __future__ import annotations

import logging
import re
from urllib.parse import quote, unquote, urlsplit, urlunsplit

# Streams a camera pushes in real time: never paced here, never "finished", reconnected for ever.
LIVE_SCHEMES = frozenset({"rtsp", "rtsps", "rtmp", "rtmps", "rtp", "srt", "udp", "tcp"})
# Schemes where the edge may listen for a camera that pushes to it (udp://@:1234, srt://:9000?mode=listener)
LISTENER_SCHEMES = frozenset({"udp", "rtp", "srt", "tcp"})
# Recorded footage fetched over a network: paced at its frame rate like a local file.
RECORDED_SCHEMES = frozenset({"http", "https", "ftp", "sftp", "file"})

# user info runs to the last '@' before the path, as FFmpeg reads it: a password may hold an '@'
# (or a quote: it ends at the '@', never past a '/' or a space)
_USERINFO = re.compile(r"(?P<scheme>[A-Za-z][A-Za-z0-9+.\-]*://)(?P<userinfo>[^/\s]*)@")
# what a person may have meant as user info, a '/' in the password and all: hidden too in messages
_LOOSE_USERINFO = re.compile(r"(?P<scheme>[A-Za-z][A-Za-z0-9+.\-]*://)(?P<userinfo>[^\s'\"@]*:[^\s'\"]*)@")
# query parameters that carry secrets, by any name that says so (password, passcode, authbasic,
# access_token, api_key, signature ...)
_SECRET_PARAM = re.compile(
    r"(?P<key>[\w.\-]*(?:pass|pwd|token|secret|key|auth|sig|cred)[\w.\-]*=)(?P<value>[^&;\s'\"]+)", re.I
)


def _hide_password(m: re.Match[str]) -> str:
    user, colon, _ = m["userinfo"].partition(":")
    if colon:
        return f"{m['scheme']}{user}:***@"
    return f"{m['scheme']}***@" if "%3a" in m["userinfo"].lower() else m[0]  # (FFmpeg decodes %3A)


def redact(text: str) -> str:
    """``text`` with the password of every URL in it (``rtsp://user:secret@host``, also written
    ``user%3Asecret``, or with a '/' in it) and secret query parameters (``password=``, ``token=``
    ...) replaced by ``***``."""
    text = _USERINFO.sub(_hide_password, text)
    text = _LOOSE_USERINFO.sub(_hide_password, text)
    return _SECRET_PARAM.sub(lambda m: f"{m['key']}***", text)


def shown(source: str) -> str:
    """A source as an error message may quote it: redacted, and with anything before a last '@'
    hidden when it is not a well-formed URL (a space in the password)."""
    text = redact(source)
    if "://" not in text:
        return text
    head, rest = text.split("://", 1)
    userinfo, at, host = rest.rpartition("@")
    plain = not at or userinfo.endswith(("***", ":***")) or not re.search(r"[:\s]", userinfo)
    return text if plain else f"{head}://***@{host}"


def holds_secret(url: str) -> bool:
    """The URL carries a password (in its user info, percent-encoded or not) or a secret query
    parameter (by any name that says so, percent-encoded or not)."""
    plain = unquote(url)
    return redact(plain) != plain


def scheme(source: str) -> str | None:
    """The URL scheme of a source in lower case, or None for a file path."""
    if "://" not in source:
        return None
    return source.split("://", 1)[0].lower()


def is_live_source(source: str) -> bool:
    """A stream a camera pushes in real time (RTSP, RTMP, SRT, UDP ...), as against recorded footage
    (a file, or a file served over HTTP)."""
    return scheme(source) in LIVE_SCHEMES


_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f]")


def check_source(source: str) -> str:
    """The source as given, or ValueError saying what is wrong with it (unknown scheme, no host, a
    control character anywhere, white space in a URL)."""
    bad = _CONTROL.search(source)
    if bad:
        raise ValueError(
            f"{shown(source)!r} holds a control character ({bad.group().encode('unicode_escape').decode()}) "
            f"at {bad.start()}"
        )
    s = scheme(source)
    if s is None:
        return source
    if any(c.isspace() for c in source):
        at = next(i for i, c in enumerate(source) if c.isspace())
        raise ValueError(f"{shown(source)!r}: a URL holds no white space (one at {at}; write a space as %20)")
    if s not in LIVE_SCHEMES and s not in RECORDED_SCHEMES:
        known = ", ".join(sorted(LIVE_SCHEMES | RECORDED_SCHEMES))
        raise ValueError(
            f"unknown URL scheme {s!r} in {shown(source)!r}; expected a file path or one of {known}"
        )
    if s == "file":
        return source
    try:
        parts = urlsplit(source)
        port = parts.port
    except ValueError as err:
        why = (
            "its port is not a number" if "port" in str(err).lower() else "a malformed host"
        )  # (err quotes it)
        raise ValueError(f"{shown(source)!r} is not a valid URL: {why}") from None
    if not parts.hostname and s not in LISTENER_SCHEMES:
        raise ValueError(f"{shown(source)!r} has no host; expected {s}://HOST[:PORT]/PATH")
    if port == 0:
        raise ValueError(f"{shown(source)!r}: port 0 is not a port")
    return source


class RedactingFilter(logging.Filter):
    """Scrubs secrets from every log record's message (installed on the CLI's log handler)."""

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        clean = redact(message)
        if clean != message:
            record.msg, record.args = clean, None
        if record.exc_info and record.exc_info[1] is not None:
            text = redact(logging.Formatter().formatException(record.exc_info))
            record.exc_info, record.exc_text = None, text
        return True


def with_password(source: str, password: str, username: str | None = None) -> str:
    """``source`` with ``password`` (and ``username``, else the URL's own) in its user info, each
    percent-encoded (FFmpeg decodes them): an '@', ':' or '/' in a password cannot move the host."""
    u = urlsplit(source)
    user = username if username is not None else unquote(u.username or "")
    host = u.netloc.rpartition("@")[2]
    netloc = f"{quote(user, safe='')}:{quote(password, safe='')}@{host}"
    return urlunsplit((u.scheme, netloc, u.path, u.query, u.fragment))
