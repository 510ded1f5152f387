"""The MQTT bridge: each stored event, QoS 1, on ``PREFIX/EDGE/CAMERA/TYPE/KIND`` (KIND: new, update,
end) as ``{"kind", "redelivery", "event"}``; each camera's availability, retained, on
``PREFIX/EDGE/CAMERA/availability`` (``online`` / ``offline``: down, or its edge silent); the bridge's
own on ``PREFIX/bridge/NAME/status`` (its will says ``offline``). The cursor moves past an event
once the broker has acknowledged it (PUBACK)."""

from __future__ import annotations

import json
import logging
import ssl
import time
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

import paho.mqtt.client as mqtt

from ..errors import ConfigError
from ..events.heartbeat import read_health
from ..events.store import Db, StoreTarget
from .base import Bridge, Stored
from .state import BridgeState

log = logging.getLogger(__name__)

KINDS = {"start": "new", "update": "update", "end": "end"}
ACK_TIMEOUT_S = 10.0
RECONNECT_MIN_S = 2.0  # also how long a connection attempt may take before another
RECONNECT_MAX_S = 10.0
AVAILABILITY_EVERY_S = 1.0


@dataclass(frozen=True)
class Broker:
    host: str
    port: int
    tls: bool
    username: str | None = None
    password: str | None = None


def parse_broker(url: str, password: str | None = None) -> Broker:
    """``mqtt://[user@]host[:1883]`` or ``mqtts://[user@]host[:8883]``."""
    u = urlsplit(url)
    if u.scheme not in ("mqtt", "mqtts") or not u.hostname:
        raise ConfigError(f"--broker {url!r}: expected mqtt://host[:port] or mqtts://host[:port]")
    if u.password:
        raise ConfigError("--broker: give the password with --password-file, not in the URL")
    try:
        port = u.port or (8883 if u.scheme == "mqtts" else 1883)
    except ValueError:
        raise ConfigError(f"--broker {url!r}: the port is not a number") from None
    return Broker(u.hostname, port, u.scheme == "mqtts", u.username, password)


class MqttBridge(Bridge):
    kind = "mqtt"

    def __init__(
        self, sink_db: StoreTarget, state: BridgeState, broker: Broker, *, prefix: str = "safecity", **kw: Any
    ):
        super().__init__(sink_db, state, **kw)
        if not prefix or any(c in prefix for c in "+#") or prefix.startswith("/") or prefix.endswith("/"):
            raise ConfigError(
                f"--topic-prefix {prefix!r}: expected topic levels without + # or a leading/trailing /"
            )
        self.prefix = prefix
        self.broker = broker
        self.status_topic = f"{prefix}/bridge/{state.name}/status"
        self.client: mqtt.Client | None = None
        self.connected = False
        self._attempt_at = float("-inf")
        self._backoff = RECONNECT_MIN_S
        self._available: dict[str, str] = {}  # topic -> what was last published there
        self._last_availability = 0.0

    # -- connection --------------------------------------------------------------------------
    # One paho client per connection: when a connection is lost the client (and whatever it still
    # had queued) is dropped, and the bridge itself publishes again, from its cursor, marked as a
    # possible redelivery. (Left alone, paho would resend its unacknowledged messages unmarked.)
    def _new_client(self) -> mqtt.Client:
        client = mqtt.Client(
            mqtt.CallbackAPIVersion.VERSION2,
            client_id=f"safecity-bridge-{self.name}",
            clean_session=True,
            protocol=mqtt.MQTTv311,
        )
        client.will_set(self.status_topic, "offline", qos=1, retain=True)
        if self.broker.username:
            client.username_pw_set(self.broker.username, self.broker.password)
        if self.broker.tls:
            client.tls_set(cert_reqs=ssl.CERT_REQUIRED)
        client.reconnect_delay_set(min_delay=3600, max_delay=3600)  # never: see above
        client.on_connect = self._on_connect
        client.on_disconnect = self._on_disconnect
        client.on_connect_fail = self._on_connect_fail
        return client

    def _on_connect_fail(self, client: mqtt.Client, userdata: Any) -> None:
        if client is self.client:
            self.connected = False

    def _ensure_connected(self) -> None:
        now = time.monotonic()
        if self.connected or now - self._attempt_at < self._backoff:
            return
        old, self.client, self.connected = self.client, None, False  # its callbacks are ignored from now
        if old is not None:
            old.disconnect()
            old.loop_stop()
        self._attempt_at = now
        self._backoff = min(self._backoff * 2, RECONNECT_MAX_S)
        self.client = self._new_client()
        self.client.connect_async(self.broker.host, self.broker.port, keepalive=15)
        self.client.loop_start()

    def _on_connect(self, client: mqtt.Client, userdata: Any, flags: Any, reason: Any, props: Any) -> None:
        if reason.is_failure:
            log.error("bridge %s: the broker refused the connection: %s", self.name, reason)
            return
        if client is not self.client:
            return
        log.info("bridge %s: connected to %s:%d", self.name, self.broker.host, self.broker.port)
        self._backoff = RECONNECT_MIN_S
        self._available.clear()  # published again: the broker may have lost its retained messages
        client.publish(self.status_topic, "online", qos=1, retain=True)
        self.connected = True
        self.metrics.connected.labels(self.name).set(1)

    def _on_disconnect(self, client: mqtt.Client, userdata: Any, flags: Any, reason: Any, props: Any) -> None:
        if client is not self.client:
            return
        if self.connected:
            log.warning("bridge %s: lost the broker (%s); reconnecting", self.name, reason)
        self.connected = False
        self.metrics.connected.labels(self.name).set(0)

    def run(self) -> None:
        try:
            super().run()
        finally:
            client = self.client
            if client is not None:
                if self.connected:
                    client.publish(self.status_topic, "offline", qos=1, retain=True).wait_for_publish(2.0)
                client.disconnect()
                client.loop_stop()

    # -- what it sends -------------------------------------------------------------------------
    def topic(self, event: dict[str, Any]) -> str:
        kind = KINDS.get(event["status"], event["status"])
        return f"{self.prefix}/{event['source']}/{event['camera_id']}/{event['type']}/{kind}"

    def ready(self) -> bool:
        return self.connected and self.client is not None

    def deliver(self, events: list[Stored]) -> int:
        client = self.client
        if not self.connected or client is None:
            return 0
        sent: list[tuple[Stored, mqtt.MQTTMessageInfo]] = []
        for s in events:
            payload = {"kind": KINDS.get(s.event["status"]), "redelivery": s.redelivery, "event": s.event}
            info = client.publish(self.topic(s.event), json.dumps(payload, separators=(",", ":")), qos=1)
            if info.rc != mqtt.MQTT_ERR_SUCCESS:
                break
            sent.append((s, info))
        done = 0
        deadline = time.monotonic() + ACK_TIMEOUT_S
        for _, info in sent:  # acknowledged in order: the cursor moves past the acknowledged prefix
            while not info.is_published():
                if self.stop_event.is_set() or not self.connected or time.monotonic() > deadline:
                    if done < len(sent):
                        self.metrics.failures.labels(self.name).inc()
                    return sent[done - 1][0].position if done else 0
                time.sleep(0.005)
            done += 1
        self.metrics.delivered.labels(self.name).inc(done)
        return sent[-1][0].position if sent else 0

    def tick(self, sink: Db) -> None:
        """Each camera's availability, retained, when it changes (and all again after a reconnection)."""
        self._ensure_connected()
        now = time.monotonic()
        client = self.client
        if not self.connected or client is None or now - self._last_availability < AVAILABILITY_EVERY_S:
            return
        self._last_availability = now
        for cam in read_health(sink, time.time()):
            topic = f"{self.prefix}/{cam['source']}/{cam['camera_id']}/availability"
            value = "online" if cam["state"] == "up" else "offline"
            if self._available.get(topic) != value:
                try:
                    info = client.publish(topic, value, qos=1, retain=True)
                except ValueError as err:  # ids are checked at the sink; this keeps one bad row harmless
                    log.warning("bridge %s: availability for %r not published: %s", self.name, topic, err)
                    self._available[topic] = value
                    continue
                if info.rc == mqtt.MQTT_ERR_SUCCESS:
                    self._available[topic] = value
