"""Kubernetes probes for an edge, with the standard library only (fast enough to run every few
seconds): ``python -m pipeline.probe live|ready [PORT]`` asks the edge's control interface on
loopback (``safecity run --control 127.0.0.1:PORT``, with the token the edge keeps in its data folder)
and exits 0 or 1.

live: the run has not failed (a camera being down is not a reason to restart the pod);
ready: it runs and its outbox takes incidents (a sink that is away is the sink's problem: the outbox
holds the incidents meanwhile, and a rolling update should not stall on it)."""

from __future__ import annotations

import json
import os
import sys
import urllib.error
import urllib.request


def token() -> str:
    """The edge's control token, where it keeps it (``control.default_token_path``, without importing
    the package: ``$SAFECITY_CONTROL_TOKEN_FILE``, else ``control.token`` in ``$SAFECITY_DATA``, else
    in the checkout's ``data``)."""
    path = os.environ.get("SAFECITY_CONTROL_TOKEN_FILE") or os.path.join(
        os.environ.get("SAFECITY_DATA") or os.path.join(os.path.dirname(os.path.dirname(__file__)), "data"),
        "control.token",
    )
    with open(path) as f:
        return f.read().strip()


def health(port: int) -> dict:
    direct = urllib.request.build_opener(urllib.request.ProxyHandler({}))  # never through HTTP_PROXY
    req = urllib.request.Request(
        f"http://127.0.0.1:{port}/health", headers={"Authorization": f"Bearer {token()}"}
    )
    try:
        with direct.open(req, timeout=3) as r:
            return json.loads(r.read())
    except urllib.error.HTTPError as err:  # 503 while not ready: its body still says why
        return json.loads(err.read() or b"{}")


def main(argv: list[str]) -> int:
    if not argv or argv[0] not in ("live", "ready"):
        print("usage: python -m pipeline.probe live|ready [PORT]", file=sys.stderr)
        return 2
    port = int(argv[1]) if len(argv) > 1 else 8089
    try:
        body = health(port)
    except (OSError, ValueError) as err:
        print(f"probe: no answer on 127.0.0.1:{port}: {err}", file=sys.stderr)
        return 1
    if argv[0] == "live":
        ok = bool(body.get("live"))
    else:
        ok = bool(body.get("ready") and body.get("outbox_writable"))
    if not ok:
        print(f"probe: not {argv[0]}: {json.dumps(body)}", file=sys.stderr)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
