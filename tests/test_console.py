"""The operator console over real HTTP: a real sink fed by a real edge (outbox, sender), the console
on its store. Security (sessions, CSRF, roles, throttled log-in, no secrets in logs), the incident
workflow with its audit log, the live stream, evidence, zone export and ``safecity users``."""

from __future__ import annotations

import getpass
import hashlib
import http.client
import json
import logging
import signal
import socket
import sqlite3
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

from pipeline.console import auth
from pipeline.errors import ConfigError

from .iccc import PASSWORD, Client, Iccc
from .util import wait_until


@pytest.fixture
def iccc(tmp_path: Path, port: int) -> Iterator[Iccc]:
    env = Iccc(tmp_path, port)
    yield env
    env.close()


def incidents(c: Client) -> list[dict]:
    status, body = c.get_json("/api/incidents")
    assert status == 200
    return body


def one_incident(iccc: Iccc, tmp_path: Path, **kw: object) -> tuple[str, str]:
    edge = iccc.edge(tmp_path)
    iid = edge.incident(**kw)
    c = iccc.client("viewer")
    assert wait_until(lambda: any(i["incident_id"] == iid for i in incidents(c)))
    return edge.source, iid


GET_PATHS = [
    "/", "/cameras", "/zones", "/zones/edge-1/cam-1", "/users", "/audit", "/incidents/edge-1/x",
    "/snapshots/" + "0" * 64, "/clips/" + "0" * 64, "/api/incidents", "/api/incidents/edge-1/x",
    "/api/cameras", "/api/stream", "/api/me", "/nothing-here",
]  # fmt: skip
POST_PATHS = [
    "/logout",
    "/incidents/edge-1/x/act",
    "/api/incidents/edge-1/x/act",
    "/api/zones/export",
    "/users",
]


def test_nothing_answers_without_a_session(iccc: Iccc, tmp_path: Path) -> None:
    source, iid = one_incident(iccc, tmp_path)
    anon = Client(iccc.url)
    for path in GET_PATHS + [f"/api/incidents/{source}/{iid}", f"/incidents/{source}/{iid}"]:
        status, headers, body = anon.request("GET", path)
        if path.startswith("/api/"):
            assert status == 401, path
        else:
            assert (status, headers.get("Location")) == (303, "/login"), path
        assert iid.encode() not in body
    for path in POST_PATHS:
        assert anon.request("POST", path, form={"action": "acknowledge"})[0] == 401, path
    forged = Client(iccc.url)
    status, _, _ = forged.request(
        "GET", "/api/incidents", headers={"Cookie": "safecity_session=forged-token"}
    )
    assert status == 401
    # the same requests with a session do answer
    c = iccc.client("viewer")
    assert c.request("GET", "/")[0] == 200 and c.get_json("/api/incidents")[0] == 200


def test_a_post_without_the_csrf_token_or_from_another_origin_is_refused(iccc: Iccc, tmp_path: Path) -> None:
    source, iid = one_incident(iccc, tmp_path)
    c = iccc.client("oper")
    path = f"/api/incidents/{source}/{iid}/act"
    assert c.request("POST", path, body={"action": "acknowledge"})[0] == 403
    assert (
        c.request("POST", path, body={"action": "acknowledge"}, headers={"X-CSRF-Token": "x" * 43})[0] == 403
    )
    cross = {"X-CSRF-Token": c.csrf, "Origin": "http://evil.example"}
    assert c.request("POST", path, body={"action": "acknowledge"}, headers=cross)[0] == 403
    form = c.request("POST", f"/incidents/{source}/{iid}/act", form={"action": "acknowledge"})
    assert form[0] == 403
    assert incidents(c)[0]["state"] == "new"  # none of them changed anything
    assert c.act(source, iid, "acknowledge")[0] == 200  # the token makes it
    refused = [a for a in iccc.console.store.audit_log() if a["action"] == "denied" and a["user"] == "oper"]
    assert len(refused) == 2 and all("CSRF" in a["detail"] for a in refused)  # a row per route a minute
    # the log-in form is protected too: a post without its cookie is refused
    fresh = Client(iccc.url)
    status, _, _ = fresh.request("POST", "/login", form={"csrf": "x", "name": "oper", "password": PASSWORD})
    assert status == 403


def test_roles_a_viewer_cannot_act_an_operator_cannot_manage_users(iccc: Iccc, tmp_path: Path) -> None:
    source, iid = one_incident(iccc, tmp_path)
    viewer = iccc.client("viewer")
    status, body = viewer.act(source, iid, "acknowledge")
    assert status == 403 and "viewers cannot" in body["error"]
    assert b"Viewers cannot act" in viewer.request("GET", f"/incidents/{source}/{iid}")[2]
    oper = iccc.client("oper")
    assert oper.request("GET", "/users")[0] == 403 and oper.request("GET", "/audit")[0] == 403
    status, _, _ = oper.request(
        "POST", "/users", form={"csrf": oper.csrf, "name": "mallory", "role": "admin", "password": "x" * 12}
    )
    assert status == 403
    admin = iccc.client("admin")
    status, headers, _ = admin.request(
        "POST", "/users", form={"csrf": admin.csrf, "name": "newop", "role": "operator", "password": "y" * 12}
    )
    assert b"too weak" in admin.request("GET", headers["Location"])[2]  # a run of one letter
    status, headers, _ = admin.request(
        "POST", "/users", form={"csrf": admin.csrf, "name": "newop", "role": "operator", "password": NEWOP_PW}
    )
    assert status == 303 and b"added newop" in admin.request("GET", headers["Location"])[2]
    newop = Client(iccc.url)
    assert newop.login("newop", NEWOP_PW) == 303
    assert newop.act(source, iid, "acknowledge")[0] == 200
    # a role taken away ends the sessions: the old cookie no longer works
    demoted = iccc.client("oper2")
    admin.request("POST", "/users/oper2", form={"csrf": admin.csrf, "do": "role", "role": "viewer"})
    assert demoted.get_json("/api/me")[0] == 401
    admin.request("POST", "/users/oper", form={"csrf": admin.csrf, "do": "disable"})
    assert oper.get_json("/api/me")[0] == 401 and Client(iccc.url).login("oper", PASSWORD) == 401
    # each refused reach past a role is in the audit log: who, what, from where
    denied = [(a["user"], a["target"]) for a in iccc.console.store.audit_log() if a["action"] == "denied"]
    assert ("viewer", f"POST /api/incidents/{source}/{iid}/act") in denied
    assert ("oper", "GET /users") in denied and ("oper", "GET /audit") in denied
    assert ("oper", "POST /users") in denied


NEWOP_PW = "kettle under the banyan"


@pytest.mark.parametrize(
    ("password", "why"),
    [
        (" " * 12, "too weak"),
        ("aaaaaaaaaaaa", "too weak"),
        ("password123", "too weak"),
        ("qwertyuiop", "too weak"),
        ("oper123456", "too weak"),  # the user's own name
        ("safecity2026", "too weak"),  # the product's
        ("Summer2026!", "too weak"),
        ("short", "under 10"),
        ("x" * 129, "over 128"),
        ("tab\there and more", "control characters"),
    ],
)
def test_a_weak_password_is_refused_with_the_reason(password: str, why: str) -> None:
    from pipeline.console.auth import check_password

    with pytest.raises(ConfigError, match=why):
        check_password(password, "oper")


LONG_PW = "the night shift at the old bus depot keeps its own time, and nobody minds the rain"


@pytest.mark.parametrize("password", [PASSWORD, NEWOP_PW, "Vx7#qL9!mZ2p", LONG_PW])
def test_a_strong_password_is_taken(password: str) -> None:
    from pipeline.console.auth import check_password

    assert check_password(password, "oper") == password


def test_the_workflow_each_step_recorded_with_who_and_when_and_refused_out_of_order(
    iccc: Iccc, tmp_path: Path
) -> None:
    source, iid = one_incident(iccc, tmp_path)
    a, b = iccc.client("oper"), iccc.client("oper2")
    assert a.act(source, iid, "resolve", expected="acknowledged")[0] == 409  # it is new, not acknowledged
    assert a.act(source, iid, "acknowledge", expected="new")[0] == 200
    status, body = b.act(source, iid, "acknowledge", expected="new")  # b saw it new too: too late
    assert status == 409 and "acknowledged now (by oper)" in body["error"]
    assert b.act(source, iid, "start")[0] == 200
    status, body = b.act(source, iid, "false_alarm")
    assert status == 400 and "needs a comment" in body["error"]
    assert b.act(source, iid, "explode")[0] == 400
    status, inc = b.act(source, iid, "false_alarm", comment="a delivery van, allowed here")
    assert status == 200 and inc["state"] == "false_alarm" and inc["state_by"] == "oper2"
    assert a.act(source, iid, "resolve")[0] == 409  # closed
    assert a.act(source, iid, "reopen", comment="the van came back")[0] == 200
    assert a.act(source, iid, "resolve")[0] == 200
    steps = [
        (x["user"], x["action"], x["from_state"], x["to_state"])
        for x in a.get_json(f"/api/incidents/{source}/{iid}")[1]["actions"]
    ]
    assert steps == [
        ("oper", "acknowledge", "new", "acknowledged"),
        ("oper2", "start", "acknowledged", "in_progress"),
        ("oper2", "false_alarm", "in_progress", "false_alarm"),
        ("oper", "reopen", "false_alarm", "acknowledged"),
        ("oper", "resolve", "acknowledged", "resolved"),
    ]
    log = iccc.console.store.audit_log()
    acts = [(e["user"], e["action"]) for e in reversed(log) if e["action"].startswith("incident.")]
    assert acts == [(u, "incident." + act) for u, act, _, _ in steps]
    assert all(e["at"] > time.time() - 60 for e in log)
    logins = [e for e in log if e["action"] == "login"]
    assert {e["user"] for e in logins} >= {"oper", "oper2"} and all(
        e["client"] == "127.0.0.1" for e in logins
    )
    page = iccc.client("admin").request("GET", "/audit")[2]
    assert b"incident.false_alarm" in page and b"a delivery van, allowed here" in page


def test_log_in_is_throttled_per_client(iccc: Iccc, monkeypatch: pytest.MonkeyPatch) -> None:
    c = Client(iccc.url)  # every client of this test is 127.0.0.1: one client, as the console sees it
    for _ in range(auth.FREE_FAILURES - 1):
        assert c.login("oper", "wrong password") == 401
    assert c.login("oper", PASSWORD) == 303  # under the limit, the right password works
    assert c.login("oper", "wrong password") == 401  # the limit's last free failure
    assert c.login("oper", PASSWORD) == 429  # now even the right password waits
    assert c.login("oper2", PASSWORD) == 429  # and so does another name from this client
    assert any(e["action"] == "login.throttled" for e in iccc.console.store.audit_log())
    later = auth._monotonic() + auth.LOCKOUT_S + 1
    monkeypatch.setattr(auth, "_monotonic", lambda: later)
    assert c.login("oper", PASSWORD) == 303  # after the lock-out, in again


def test_the_throttle_counts_each_user_name_across_clients_and_doubles_its_wait(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    clock = [1000.0]
    monkeypatch.setattr(auth, "_monotonic", lambda: clock[0])
    t = auth.Throttle()
    for i in range(auth.USER_FREE_FAILURES):  # one guess each from fifty addresses at one name
        assert t.attempt("user:oper", f"client:10.0.{i}.1")[0] == 0
    assert t.attempt("user:oper", "client:10.0.0.99")[0] == pytest.approx(auth.LOCKOUT_S)
    assert t.attempt("user:oper2", "client:10.0.0.99")[0] == 0  # other names from there: free
    clock[0] += auth.LOCKOUT_S + 1
    assert t.attempt("user:oper", "client:10.0.0.98")[0] == 0  # tried (and failed) again: 6 failures
    assert t.attempt("user:oper", "client:10.0.0.97")[0] == pytest.approx(2 * auth.LOCKOUT_S)
    clock[0] += 2 * auth.LOCKOUT_S + 1
    wait, mark = t.attempt("user:oper", "client:10.0.0.1")
    assert wait == 0
    t.succeeded("user:oper", "client:10.0.0.1", mark=mark)  # the right password: the name is clear again
    assert t.attempt("user:oper", "client:10.0.0.5")[0] == 0


def test_parallel_guesses_cannot_slip_past_the_throttle(iccc: Iccc) -> None:
    from concurrent.futures import ThreadPoolExecutor

    clients = [Client(iccc.url) for _ in range(12)]
    with ThreadPoolExecutor(12) as pool:
        codes = list(pool.map(lambda c: c.login("viewer", "a wrong guess"), clients))
    assert codes.count(401) == auth.FREE_FAILURES and codes.count(429) == 12 - auth.FREE_FAILURES


def test_logging_in_to_ones_own_account_does_not_reset_guessing_at_others(iccc: Iccc) -> None:
    c = Client(iccc.url)
    for name in ("oper2", "viewer", "admin", "oper2"):
        assert c.login(name, "guess") == 401
    assert c.login("oper", PASSWORD) == 303  # the attacker's own account
    assert c.login("admin", "guess") == 401  # the client's fifth failure: still counted from before
    assert c.login("admin", "guess") == 429


def test_passwords_and_their_hashes_never_reach_the_logs(
    iccc: Iccc, caplog: pytest.LogCaptureFixture, tmp_path: Path
) -> None:
    caplog.set_level(logging.DEBUG)
    c = Client(iccc.url)
    c.login("oper", "a wrong password here")
    c.login("oper", PASSWORD)
    iccc.console.users.add("late", "viewer", "another secret pass", by="test")
    hashes = [
        r[0]
        for r in sqlite3.connect(tmp_path / "console.sqlite").execute("SELECT pw_hash FROM console_users")
    ]
    assert all(h.startswith("$argon2id$") for h in hashes)
    text = caplog.text + json.dumps(iccc.console.store.audit_log())
    assert "failed log-in" in text  # the failure is logged, without what was typed
    for secret in [PASSWORD, "a wrong password here", "another secret pass", "$argon2", *hashes]:
        assert secret not in text


def test_idle_and_expired_sessions_end(iccc: Iccc, monkeypatch: pytest.MonkeyPatch) -> None:
    clock = [auth._now()]
    monkeypatch.setattr(auth, "_now", lambda: clock[0])
    c = iccc.client("oper")
    clock[0] += auth.IDLE_MINUTES * 60 - 5
    assert c.get_json("/api/me")[0] == 200  # idle, but not for long enough
    clock[0] += auth.IDLE_MINUTES * 60 + 5
    assert c.get_json("/api/me")[0] == 401  # idle too long
    busy = iccc.client("oper")
    start = clock[0]
    while clock[0] < start + auth.SESSION_HOURS * 3600 - 600:
        clock[0] += 600  # a request every 10 minutes: never idle
        assert busy.get_json("/api/me")[0] == 200
    clock[0] = start + auth.SESSION_HOURS * 3600 + 5
    assert busy.get_json("/api/me")[0] == 401  # past its absolute expiry, however active


def test_the_last_admin_cannot_be_demoted_or_disabled(iccc: Iccc) -> None:
    from pipeline.errors import ConfigError

    admin = iccc.client("admin")
    admin.request("POST", "/users/admin", form={"csrf": admin.csrf, "do": "role", "role": "operator"})
    assert "admin is the last enabled admin" in admin.request("GET", "/users")[2].decode()
    admin.request("POST", "/users/admin", form={"csrf": admin.csrf, "do": "disable"})
    assert "you cannot disable yourself" in admin.request("GET", "/users")[2].decode()
    with pytest.raises(ConfigError, match="last enabled admin"):
        iccc.console.users.set_disabled("admin", True, by="test")  # `safecity users disable admin`
    assert admin.get_json("/api/me")[1] == {"user": "admin", "role": "admin"}
    iccc.console.users.add("second", "admin", PASSWORD, by="test")
    admin.request("POST", "/users/second", form={"csrf": admin.csrf, "do": "role", "role": "viewer"})
    assert [u["role"] for u in iccc.console.users.list() if u["name"] == "second"] == ["viewer"]


def test_notices_are_not_taken_from_the_url(iccc: Iccc, tmp_path: Path) -> None:
    source, iid = one_incident(iccc, tmp_path)
    c = iccc.client("oper")
    page = c.request("GET", f"/incidents/{source}/{iid}?n=Call+this+number+now")[2]
    assert b"Call this number" not in page
    c.request(
        "POST", f"/incidents/{source}/{iid}/act", form={"csrf": c.csrf, "action": "resolve", "expected": "x"}
    )
    assert b"the incident is new now" in c.request("GET", f"/incidents/{source}/{iid}")[2]  # shown once
    assert b"the incident is new now" not in c.request("GET", f"/incidents/{source}/{iid}")[2]


def test_another_host_name_is_refused_and_head_on_the_stream_ends(iccc: Iccc) -> None:
    c = iccc.client("viewer")
    status, _, _ = c.request("GET", "/api/me", headers={"Host": "attacker.example:80"})
    assert status == 421  # a DNS-rebinding page reaches the console under its own name
    host, port = iccc.url.removeprefix("http://").split(":")
    conn = http.client.HTTPConnection(host, int(port), timeout=5)
    conn.request("HEAD", "/api/stream", headers={"Cookie": "; ".join(f"{k.name}={k.value}" for k in c.jar)})
    r = conn.getresponse()
    assert r.status == 200 and r.read() == b""  # answered and done, not a stream held open
    conn.close()


def test_one_incident_per_occurrence_with_its_history_and_evidence(iccc: Iccc, tmp_path: Path) -> None:
    edge = iccc.edge(tmp_path)
    iid = edge.incident(status="start")
    edge.incident(status="update", incident_id=iid, severity="high")
    edge.incident(status="end", incident_id=iid, severity="high", snapshot=False)
    other = edge.incident(kind="stray_animal", camera="cam-1")
    c = iccc.client("viewer")
    assert wait_until(lambda: len(incidents(c)) == 2 and {i["events"] for i in incidents(c)} == {3, 1})
    inc = c.get_json(f"/api/incidents/edge-1/{iid}")[1]
    assert [h["status"] for h in inc["history"]] == ["start", "update", "end"]
    assert (inc["edge_status"], inc["severity"], inc["state"]) == ("end", "high", "new")
    status, headers, jpeg = c.request("GET", f"/snapshots/{inc['snapshot_sha256']}")
    assert status == 200 and headers["Content-Type"] == "image/jpeg" and jpeg[:2] == b"\xff\xd8"
    assert hashlib.sha256(jpeg).hexdigest() == inc["snapshot_sha256"]
    # filters
    assert [i["incident_id"] for i in c.get_json("/api/incidents?type=stray_animal")[1]] == [other]
    assert [i["incident_id"] for i in c.get_json("/api/incidents?severity=high")[1]] == [iid]
    assert c.get_json("/api/incidents?camera=cam-9")[1] == []
    assert c.get_json("/api/incidents?state=bogus")[0] == 400
    page = c.request("GET", f"/incidents/edge-1/{iid}")[2]
    assert b"19.07600, 72.87770" in page and b"yolov3-tiny-coco 1" in page and b'class="snapshot"' in page


def test_a_clip_is_served_with_byte_ranges(iccc: Iccc) -> None:
    sha = "ab" * 32
    path = iccc.console.clip_path(sha)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(bytes(range(256)) * 4)
    c = iccc.client("viewer")
    status, headers, body = c.request("GET", f"/clips/{sha}", headers={"Range": "bytes=10-19"})
    assert (status, headers["Content-Range"], body) == (206, "bytes 10-19/1024", bytes(range(10, 20)))
    assert c.request("GET", f"/clips/{sha}", headers={"Range": "bytes=2000-"})[0] == 416
    assert c.request("GET", f"/clips/{sha}")[2] == bytes(range(256)) * 4
    assert c.request("GET", "/clips/" + "cd" * 32)[0] == 404


def test_the_live_stream_pushes_a_new_incident_and_an_action(iccc: Iccc, tmp_path: Path) -> None:
    edge = iccc.edge(tmp_path)
    c = iccc.client("oper")
    host, port = iccc.url.removeprefix("http://").split(":")
    cookie = "; ".join(f"{k.name}={k.value}" for k in c.jar)
    conn = http.client.HTTPConnection(host, int(port), timeout=10)
    conn.request("GET", "/api/stream", headers={"Cookie": cookie})
    r = conn.getresponse()
    assert r.status == 200 and r.headers["Content-Type"] == "text/event-stream"
    assert r.readline() == b"retry: 2000\n" and r.readline() == b"event: hello\n"

    def next_event(kind: str) -> dict:
        while True:
            line = r.readline()
            if line == f"event: {kind}\n".encode():
                return json.loads(r.readline().removeprefix(b"data: "))

    iid = edge.incident()
    assert next_event("incident")["incident_id"] == iid
    assert c.act("edge-1", iid, "acknowledge")[0] == 200
    pushed = next_event("incident")
    assert (pushed["incident_id"], pushed["state"], pushed["state_by"]) == (iid, "acknowledged", "oper")
    conn.close()


def test_zone_export_gives_yaml_for_the_camera_or_names_what_is_wrong(iccc: Iccc) -> None:
    c = iccc.client("oper")
    good = {
        "camera_id": "cam-1",
        "zones": [
            {"name": "bay", "polygon": [[0.1, 0.1], [0.5, 0.1], [0.5, 0.6]], "kinds": ["no_encroachment"]}
        ],
        "lines": [{"name": "gate", "points": [[0, 0.5], [1, 0.5]]}],
    }
    status, _, raw = c.request("POST", "/api/zones/export", body=good, headers={"X-CSRF-Token": c.csrf})
    exported = yaml.safe_load(json.loads(raw)["yaml"])
    assert (
        status == 200
        and exported["zones"][0]["normalized"] is True
        and exported["lines"][0]["name"] == "gate"
    )
    bad = {"camera_id": "cam-1", "zones": [{"name": "bay", "polygon": [[0.1, 0.1], [0.5, 0.1], [0.3, 0.1]]}]}
    status, _, raw = c.request("POST", "/api/zones/export", body=bad, headers={"X-CSRF-Token": c.csrf})
    assert (
        status == 400 and "zone 'bay'" in json.loads(raw)["error"] and "no area" in json.loads(raw)["error"]
    )
    viewer = iccc.client("viewer")
    assert (
        viewer.request("POST", "/api/zones/export", body=good, headers={"X-CSRF-Token": viewer.csrf})[0]
        == 403
    )


def test_safecity_users_adds_an_operator_who_can_then_log_in(iccc: Iccc, tmp_path: Path) -> None:
    def users(*args: str, password: str = "") -> subprocess.CompletedProcess:
        return subprocess.run(
            [
                sys.executable,
                "-m",
                "pipeline.cli",
                "users",
                *args,
                "--db",
                str(tmp_path / "sink.sqlite"),
                "--console-db",
                str(tmp_path / "console.sqlite"),
            ],
            input=password + "\n",
            capture_output=True,
            text=True,
            timeout=60,
        )

    done = users("add", "ravi", "--role", "operator", "--password-stdin", password="ravi's long password")
    assert done.returncode == 0, done.stderr
    assert "ravi's long password" not in done.stdout + done.stderr
    assert Client(iccc.url).login("ravi", "ravi's long password") == 303
    again = users("add", "ravi", "--role", "viewer", "--password-stdin", password="another long one")
    assert again.returncode == 2 and "exists already" in again.stderr
    short = users("add", "sita", "--role", "operator", "--password-stdin", password="short")
    assert short.returncode == 2 and "under 10 characters" in short.stderr
    spaces = users("add", "sita", "--role", "operator", "--password-stdin", password=" " * 16)
    assert spaces.returncode == 2 and "too weak" in spaces.stderr
    # the store holds password and session hashes: its owner's alone, and so are SQLite's side files
    for made in tmp_path.glob("console.sqlite*"):
        assert made.stat().st_mode & 0o777 == 0o600, made
    with sqlite3.connect(tmp_path / "console.sqlite") as db:
        who = db.execute("SELECT user FROM audit WHERE action = 'user.add' AND target = 'ravi'").fetchone()[0]
    assert who == f"cli:{getpass.getuser()}@{socket.gethostname()}"
    listed = users("list")
    assert "ravi" in listed.stdout and "operator" in listed.stdout
    assert (
        users("disable", "ravi").returncode == 0
        and Client(iccc.url).login("ravi", "ravi's long password") == 401
    )


def test_the_sink_serves_the_console_and_stops_cleanly(tmp_path: Path) -> None:
    """`safecity sink --http`: one process stores and serves; SIGTERM stops both with exit 0."""
    from .util import free_port

    db, web = tmp_path / "events.sqlite", free_port()
    add = subprocess.run(
        [sys.executable, "-m", "pipeline.cli", "users", "add", "asha", "--role", "admin", "--password-stdin",
         "--db", str(db)],
        input=PASSWORD + "\n", capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert add.returncode == 0, add.stderr
    sink = subprocess.Popen(
        [sys.executable, "-m", "pipeline.cli", "sink", "--insecure", "--bind", f"tcp://127.0.0.1:{free_port()}",
         "--db", str(db), "--http", f"127.0.0.1:{web}"],
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        c = Client(f"http://127.0.0.1:{web}")
        assert wait_until(lambda: c.login("asha", PASSWORD) == 303, 30, ignore=(OSError,))
        assert c.get_json("/api/me")[1] == {"user": "asha", "role": "admin"}
        sink.send_signal(signal.SIGTERM)
        assert sink.wait(20) == 0
        assert f"console on http://127.0.0.1:{web}" in sink.stderr.read()
    finally:
        if sink.poll() is None:
            sink.kill()


def test_a_console_port_in_use_is_a_one_line_error(tmp_path: Path) -> None:
    import socket

    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        done = subprocess.run(
            [sys.executable, "-m", "pipeline.cli", "console", "--db", str(tmp_path / "e.sqlite"),
             "--http", f"127.0.0.1:{port}"],
            capture_output=True, text=True, timeout=60,
        )  # fmt: skip
    assert done.returncode == 2 and f"cannot listen on 127.0.0.1:{port}" in done.stderr
    assert "Traceback" not in done.stderr


def test_a_false_alarm_verdict_becomes_a_hard_negative_and_a_count_per_day(
    iccc: Iccc, tmp_path: Path, clips: list[Path]
) -> None:
    """Through the console's real route: the operator marks a false alarm (why: the model saw a
    person that is not there); the frame as the camera showed it (fetched by the sink from the edge,
    nothing drawn on it) and the false box become a labelled example; `safecity dataset negatives`
    adds it to a dataset; the console counts false alarms per camera, type and day, and Prometheus
    scrapes them. A behaviour false alarm is not a detector's negative; reopening withdraws a verdict."""
    import urllib.request

    import numpy as np
    from PIL import Image
    from prometheus_client import CollectorRegistry

    from pipeline.cli import main
    from pipeline.console.verdicts import register
    from pipeline.metrics import serve_metrics
    from pipeline.ml.dataset import extract, load_info

    from .iccc import jpeg_of, video_frame

    frame = np.ascontiguousarray(video_frame(clips[0], 0.5))
    edge = iccc.edge(tmp_path)
    shadow = ("person", (40.0, 60.0, 90.0, 200.0))
    iid = edge.incident(
        frame=frame, original=True, objects=(shadow,), zone=("path", [[0, 0], [320, 0], [320, 240]])
    )
    iid2 = edge.incident(frame=frame, original=True, objects=(("person", (200.0, 60.0, 240.0, 200.0)),))
    oper = iccc.client("oper")
    assert wait_until(lambda: {iid, iid2} <= {i["incident_id"] for i in incidents(oper)})
    digest = hashlib.sha256(jpeg_of(frame)).hexdigest()
    assert wait_until(lambda: oper.request("GET", f"/snapshots/{digest}")[0] == 200, timeout_s=20)
    status, body = oper.act(
        edge.source, iid, "false_alarm", comment="a shadow on the path", reason="detection"
    )
    assert status == 200 and body["state"] == "false_alarm"
    assert (
        oper.act(edge.source, iid2, "false_alarm", comment="waiting for a friend", reason="behaviour")[0]
        == 200
    )
    assert oper.act(edge.source, iid2, "false_alarm", comment="x", reason="typo")[0] in (400, 409)
    status, examples = oper.get_json("/api/verdicts")
    assert status == 200 and {e["incident_id"]: e["reason"] for e in examples} == {
        iid: "detection",
        iid2: "behaviour",
    }
    ex = next(e for e in examples if e["incident_id"] == iid)
    assert ex["frame_jpeg_sha256"] == digest and ex["zone"] == "path" and ex["camera_id"] == "cam-1"
    assert ex["event"]["objects"][0]["bbox"] == list(shadow[1])
    assert iccc.client("viewer").get_json("/api/verdicts")[0] == 404  # viewers see counts, not examples
    status, per_day = oper.get_json("/api/false-alarms")
    assert status == 200 and [(r["camera_id"], r["type"], r["n"]) for r in per_day] == [
        ("cam-1", "encroachment", 2)
    ]
    assert b"False alarms per day" in oper.request("GET", "/cameras")[2]
    registry = CollectorRegistry()
    register(iccc.console.store, registry)
    port = serve_metrics(registry, 0, "127.0.0.1")
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as r:
        scraped = r.read().decode()
    assert 'safecity_false_alarms_last_day{camera="cam-1",edge="edge-1",type="encroachment"} 2.0' in scraped
    assert oper.request("GET", "/api/false-alarms?days=nan")[0] == 400
    assert oper.request("GET", "/api/verdicts?verdict=maybe")[0] == 400
    assert oper.act(edge.source, iid2, "reopen", comment="looking again")[0] == 200
    assert oper.act(edge.source, iid2, "false_alarm", comment="x", reason=["detection"])[0] == 400  # type: ignore[arg-type]
    assert (
        oper.act(edge.source, iid2, "false_alarm", comment="waiting for a friend", reason="behaviour")[0]
        == 200
    )
    # the dataset takes the detection false alarm (its frame, no box labelled), not the behaviour one
    dataset = tmp_path / "dataset"
    extract([clips[1]], dataset, every_s=1.0, teacher=None, names=["person"])
    argv = [
        "dataset",
        "negatives",
        str(dataset),
        "--db",
        str(iccc.db),
        "--console-db",
        str(tmp_path / "console.sqlite"),
    ]
    assert main(argv) == 0
    (added,) = load_info(dataset).negatives
    assert added["incident_id"] == iid and added["reason"] == "detection"
    image = dataset / "images" / "train" / f"{added['image']}.jpg"
    saved = np.asarray(Image.open(image).convert("RGB"), np.float32)
    assert (
        saved.shape == frame.shape and np.abs(saved - frame).mean() < 4
    )  # the clean frame, not the drawn one
    assert (dataset / "labels" / "train" / f"{added['image']}.txt").read_text() == ""
    assert main(argv) == 0 and len(load_info(dataset).negatives) == 1  # taken once
    # reopening withdraws the verdict (the dataset keeps what it took)
    assert oper.act(edge.source, iid, "reopen", comment="it was a person after all")[0] == 200
    assert [e["incident_id"] for e in oper.get_json("/api/verdicts")[1]] == [iid2]


def test_a_viewer_cannot_lock_an_operator_out_and_an_admin_can_unlock(iccc: Iccc) -> None:
    """Five wrong passwords for a name used to lock that user out from every address, with no
    unlock: a viewer who knew the operators' names could keep them out during an incident. Now the
    guesser's own address is what locks; the operator, from another address, gets in; and an admin
    can forget a name's failures."""
    t = iccc.console.throttle
    for _ in range(auth.FREE_FAILURES):  # the viewer's desk guesses at the operator's name
        assert t.attempt("user:oper", "pair:oper|10.9.9.9", "client:10.9.9.9")[0] == 0
    assert t.attempt("user:oper", "pair:oper|10.9.9.9", "client:10.9.9.9")[0] > 0  # that desk waits
    assert t.attempt("user:oper", "pair:oper|10.1.1.1", "client:10.1.1.1")[0] == 0  # the operator's desk: in
    admin = iccc.client("admin")  # logged in first: sessions are not throttled
    c = Client(iccc.url)
    for _ in range(auth.FREE_FAILURES):
        assert c.login("oper2", "wrong password") == 401
    assert c.login("oper2", PASSWORD) == 429
    status, _, _ = admin.request("POST", "/users/oper2", form={"csrf": admin.csrf, "do": "unlock"})
    assert status == 303
    assert not [k for k in t._failures if k.startswith(("user:oper2", "pair:oper2|"))]
    assert any(
        e["action"] == "user.unlock" and e["target"] == "oper2" for e in iccc.console.store.audit_log()
    )


def test_a_console_store_left_readable_by_others_is_narrowed_to_its_owner(tmp_path: Path) -> None:
    from pipeline.console.store import ConsoleStore

    path = tmp_path / "console.sqlite"
    ConsoleStore(path).close()
    path.chmod(0o644)  # made by an older version, or copied with a wide umask
    ConsoleStore(path).close()
    assert path.stat().st_mode & 0o777 == 0o600
