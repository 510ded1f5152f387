// Safe City ICCC console: live queue, incident page, cameras and the zone editor. No build step.
"use strict";
const $ = (sel, root = document) => root.querySelector(sel);
const csrf = () => ($('meta[name="csrf"]') || {}).content || "";
const page = document.body.dataset.page;
const esc = (s) => String(s ?? "").replace(/[&<>"']/g, (c) => ({ "&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&#39;" })[c]);
const human = (s) => String(s ?? "").replace(/_/g, " ");
const href = (source, id) => `/incidents/${encodeURIComponent(source)}/${encodeURIComponent(id)}`;

function localTimes(root = document) {
  for (const t of root.querySelectorAll("time[datetime]")) {
    const d = new Date(t.getAttribute("datetime"));
    if (!isNaN(d)) { t.textContent = d.toLocaleString(); t.title = t.getAttribute("datetime"); }
  }
}

async function api(path, options = {}) {
  const r = await fetch(path, { credentials: "same-origin", ...options });
  if (r.status === 401) { location.href = "/login"; throw new Error("logged out"); }
  const body = await r.json();
  if (!r.ok) throw new Error(body.error || r.statusText);
  return body;
}

// One event stream per page; reconnects by itself (the server says how soon).
function stream(handlers) {
  const live = $("#live");
  if (live) live.hidden = false;
  const es = new EventSource("/api/stream");
  es.addEventListener("hello", () => { if (live) { live.textContent = "live"; live.classList.remove("off"); } if (handlers.open) handlers.open(); });
  es.onerror = () => { if (live) { live.textContent = "reconnecting"; live.classList.add("off"); } };
  es.addEventListener("logout", () => { location.href = "/login"; });
  es.addEventListener("reload", () => { if (handlers.open) handlers.open(); else location.reload(); });
  for (const kind of ["incident", "camera"]) {
    if (handlers[kind]) es.addEventListener(kind, (ev) => handlers[kind](JSON.parse(ev.data)));
  }
  return es;
}

// -- the queue ----------------------------------------------------------------------------------
function queuePage() {
  const tbody = $("#queue"), form = $("#filters");
  const rows = new Map();
  const filters = () => {
    const q = new URLSearchParams();
    for (const [k, v] of new FormData(form)) {
      if (!v) continue;
      q.set(k, (k === "since" || k === "until") ? new Date(v).toISOString() : v);
    }
    return q;
  };
  const matches = (inc) => {
    const q = filters();
    if (q.get("type") && inc.type !== q.get("type")) return false;
    if (q.get("severity") && inc.severity !== q.get("severity")) return false;
    if (q.get("state") && inc.state !== q.get("state")) return false;
    if (q.get("camera") && inc.camera_id !== q.get("camera")) return false;
    if (q.get("edge") && inc.source !== q.get("edge")) return false;
    if (q.get("since") && inc.started_at < q.get("since")) return false;
    if (q.get("until") && inc.started_at >= q.get("until")) return false;
    return true;
  };
  const row = (inc) => {
    const tr = document.createElement("tr");
    tr.dataset.key = inc.source + "/" + inc.incident_id;
    tr.dataset.started = inc.started_at;
    tr.className = "incident-row state-row-" + inc.state;
    tr.innerHTML = `<td><time datetime="${esc(inc.started_at)}">${esc(inc.started_at)}</time></td>` +
      `<td><a href="${href(inc.source, inc.incident_id)}">${esc(human(inc.type))}</a></td>` +
      `<td><span class="sev sev-${esc(inc.severity)}">${esc(inc.severity)}</span></td>` +
      `<td>${esc(inc.camera_id)}</td><td>${esc(inc.zone)}</td><td>${esc(inc.source)}</td>` +
      `<td>${esc(inc.edge_status)}</td><td><span class="state state-${esc(inc.state)}">${esc(human(inc.state))}</span></td>` +
      `<td>${esc(inc.state_by)}</td>`;
    tr.addEventListener("click", (ev) => { if (ev.target.tagName !== "A") location.href = href(inc.source, inc.incident_id); });
    localTimes(tr);
    return tr;
  };
  const place = (inc, fresh) => {
    const key = inc.source + "/" + inc.incident_id;
    const old = rows.get(key);
    if (!matches(inc)) { if (old) { old.remove(); rows.delete(key); } return; }
    const tr = row(inc);
    if (fresh) tr.classList.add("fresh");
    if (old) { old.replaceWith(tr); } else {
      const next = [...tbody.children].find((r) => r.dataset.started && r.dataset.started < inc.started_at);
      tbody.insertBefore(tr, next || null);
      const empty = $(".empty", tbody); if (empty) empty.remove();
    }
    rows.set(key, tr);
  };
  const load = async () => {
    const list = await api("/api/incidents?" + filters().toString());
    tbody.innerHTML = list.length ? "" : '<tr class="empty"><td colspan="9" class="muted">no incidents</td></tr>';
    rows.clear();
    for (const inc of list) place(inc, false);
  };
  form.addEventListener("change", load);
  form.addEventListener("reset", () => setTimeout(load, 0));
  stream({ open: load, incident: (inc) => place(inc, true) });
}

// -- one incident ---------------------------------------------------------------------------------
function incidentPage() {
  const { source, incident } = document.body.dataset;
  let rev = Number(document.body.dataset.rev);
  const show = (inc) => {
    const state = $("#state");
    state.textContent = human(inc.state);
    state.className = "state state-" + inc.state;
    for (const f of document.querySelectorAll("form.action")) {
      f.hidden = !f.dataset.from.split(" ").includes(inc.state);
      $(".expected", f).value = inc.state;
    }
    const log = $("#action-log");
    log.innerHTML = inc.actions.map((a) => `<li><time datetime="${new Date(a.at * 1000).toISOString()}"></time> ` +
      `<b>${esc(a.user)}</b> ${esc(human(a.action))} (${esc(a.from_state)} → ${esc(a.to_state)})` +
      `${a.comment ? ": " + esc(a.comment) : ""}</li>`).join("");
    localTimes(log);
  };
  stream({
    incident: async (inc) => {
      if (inc.source !== source || inc.incident_id !== incident || inc.rev <= rev) return;
      rev = inc.rev;
      show(await api(`/api${href(source, incident)}`));
    },
  });
}

// -- cameras ----------------------------------------------------------------------------------------
function camerasPage() {
  const tbody = $("#cameras");
  const cams = new Map();
  const render = () => {
    const list = [...cams.values()].sort((a, b) => (a.source + a.camera_id).localeCompare(b.source + b.camera_id));
    tbody.innerHTML = list.length ? list.map((c) => `<tr data-camera="${esc(c.camera_id)}">` +
      `<td>${esc(c.source)}</td><td>${esc(c.camera_id)}</td><td class="${esc(c.state)}">${esc(c.state)}${c.behind ? " (behind)" : ""}</td>` +
      `<td>${c.last_frame_age_s == null ? "–" : c.last_frame_age_s.toFixed(1) + " s ago"}</td>` +
      `<td>${c.analysed_fps == null ? "–" : c.analysed_fps.toFixed(1) + " fps"}</td><td>${c.incidents_today}</td>` +
      `<td>${c.heartbeat_age_s.toFixed(0)} s ago</td>` +
      `<td><a href="/zones/${encodeURIComponent(c.source)}/${encodeURIComponent(c.camera_id)}">zones</a></td></tr>`).join("")
      : '<tr><td colspan="8" class="muted">no edge has reported a camera yet</td></tr>';
  };
  const load = async () => { cams.clear(); for (const c of await api("/api/cameras")) cams.set(c.source + "/" + c.camera_id, c); render(); };
  stream({ open: load, camera: (c) => { cams.set(c.source + "/" + c.camera_id, c); render(); } });
  setInterval(load, 10000); // rates and ages; state changes come at once over the stream
}

// -- the zone editor ------------------------------------------------------------------------------
function zoneEditor() {
  const { camera, snapshot, source, push } = document.body.dataset;
  const canvas = $("#zone-canvas"), ctx = canvas.getContext("2d");
  const shapes = []; // {kind: "zone"|"line", name, zoneKind, points: [[x, y] in 0..1]}
  let current = null;
  const img = new Image();
  const draw = () => {
    ctx.clearRect(0, 0, canvas.width, canvas.height);
    if (img.complete && img.naturalWidth) ctx.drawImage(img, 0, 0, canvas.width, canvas.height);
    for (const s of [...shapes, current].filter(Boolean)) {
      ctx.strokeStyle = s.kind === "line" ? "#4dabf7" : "#ffd43b"; ctx.lineWidth = 3;
      ctx.fillStyle = "rgba(255, 212, 59, 0.25)";
      ctx.beginPath();
      s.points.forEach(([x, y], i) => (i ? ctx.lineTo : ctx.moveTo).call(ctx, x * canvas.width, y * canvas.height));
      if (s !== current && s.kind === "zone") { ctx.closePath(); ctx.fill(); }
      ctx.stroke();
      for (const [x, y] of s.points) { ctx.fillStyle = "#fff"; ctx.fillRect(x * canvas.width - 3, y * canvas.height - 3, 6, 6); }
    }
  };
  const list = () => {
    $("#shapes").innerHTML = shapes.map((s, i) => `<li>${esc(s.kind)} <b>${esc(s.name)}</b>${s.zoneKind ? " (" + esc(s.zoneKind) + ")" : ""} ` +
      `<button type="button" data-remove="${i}">remove</button></li>`).join("");
  };
  const nextName = () => { $("#shape-name").value = `${current ? current.kind : "zone"}-${shapes.length + 1}`; };
  const finish = () => {
    if (!current) return;
    const need = current.kind === "line" ? 2 : 3;
    if (current.points.length < need) { $("#export-error").textContent = `a ${current.kind} needs ${need} points`; return; }
    current.name = $("#shape-name").value.trim();
    if (current.kind === "zone") { current.zoneKind = $("#shape-kind").value; current.extra = { kinds: [current.zoneKind] }; }
    shapes.push(current); current = null; list(); nextName(); draw();
  };
  canvas.addEventListener("click", (ev) => {
    const r = canvas.getBoundingClientRect();
    const x = Math.min(Math.max((ev.clientX - r.left) / r.width, 0), 1), y = Math.min(Math.max((ev.clientY - r.top) / r.height, 0), 1);
    if (!current) current = { kind: "zone", points: [] };
    current.points.push([Number(x.toFixed(4)), Number(y.toFixed(4))]);
    $("#export-error").textContent = "";
    if (current.kind === "line" && current.points.length === 2) finish();
    draw();
  });
  $("#close-polygon").addEventListener("click", finish);
  $("#new-line").addEventListener("click", () => { current = { kind: "line", points: [] }; nextName(); });
  $("#undo").addEventListener("click", () => { if (current && current.points.length) current.points.pop(); else if (shapes.length) shapes.pop(); list(); draw(); });
  $("#clear").addEventListener("click", () => { shapes.length = 0; current = null; list(); draw(); });
  $("#shapes").addEventListener("click", (ev) => { const i = ev.target.dataset.remove; if (i !== undefined) { shapes.splice(Number(i), 1); list(); draw(); } });
  // the shapes as the camera's config takes them (what a shape loaded from the edge had, kept)
  const body = () => ({
    source, camera_id: camera,
    zones: shapes.filter((s) => s.kind === "zone").map((s) => ({ ...(s.extra || {}), name: s.name, polygon: s.points })),
    lines: shapes.filter((s) => s.kind === "line").map((s) => ({ ...(s.extra || {}), name: s.name, points: s.points })),
  });
  const post = (path) => api(path, { method: "POST", headers: { "Content-Type": "application/json", "X-CSRF-Token": csrf() }, body: JSON.stringify(body()) });
  $("#export").addEventListener("click", async () => {
    if (current) finish();
    try {
      const out = await post("/api/zones/export");
      $("#yaml").value = out.yaml; $("#export-error").textContent = "";
    } catch (err) { $("#export-error").textContent = err.message; }
  });
  if (push) {
    $("#push").addEventListener("click", async () => {
      if (current) finish();
      if (!confirm(`Replace the zones and lines camera ${camera} runs with on ${source}?`)) return;
      try {
        const out = await post("/api/zones/push");
        $("#export-error").textContent = ""; $("#yaml").value = `pushed to ${source}: ${out.pushed}`;
      } catch (err) { $("#export-error").textContent = err.message; }
    });
    // what the camera runs with now, to edit rather than redraw
    api(`/api/zones/${encodeURIComponent(source)}/${encodeURIComponent(camera)}`).then((now) => {
      for (const z of now.zones) {
        const { name, polygon, normalized, ...extra } = z;
        shapes.push({ kind: "zone", name, points: polygon, zoneKind: (z.kinds || ["no_encroachment"]).join(", "), extra });
      }
      for (const l of now.lines) { const { name, points, normalized, ...extra } = l; shapes.push({ kind: "line", name, points, extra }); }
      list(); draw();
    }).catch((err) => { $("#export-error").textContent = "zones on the edge: " + err.message; });
  }
  img.onload = () => { canvas.height = Math.round(canvas.width * img.naturalHeight / img.naturalWidth); draw(); };
  if (snapshot) img.src = snapshot; else draw();
}

localTimes();
({ queue: queuePage, incident: incidentPage, cameras: camerasPage, "zones-edit": zoneEditor }[page] || (() => {}))();
