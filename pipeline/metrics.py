"""Prometheus metrics of the edge pipeline, on a private registry (base units, low cardinality)."""

from __future__ import annotations

import errno

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, start_http_server

from .errors import SafeCityError

LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)


class Metrics:
    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        r = self.registry = registry or CollectorRegistry()
        self.frames_decoded = Counter(
            "safecity_frames_decoded_total", "Frames decoded", ["camera"], registry=r
        )
        self.frames_analysed = Counter(
            "safecity_frames_analysed_total", "Sampled frames run through detection", ["camera"], registry=r
        )
        self.frames_dropped = Counter(
            "safecity_frames_dropped_total", "Sampled frames dropped on a full queue", ["camera"], registry=r
        )
        self.camera_up = Gauge(
            "safecity_camera_up", "1 while the camera's source is open and decoding", ["camera"], registry=r
        )
        self.camera_errors = Counter(
            "safecity_camera_errors_total",
            "Source errors (open / read), each followed by a retry",
            ["camera"],
            registry=r,
        )
        self.decode_errors = Counter(
            "safecity_decode_errors_total",
            "Packets that did not decode (skipped to the next keyframe; the stream goes on)",
            ["camera"],
            registry=r,
        )
        self.timestamp_jumps = Counter(
            "safecity_timestamp_jumps_total",
            "Timestamps that went backwards or jumped ahead (media time re-anchored)",
            ["camera"],
            registry=r,
        )
        self.camera_decoder = Gauge(
            "safecity_camera_decoder",
            "1 for the decoder a camera uses: nvdec, or pyav (a stream NVDEC cannot decode falls back to it)",
            ["camera", "decoder"],
            registry=r,
        )
        self.camera_behind = Gauge(
            "safecity_camera_behind",
            "1 while the camera is analysed well below its rate or loses frames: this server cannot keep up",
            ["camera"],
            registry=r,
        )
        self.batch_size = Histogram(
            "safecity_batch_size_frames",
            "Frames per inference batch",
            buckets=(1, 2, 4, 8, 16, 32, 64, 128, 256),
            registry=r,
        )
        self.stage_latency = Histogram(
            "safecity_stage_latency_seconds",
            "Time spent per batch in each stage",
            ["stage"],
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self.model_latency = Histogram(
            "safecity_model_latency_seconds",
            "Inference, decode and NMS time per batch, per detector",
            ["model", "version"],
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self.model_detections = Counter(
            "safecity_model_detections_total",
            "Detections per detector, before merging",
            ["model", "version"],
            registry=r,
        )
        self.model_info = Gauge(
            "safecity_model_info",
            "1 for the version each detector runs now (state: live, or on probation after a swap)",
            ["model", "name", "version", "state"],
            registry=r,
        )
        self.model_swaps = Counter(
            "safecity_model_swaps_total",
            "Live model swaps per detector, by outcome (swapped, refused, rolled_back, kept)",
            ["model", "outcome"],
            registry=r,
        )
        self.end_to_end_latency = Histogram(
            "safecity_frame_latency_seconds",
            "From frame decode to analytics done",
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self.incidents = Counter(
            "safecity_incidents_emitted_total",
            "Incident steps committed to the outbox",
            ["type", "status"],
            registry=r,
        )
        self.events_sent = Counter(
            "safecity_events_sent_total", "Event messages sent (incl. resends)", registry=r
        )
        self.events_acked = Counter(
            "safecity_events_acked_total", "Events acknowledged by the sink", registry=r
        )
        self.events_retransmitted = Counter(
            "safecity_events_retransmitted_total", "Events sent again for want of an ack", registry=r
        )
        self.events_rejected = Counter(
            "safecity_events_rejected_total", "Events NACKed by the sink", registry=r
        )
        self.ack_latency = Histogram(
            "safecity_event_ack_latency_seconds",
            "From first send to ack",
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self.sink_connected = Gauge(
            "safecity_sink_connected", "1 while the connection to the sink is up (handshake done)", registry=r
        )
        self.sink_failovers = Counter(
            "safecity_sink_failovers_total",
            "Moves to another sink replica (the one in use unreachable) or back to the preferred one",
            registry=r,
        )
        self.snapshots_served = Counter(
            "safecity_snapshots_served_total", "Snapshots sent to the sink on its request", registry=r
        )
        self.outbox_pending = Gauge(
            "safecity_outbox_pending_events", "Events not yet acknowledged", registry=r
        )
        self.outbox_writable = Gauge(
            "safecity_outbox_writable",
            "0 while incidents cannot be written to the outbox (full disk)",
            registry=r,
        )
        self.outbox_write_errors = Counter(
            "safecity_outbox_write_errors_total",
            "Failed outbox commits (the events are held and retried)",
            registry=r,
        )
        self.outbox_held_events = Gauge(
            "safecity_outbox_held_events",
            "Incident events held in memory until the outbox takes them",
            registry=r,
        )
        self.incident_events_lost = Counter(
            "safecity_incident_events_lost_total",
            "Incident events dropped because the outbox could not take them for too long",
            registry=r,
        )
        self.outbox_oldest_age = Gauge(
            "safecity_outbox_oldest_pending_age_seconds", "Age of the oldest unacknowledged event", registry=r
        )
        self.clips = Counter(
            "safecity_clips_total",
            "Evidence clips written (result=written) or not (failed: no video kept, or the write failed)",
            ["result"],
            registry=r,
        )
        self.clip_buffer_bytes = Gauge(
            "safecity_clip_buffer_bytes", "Compressed video the cameras keep in memory for clips", registry=r
        )
        self.clip_bytes_served = Counter(
            "safecity_clip_bytes_served_total", "Bytes of evidence clips sent to the sink", registry=r
        )


def serve_metrics(registry: CollectorRegistry, port: int, addr: str = "0.0.0.0") -> int:
    """Expose ``registry`` over HTTP; port 0 picks a free port. Returns the port; a port that cannot
    be taken is a SafeCityError naming it."""
    if not 0 <= port <= 65535:
        raise SafeCityError(f"metrics port {port}: expected 0 to 65535")
    try:
        server, _thread = start_http_server(port, addr=addr, registry=registry)
    except OSError as err:
        why = "is in use" if err.errno == errno.EADDRINUSE else f"cannot be opened ({err.strerror or err})"
        raise SafeCityError(
            f"metrics port {port} on {addr} {why}; choose another with --metrics-port"
        ) from None
    return int(server.server_port)
