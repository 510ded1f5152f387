"""GStreamer's RTSP server (gst-rtsp-server, what many NVRs and camera SDKs build on), serving a
video file as a camera would: RTP over TCP or UDP, H.264 or HEVC, digest authentication.

Run by the system's Python, which has the GObject bindings (Debian: python3-gi,
gir1.2-gst-rtsp-server-1.0, gstreamer1.0-rtsp, gstreamer1.0-plugins-{base,good,bad}):

    /usr/bin/python3 tests/gst_rtsp.py --port 8554 --clip cam.mp4 --codec h264 [--user U --password P]

It prints ``ready rtsp://127.0.0.1:PORT/cam`` once it listens. SPS/PPS go in the SDP and again
before every keyframe, as cameras send them. Each client gets the file from its
start. The tests stop it (a camera gone), freeze it with SIGSTOP (a stream that stalls
with its connection open) and start it again on the same port.
"""

from __future__ import annotations

import argparse
import signal
import sys

import gi

gi.require_version("Gst", "1.0")
gi.require_version("GstRtsp", "1.0")
gi.require_version("GstRtspServer", "1.0")
from gi.repository import GLib, Gst, GstRtsp, GstRtspServer  # noqa: E402


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--port", type=int, required=True)
    ap.add_argument("--clip", required=True)
    ap.add_argument("--codec", choices=["h264", "h265"], default="h264")
    ap.add_argument("--user")
    ap.add_argument("--password")
    args = ap.parse_args()
    Gst.init(None)
    server = GstRtspServer.RTSPServer()
    server.set_address("127.0.0.1")
    server.set_service(str(args.port))
    factory = GstRtspServer.RTSPMediaFactory()
    parse, pay = ("h264parse", "rtph264pay") if args.codec == "h264" else ("h265parse", "rtph265pay")
    demux = "tsdemux" if args.clip.endswith(".ts") else "qtdemux"  # MPEG-TS: the resolution may change
    factory.set_launch(
        f"( filesrc location={args.clip} ! {demux} ! {parse} ! {pay} name=pay0 pt=96 config-interval=-1 )"
    )
    factory.set_shared(False)
    factory.set_protocols(GstRtsp.RTSPLowerTrans.TCP | GstRtsp.RTSPLowerTrans.UDP)
    if args.user:
        auth = GstRtspServer.RTSPAuth()
        auth.set_supported_methods(GstRtsp.RTSPAuthMethod.DIGEST)
        token = GstRtspServer.RTSPToken()
        token.set_string(GstRtspServer.RTSP_TOKEN_MEDIA_FACTORY_ROLE, "viewer")
        auth.add_digest(args.user, args.password, token)
        server.set_auth(auth)
        permissions = GstRtspServer.RTSPPermissions()
        permissions.add_permission_for_role("viewer", GstRtspServer.RTSP_PERM_MEDIA_FACTORY_ACCESS, True)
        permissions.add_permission_for_role("viewer", GstRtspServer.RTSP_PERM_MEDIA_FACTORY_CONSTRUCT, True)
        factory.set_permissions(permissions)
    server.get_mount_points().add_factory("/cam", factory)
    if server.attach(None) == 0:
        print(f"error: cannot listen on 127.0.0.1:{args.port}", file=sys.stderr, flush=True)
        return 1
    loop = GLib.MainLoop()
    GLib.unix_signal_add(GLib.PRIORITY_DEFAULT, signal.SIGTERM, loop.quit)
    print(f"ready rtsp://127.0.0.1:{args.port}/cam", flush=True)
    loop.run()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
