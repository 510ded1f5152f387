"""The console's pages: plain server-rendered HTML (escaped here, in one place); the live parts are
filled and kept current by ``static/console.js`` from the JSON API and the event stream."""

from __future__ import annotations

import datetime as dt
import json
from html import escape
from typing import Any
from urllib.parse import quote

from .auth import Session
from .store import ACTIONS, COMMENT_REQUIRED, ROLES, STATES

TYPES = ("theft", "assault", "encroachment", "stray_animal", "accident")
SEVERITIES = ("critical", "high", "medium", "low")


def e(value: Any) -> str:
    return escape("" if value is None else str(value), quote=True)


def incident_href(source: str, incident_id: str) -> str:
    return f"/incidents/{quote(source, safe='')}/{quote(incident_id, safe='')}"


def when(ts: float | None) -> str:
    """A <time> the script shows in the browser's local time (UTC without it)."""
    if ts is None:
        return ""
    iso = dt.datetime.fromtimestamp(ts, dt.timezone.utc).isoformat(timespec="seconds").replace("+00:00", "Z")
    return f'<time datetime="{iso}">{iso}</time>'


def layout(
    title: str, body: str, *, session: Session | None, page: str, data: dict[str, str] | None = None
) -> str:
    attrs = "".join(f' data-{k}="{e(v)}"' for k, v in (data or {}).items())
    nav = ""
    if session is not None:
        links = [
            ("/", "Incidents", "queue"),
            ("/cameras", "Cameras", "cameras"),
            ("/zones", "Zones", "zones"),
        ]
        if session.may("admin"):
            links += [("/users", "Users", "users"), ("/audit", "Audit log", "audit")]
        items = "".join(
            f'<a href="{href}"{" aria-current=page" if key == page else ""}>{label}</a>'
            for href, label, key in links
        )
        nav = (
            f'<header class="top"><span class="brand">Safe City ICCC</span><nav>{items}</nav>'
            f'<span class="who">{e(session.user)} <small>{e(session.role)}</small></span>'
            f'<form method="post" action="/logout" class="inline"><input type="hidden" name="csrf" '
            f'value="{e(session.csrf)}"><button type="submit" class="link">Log out</button></form>'
            f'<span id="live" class="live" title="live updates" hidden>offline</span></header>'
        )
    csrf = f'<meta name="csrf" content="{e(session.csrf)}">' if session else ""
    role = f'<meta name="role" content="{e(session.role)}">' if session else ""
    return (
        '<!doctype html><html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f"<title>{e(title)} · Safe City ICCC</title>{csrf}{role}"
        '<link rel="stylesheet" href="/static/console.css"><script src="/static/console.js" defer></script>'
        f'</head><body data-page="{e(page)}"{attrs}>{nav}<main>{body}</main></body></html>'
    )


def login_page(*, error: str = "", login_csrf: str, name: str = "") -> str:
    msg = f'<p class="error" role="alert">{e(error)}</p>' if error else ""
    body = (
        '<form method="post" action="/login" class="card login"><h1>Safe City ICCC</h1>'
        f'{msg}<input type="hidden" name="csrf" value="{e(login_csrf)}">'
        f'<label>User <input name="name" autocomplete="username" required value="{e(name)}"></label>'
        '<label>Password <input name="password" type="password" autocomplete="current-password" '
        "required></label>"
        '<button type="submit">Log in</button></form>'
    )
    return layout("Log in", body, session=None, page="login")


def _options(values: tuple[str, ...], label: str) -> str:
    opts = "".join(f'<option value="{v}">{v.replace("_", " ")}</option>' for v in values)
    return f'<option value="">{label}</option>{opts}'


def queue_page(session: Session) -> str:
    body = (
        '<form id="filters" class="filters">'
        f'<select name="type" aria-label="type">{_options(TYPES, "all types")}</select>'
        f'<select name="severity" aria-label="severity">{_options(SEVERITIES, "all severities")}</select>'
        f'<select name="state" aria-label="status">{_options(STATES, "open and closed")}</select>'
        '<input name="camera" placeholder="camera" aria-label="camera">'
        '<input name="edge" placeholder="edge" aria-label="edge">'
        '<label>from <input name="since" type="datetime-local"></label>'
        '<label>to <input name="until" type="datetime-local"></label>'
        '<button type="reset">Clear</button></form>'
        '<table class="queue"><thead><tr><th>Started</th><th>Type</th><th>Severity</th><th>Camera</th>'
        "<th>Zone</th><th>Edge</th><th>On the edge</th><th>Status</th><th>By</th></tr></thead>"
        '<tbody id="queue"><tr><td colspan="9" class="muted">loading…</td></tr></tbody></table>'
    )
    return layout("Incidents", body, session=session, page="queue")


def _objects(event: dict[str, Any]) -> str:
    rows = "".join(
        f"<tr><td>{e(o.get('label'))}</td><td>{e(o.get('track_id'))}</td>"
        f"<td>{float(o.get('confidence', 0)):.2f}</td>"
        f"<td>{e(', '.join(o.get('models') or []))}{' (lying down)' if o.get('down') else ''}</td></tr>"
        for o in event.get("objects", [])
    )
    head = "<tr><th>Object</th><th>Track</th><th>Confidence</th><th>Detected by</th></tr>"
    return f"<table><thead>{head}</thead>{rows}</table>"


def _action_forms(session: Session, inc: dict[str, Any]) -> str:
    if not session.may("operator"):
        return '<p class="muted">Viewers cannot act on incidents.</p>'
    href = incident_href(inc["source"], inc["incident_id"])
    forms = []
    for action, (allowed, _) in ACTIONS.items():
        needs = action in COMMENT_REQUIRED
        required_note, required = (" (required)", " required") if needs else ("", "")
        label = action.replace("_", " ").capitalize()
        hidden = "" if inc["state"] in allowed else " hidden"
        forms.append(
            f'<form method="post" action="{href}/act" class="action" data-from="{" ".join(allowed)}"{hidden}>'
            f'<input type="hidden" name="csrf" value="{e(session.csrf)}">'
            f'<input type="hidden" name="action" value="{action}">'
            f'<input type="hidden" name="expected" value="{e(inc["state"])}" class="expected">'
            f'<input name="comment" placeholder="comment{required_note}"{required}'
            f' aria-label="comment for {action}" maxlength="2000">'
            + (
                '<select name="reason" aria-label="why it is false">'
                '<option value="">why? (optional)</option>'
                '<option value="detection">the model saw something that is not there</option>'
                '<option value="behaviour">the objects are right, nothing wrong happened</option>'
                "</select>"
                if action == "false_alarm"
                else ""
            )
            + f'<button type="submit" name="do" value="{action}" class="act-{action}">{label}'
            "</button></form>"
        )
    return "".join(forms)


def incident_page(session: Session, inc: dict[str, Any], *, clip_exists: bool, notice: str = "") -> str:
    ev = inc["event"]
    evidence = ev.get("evidence") or {}
    snap = inc["snapshot_sha256"]
    media = f'<img src="/snapshots/{e(snap)}" alt="annotated snapshot" class="snapshot">' if snap else ""
    clip = evidence.get("clip")
    if clip and clip_exists:
        media += f'<video src="/clips/{e(clip["sha256"])}" controls preload="metadata" class="clip"></video>'
    elif clip:
        media += '<p class="muted">The evidence clip is still being fetched from the edge.</p>'
    if not media:
        media = '<p class="muted">No snapshot with this incident.</p>'
    loc = ev.get("location")
    coords = loc.get("coordinates") if isinstance(loc, dict) else None
    location = f"{coords[1]:.5f}, {coords[0]:.5f}" if coords else ""  # GeoJSON: [longitude, latitude]
    history = "".join(
        f"<tr><td>{e(h['seq'])}</td><td>{e(h['status'])}</td><td>{_iso(h['emitted_at'])}</td></tr>"
        for h in inc["history"]
    )
    actions = "".join(
        f"<li>{when(a['at'])} <b>{e(a['user'])}</b> {e(a['action'].replace('_', ' '))} "
        f"({e(a['from_state'])} → {e(a['to_state'])}){': ' + e(a['comment']) if a['comment'] else ''}</li>"
        for a in inc["actions"]
    )
    note = f'<p class="notice" role="status">{e(notice)}</p>' if notice else ""
    state = inc["state"].replace("_", " ")
    body = (
        f'<p><a href="/">← incidents</a></p><h1>{e(inc["type"].replace("_", " ").capitalize())} '
        f'<span class="sev sev-{e(inc["severity"])}">{e(inc["severity"])}</span> '
        f'<span id="state" class="state state-{e(inc["state"])}">{e(state)}</span></h1>'
        f'{note}<div class="incident"><section class="media">{media}</section><section class="facts">'
        "<table>"
        f"<tr><th>Camera</th><td>{e(inc['camera_id'])}</td></tr><tr><th>Edge</th><td>{e(inc['source'])}</td></tr>"
        f"<tr><th>Zone</th><td>{e(inc['zone'] or '')}</td></tr><tr><th>Location</th><td>{location}</td></tr>"
        f"<tr><th>Started</th><td>{_iso(inc['started_at'])}</td></tr>"
        f"<tr><th>On the edge</th><td>{e(inc['edge_status'])} (last {_iso(inc['last_at'])})</td></tr>"
        f"<tr><th>Confidence</th><td>{e(ev.get('confidence'))}</td></tr>"
        f"<tr><th>Model</th><td>{e(_model(ev))}</td></tr>"
        f"<tr><th>Incident</th><td><code>{e(inc['incident_id'])}</code></td></tr></table>"
        f'{_objects(ev)}<h2>Actions</h2><div id="actions">{_action_forms(session, inc)}</div>'
        f'<ol id="action-log" class="log">{actions}</ol>'
        f"<h2>Events from the edge</h2><table><thead><tr><th>#</th><th>Status</th><th>Sent</th></tr></thead>"
        f"{history}</table></section></div>"
    )
    data = {"source": inc["source"], "incident": inc["incident_id"], "rev": str(inc["rev"])}
    return layout(f"{inc['type']} on {inc['camera_id']}", body, session=session, page="incident", data=data)


def _iso(text: str) -> str:
    return f'<time datetime="{e(text)}">{e(text)}</time>'


def _model(event: dict[str, Any]) -> str:
    model = event.get("model")
    if isinstance(model, dict):
        return " ".join(str(model.get(k, "")) for k in ("name", "version", "backend") if model.get(k))
    return str(model or "")


def cameras_page(session: Session, false_alarms: list[dict[str, Any]] | None = None) -> str:
    rows = "".join(
        f"<tr><td>{e(r['day'])}</td><td>{e(r['source'])}</td><td>{e(r['camera_id'])}</td>"
        f"<td>{e(r['type'].replace('_', ' '))}</td><td>{e(r['n'])}</td></tr>"
        for r in false_alarms or []
    )
    alarms = (
        '<h2>False alarms per day</h2><p class="muted">Incidents the operators marked as false alarms in '
        "the last 7 days, by the day they were marked (UTC); each is kept as an example for retraining.</p>"
        '<table class="false-alarms"><thead><tr><th>Day</th><th>Edge</th><th>Camera</th><th>Type</th>'
        f"<th>False alarms</th></tr></thead><tbody>{rows}</tbody></table>"
        if rows
        else '<h2>False alarms per day</h2><p class="muted">No false alarms marked in the last 7 days.</p>'
    )
    body = (
        '<h1>Cameras</h1><p class="muted">From the edges\' heartbeats; a camera whose edge has gone '
        "quiet is shown as unknown.</p>"
        '<table class="cameras"><thead><tr><th>Edge</th><th>Camera</th><th>State</th><th>Last frame</th>'
        "<th>Analysed</th><th>Incidents today</th><th>Heartbeat</th><th></th></tr></thead>"
        '<tbody id="cameras"><tr><td colspan="8" class="muted">loading…</td></tr></tbody></table>' + alarms
    )
    return layout("Cameras", body, session=session, page="cameras")


def zones_index(session: Session, cameras: list[tuple[str, str]]) -> str:
    items = "".join(
        f'<li><a href="/zones/{quote(s, safe="")}/{quote(c, safe="")}">{e(c)}</a> <small>{e(s)}</small></li>'
        for s, c in cameras
    )
    intro = "<p>Choose a camera to draw its zones and lines on its latest snapshot.</p>"
    body = f"<h1>Zones</h1>{intro}<ul>{items}</ul>"
    return layout("Zones", body, session=session, page="zones")


def zone_editor(
    session: Session, source: str, camera: str, snapshot: str | None, *, push: bool = False
) -> str:
    """``push``: the camera's edge is reachable and the user may change it (its zones load, and a
    button sends the edited ones back)."""
    push_button = (
        '<button type="button" id="push" title="replaces the zones and lines this camera runs with">'
        "Push to the edge</button>"
        if push
        else ""
    )
    img = f"/snapshots/{snapshot}" if snapshot else ""
    body = (
        f"<h1>Zones of {e(camera)} <small>{e(source)}</small></h1>"
        '<p class="muted">Click to add corners; "Close polygon" ends a zone, "New line" takes two clicks. '
        "Coordinates are exported normalised (0..1), so they fit the camera at any resolution.</p>"
        '<div class="editor"><div class="canvas-wrap">'
        '<canvas id="zone-canvas" width="960" height="540"></canvas></div>'
        '<div class="tools"><label>Name <input id="shape-name" value="zone-1"></label>'
        '<label>Kind <select id="shape-kind"><option>no_encroachment</option><option>carriageway</option>'
        "<option>protected</option><option>mask</option></select></label>"
        '<button type="button" id="close-polygon">Close polygon</button>'
        '<button type="button" id="new-line">New line</button>'
        '<button type="button" id="undo">Undo</button><button type="button" id="clear">Clear</button>'
        f'<button type="button" id="export">Export YAML</button>{push_button}'
        '<ul id="shapes"></ul><p id="export-error" class="error" role="alert"></p>'
        '<textarea id="yaml" rows="14" readonly aria-label="exported YAML"></textarea></div></div>'
    )
    data = {"camera": camera, "source": source, "snapshot": img, "push": "1" if push else ""}
    return layout(f"Zones of {camera}", body, session=session, page="zones-edit", data=data)


def users_page(session: Session, users: list[dict[str, Any]], notice: str = "") -> str:
    rows = "".join(
        f"<tr><td>{e(u['name'])}</td><td>{e(u['role'])}</td><td>{when(u['created_at'])}</td>"
        f"<td>{'disabled' if u['disabled'] else 'active'}</td><td>"
        f'<form method="post" action="/users/{quote(u["name"], safe="")}" class="inline">'
        f'<input type="hidden" name="csrf" value="{e(session.csrf)}">'
        f'<select name="role" aria-label="role">{_role_options(u["role"])}</select>'
        f'<button name="do" value="role">Set role</button>'
        f'<button name="do" value="{_toggle(u)}">{_toggle(u).capitalize()}</button>'
        '<button name="do" value="unlock" title="forget its failed log-ins">Unlock</button>'
        "</form></td></tr>"
        for u in users
    )
    note = f'<p class="notice" role="status">{e(notice)}</p>' if notice else ""
    body = (
        f"<h1>Users</h1>{note}<table><thead><tr><th>Name</th><th>Role</th><th>Since</th><th>State</th><th></th></tr>"
        f"</thead>{rows}</table><h2>Add a user</h2>"
        '<form method="post" action="/users" class="card">'
        f'<input type="hidden" name="csrf" value="{e(session.csrf)}">'
        '<label>Name <input name="name" required></label>'
        '<label>Role <select name="role"><option>viewer</option><option selected>operator</option>'
        "<option>admin</option></select></label>"
        '<label>Password <input name="password" type="password" minlength="10" required '
        'autocomplete="new-password"></label>'
        "<button>Add</button></form>"
    )
    return layout("Users", body, session=session, page="users")


def _role_options(current: str) -> str:
    return "".join(f"<option{' selected' if r == current else ''}>{r}</option>" for r in ROLES)


def _toggle(user: dict[str, Any]) -> str:
    return "enable" if user["disabled"] else "disable"


def audit_page(session: Session, entries: list[dict[str, Any]]) -> str:
    rows = "".join(
        f"<tr><td>{when(a['at'])}</td><td>{e(a['user'])}</td><td>{e(a['action'])}</td><td>{e(a['target'])}</td>"
        f"<td>{e(a['detail'])}</td><td>{e(a['client'])}</td></tr>"
        for a in entries
    )
    body = (
        "<h1>Audit log</h1><table><thead><tr><th>When</th><th>Who</th><th>What</th><th>On</th><th>Detail</th>"
        f"<th>From</th></tr></thead>{rows}</table>"
    )
    return layout("Audit log", body, session=session, page="audit")


def error_page(session: Session | None, status: int, message: str) -> str:
    return layout(
        str(status), f'<h1>{status}</h1><p class="error">{e(message)}</p>', session=session, page="error"
    )


def to_json(value: Any) -> bytes:
    return json.dumps(value, separators=(",", ":"), default=str).encode()
