"""A small real RTSP server for tests: serves an H.264 MP4 file as RTP over the RTSP TCP connection.

It speaks enough of RFC 2326 / RFC 6184 for FFmpeg's client: OPTIONS, DESCRIBE (SDP with the
stream's SPS/PPS), SETUP (interleaved TCP only), PLAY, GET_PARAMETER, TEARDOWN; single-NAL and FU-A
packets, paced in real time, looping the file. ``stop()`` drops every client and stops listening,
like a camera that goes off the network; ``start()`` brings it back on the same port. ``freeze()``
makes the current clients' streams go silent with their connections open (a network that stalls,
an encoder that hangs): they see read timeouts, while new connections are served as before.
"""

from __future__ import annotations

import base64
import socket
import struct
import threading
import time
from pathlib import Path

import av

MTU_PAYLOAD = 1400


def _avcc_parameter_sets(extradata: bytes) -> tuple[int, list[bytes]]:
    """NAL length size and the SPS/PPS NAL units of an avcC box."""
    length_size = (extradata[4] & 3) + 1
    sets, pos = [], 6
    for count_pos_mask in (0x1F, 0xFF):
        count = extradata[pos - 1] & count_pos_mask
        for _ in range(count):
            n = struct.unpack(">H", extradata[pos : pos + 2])[0]
            sets.append(extradata[pos + 2 : pos + 2 + n])
            pos += 2 + n
        pos += 1
    return length_size, sets


def _split_nals(data: bytes, length_size: int) -> list[bytes]:
    nals, pos = [], 0
    while pos + length_size <= len(data):
        n = int.from_bytes(data[pos : pos + length_size], "big")
        nals.append(data[pos + length_size : pos + length_size + n])
        pos += length_size + n
    return nals


class RtspServer:
    def __init__(self, clip: Path, *, port: int = 0) -> None:
        self.clip = clip
        with av.open(str(clip)) as c:
            cc = c.streams.video[0].codec_context
            self.length_size, self.param_sets = _avcc_parameter_sets(bytes(cc.extradata or b""))
        self.port = port
        self._listener: socket.socket | None = None
        self._clients: list[socket.socket] = []
        self._frozen: set[socket.socket] = set()
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self.start()

    @property
    def url(self) -> str:
        return f"rtsp://127.0.0.1:{self.port}/cam"

    def start(self) -> None:
        self._stop.clear()
        srv = socket.socket()
        srv.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        srv.bind(("127.0.0.1", self.port))
        srv.listen(8)
        srv.settimeout(0.2)
        self.port = srv.getsockname()[1]
        self._listener = srv
        threading.Thread(target=self._accept, args=(srv,), daemon=True).start()

    def freeze(self) -> None:
        with self._lock:
            self._frozen.update(self._clients)

    def stop(self) -> None:
        self._stop.set()
        if self._listener is not None:
            self._listener.close()
            self._listener = None
        with self._lock:
            for c in self._clients:
                try:
                    c.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass
                c.close()
            self._clients.clear()
            self._frozen.clear()

    def _accept(self, srv: socket.socket) -> None:
        while not self._stop.is_set():
            try:
                conn, _ = srv.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            with self._lock:
                self._clients.append(conn)
            threading.Thread(target=self._serve, args=(conn,), daemon=True).start()

    def _serve(self, conn: socket.socket) -> None:
        send_lock = threading.Lock()
        buf = b""
        try:
            while not self._stop.is_set():
                while b"\r\n\r\n" not in buf:
                    chunk = conn.recv(4096)
                    if not chunk:
                        return
                    buf += chunk
                head, buf = buf.split(b"\r\n\r\n", 1)
                lines = head.decode(errors="replace").split("\r\n")
                method = lines[0].split(" ")[0]
                headers = {
                    k.strip().lower(): v.strip()
                    for k, v in (ln.split(":", 1) for ln in lines[1:] if ":" in ln)
                }
                length = int(headers.get("content-length", "0"))
                while len(buf) < length:
                    buf += conn.recv(4096)
                buf = buf[length:]
                cseq = headers.get("cseq", "0")
                extra, body = self._respond(method, headers)
                if extra is None:
                    msg = f"RTSP/1.0 461 Unsupported Transport\r\nCSeq: {cseq}\r\n\r\n"
                else:
                    msg = f"RTSP/1.0 200 OK\r\nCSeq: {cseq}\r\n{extra}Content-Length: {len(body)}\r\n\r\n"
                with send_lock:
                    conn.sendall(msg.encode() + body)
                if method == "PLAY":
                    threading.Thread(target=self._stream, args=(conn, send_lock), daemon=True).start()
                if method == "TEARDOWN":
                    return
        except OSError:
            return
        finally:
            conn.close()

    def _respond(self, method: str, headers: dict[str, str]) -> tuple[str | None, bytes]:
        if method == "OPTIONS":
            return "Public: OPTIONS, DESCRIBE, SETUP, PLAY, TEARDOWN, GET_PARAMETER\r\n", b""
        if method == "DESCRIBE":
            sprop = ",".join(base64.b64encode(p).decode() for p in self.param_sets)
            sdp = (
                "v=0\r\no=- 0 0 IN IP4 127.0.0.1\r\ns=safecity test camera\r\nc=IN IP4 0.0.0.0\r\nt=0 0\r\n"
                "m=video 0 RTP/AVP 96\r\na=rtpmap:96 H264/90000\r\n"
                f"a=fmtp:96 packetization-mode=1;sprop-parameter-sets={sprop}\r\na=control:trackID=0\r\n"
            ).encode()
            return f"Content-Base: {self.url}/\r\nContent-Type: application/sdp\r\n", sdp
        if method == "SETUP":
            if "TCP" not in headers.get("transport", ""):
                return None, b""
            return "Transport: RTP/AVP/TCP;unicast;interleaved=0-1\r\nSession: 5150\r\n", b""
        if method == "PLAY":
            return (
                f"Session: 5150\r\nRange: npt=0.000-\r\n"
                f"RTP-Info: url={self.url}/trackID=0;seq=0;rtptime=0\r\n",
                b"",
            )
        return "Session: 5150\r\n", b""  # GET_PARAMETER, TEARDOWN, anything else

    def _stream(self, conn: socket.socket, send_lock: threading.Lock) -> None:
        seq = 0
        offset = 0.0
        start = time.monotonic()
        try:
            while not self._stop.is_set():
                last = 0.0
                with av.open(str(self.clip)) as c:
                    vs = c.streams.video[0]
                    tb = float(vs.time_base)
                    for pkt in c.demux(vs):
                        if pkt.size == 0 or pkt.pts is None:
                            continue
                        t = offset + pkt.pts * tb
                        last = t
                        delay = t - (time.monotonic() - start)
                        if delay > 0 and self._stop.wait(delay):
                            return
                        while conn in self._frozen:  # silent, connection open, until stopped
                            if self._stop.wait(0.1):
                                return
                        nals = _split_nals(bytes(pkt), self.length_size)
                        if pkt.is_keyframe:
                            nals = self.param_sets + nals
                        ts = int(t * 90000) & 0xFFFFFFFF
                        for i, nal in enumerate(nals):
                            for payload, last_piece in self._packetise(nal):
                                marker = 0x80 if (last_piece and i == len(nals) - 1) else 0
                                rtp = (
                                    struct.pack(">BBHII", 0x80, marker | 96, seq & 0xFFFF, ts, 0x5AFEC1)
                                    + payload
                                )
                                seq += 1
                                with send_lock:
                                    conn.sendall(b"$\x00" + struct.pack(">H", len(rtp)) + rtp)
                offset = last + 0.04
        except OSError:
            return

    @staticmethod
    def _packetise(nal: bytes) -> list[tuple[bytes, bool]]:
        if len(nal) <= MTU_PAYLOAD:
            return [(nal, True)]
        indicator = (nal[0] & 0xE0) | 28
        kind = nal[0] & 0x1F
        body = nal[1:]
        chunks = [body[i : i + MTU_PAYLOAD] for i in range(0, len(body), MTU_PAYLOAD)]
        out = []
        for i, ch in enumerate(chunks):
            start_bit = 0x80 if i == 0 else 0
            end_bit = 0x40 if i == len(chunks) - 1 else 0
            out.append((bytes([indicator, start_bit | end_bit | kind]) + ch, i == len(chunks) - 1))
        return out
