// The status page: cameras, engine, alerts and the timeline (timeline.js), live from /api/events/stream (Server-Sent Events read
// with fetch, so that the token travels in a header, never in a URL). Plain JS, no build step.
"use strict";

const MAX_ALERTS = 50;
const state = { token: null, alerts: new Set() };

function readToken() {
  const m = location.hash.match(/token=([^&]+)/);
  if (m) {
    sessionStorage.setItem("streamer-token", decodeURIComponent(m[1]));
    history.replaceState(null, "", location.pathname);  // not left in the address bar
  }
  state.token = sessionStorage.getItem("streamer-token");
}

function headers() {
  return state.token ? { Authorization: "Bearer " + state.token } : {};
}

async function api(path) {
  const r = await fetch(path, { headers: headers(), cache: "no-store" });
  if (r.status === 401) { askToken(); throw new Error("unauthorised"); }
  if (!r.ok) throw new Error(path + ": HTTP " + r.status);
  return r;
}

function askToken() {
  const form = document.getElementById("login");
  form.hidden = false;
  form.onsubmit = (ev) => {
    ev.preventDefault();
    sessionStorage.setItem("streamer-token", document.getElementById("token").value);
    location.reload();
  };
}

function fmt(v, digits, unit) {
  if (v === null || v === undefined) return "-";
  return Number(v).toFixed(digits) + (unit || "");
}

// ---- cameras ----------------------------------------------------------------------------------
function renderCameras(cameras) {
  const box = document.getElementById("cameras");
  const seen = new Set();
  for (const c of cameras) {
    seen.add(c.id);
    let card = box.querySelector(`[data-camera="${CSS.escape(c.id)}"]`);
    if (!card) {
      card = document.getElementById("card-tpl").content.firstElementChild.cloneNode(true);
      card.dataset.camera = c.id;
      card.id = "camera-" + c.id;
      card.querySelector(".cam-id").textContent = c.id;
      box.appendChild(card);
    }
    const badge = card.querySelector(".state");
    badge.textContent = c.state;
    badge.className = "badge state " + c.state;
    card.dataset.state = c.state;
    card.querySelector(".cam-url").textContent = c.url + (c.audio ? "  + " + c.audio : "");
    card.querySelector(".fps").textContent = fmt(c.fps, 1);
    card.querySelector(".latency").textContent = fmt(c.latency_p99_ms, 0, " ms");
    card.querySelector(".dropped").textContent = c.dropped;
    card.querySelector(".windows").textContent = c.windows;
    card.querySelector(".alert-count").textContent = c.alerts;
    card.querySelector(".level").textContent = c.level ? fmt(c.level.rms_dbfs, 0) : "-";
    const ul = card.querySelector(".scores");
    ul.replaceChildren(...(c.top_scores || []).map((s) => {
      const li = document.createElement("li");
      const name = document.createElement("span");
      name.textContent = s.class;
      const bar = document.createElement("span");
      bar.className = "bar";
      const fill = document.createElement("i");
      fill.style.width = Math.round(Math.max(0, Math.min(1, s.score)) * 100) + "%";
      bar.appendChild(fill);
      const val = document.createElement("span");
      val.textContent = s.score.toFixed(2);
      li.append(name, bar, val);
      return li;
    }));
    const la = c.last_alert;
    card.querySelector(".last-alert").textContent = la ? `last alert: ${la.event} ${la.state} ${la.time}` : "no alert yet";
  }
  for (const card of [...box.children]) {
    if (!seen.has(card.dataset.camera)) card.remove();
  }
  document.getElementById("camera-count").textContent = `(${cameras.length})`;
  Timeline.cameras(cameras.map((c) => c.id));
}

function renderEngine(snap) {
  const e = snap.engine || {};
  document.getElementById("engine-backend").textContent = (e.backend || "-") + (e.alive === false ? " (down)" : "");
  document.getElementById("engine-model").textContent = e.model ? `${e.model.name} ${e.model.version}` : "-";
  document.getElementById("engine-batch").textContent = `${fmt(e.batch_mean, 1)} / ${e.max_batch ?? "-"}`;
  document.getElementById("engine-wps").textContent = fmt(e.windows_per_s, 1);
  document.getElementById("engine-replica").textContent = `${snap.replica} of ${snap.replicas}`;
}

// ---- alerts -----------------------------------------------------------------------------------
async function blobUrl(path) {
  const r = await api(path);
  return URL.createObjectURL(await r.blob());
}

function addAlert(a, atTop) {
  if (state.alerts.has(a.id)) return;
  state.alerts.add(a.id);
  const li = document.getElementById("alert-tpl").content.firstElementChild.cloneNode(true);
  li.dataset.alertId = a.id;
  li.id = "alert-" + a.id;
  li.querySelector(".a-event").textContent = a.event;
  const st = li.querySelector(".a-state");
  st.textContent = a.state + (a.reason ? ` (${a.reason})` : "");
  st.className = "badge a-state " + a.state;
  li.querySelector(".a-camera").textContent = a.camera;
  li.querySelector(".a-score").textContent = "score " + Number(a.score).toFixed(3) +
    (a.level ? ` · ${fmt(a.level.rms_dbfs, 1)} dBFS` : "");
  li.querySelector(".a-top").textContent = (a.top || []).slice(0, 3).map((s) => `${s.class} ${s.score.toFixed(2)}`).join(" · ");
  li.querySelector(".a-time").textContent = a.time;
  const ev = a.evidence || {};
  const img = li.querySelector(".thumb");
  if (ev.keyframe) {
    blobUrl(`/api/alerts/${a.id}/keyframe.jpg`).then((u) => { img.src = u; img.dataset.loaded = "1"; })
      .catch(() => img.classList.add("none"));
  } else {
    img.classList.add("none");
  }
  if (ev.audio) {
    const b = document.createElement("button");
    b.textContent = "▶ audio";
    b.className = "play";
    b.onclick = async () => {
      const audio = document.createElement("audio");
      audio.controls = true;
      audio.src = await blobUrl(`/api/alerts/${a.id}/audio.wav`);
      b.replaceWith(audio);
      audio.play().catch(() => {});
    };
    li.querySelector(".a-audio").appendChild(b);
  }
  const list = document.getElementById("alerts");
  if (atTop) list.prepend(li); else list.appendChild(li);
  while (list.children.length > MAX_ALERTS) {
    const gone = list.lastElementChild;
    state.alerts.delete(gone.dataset.alertId);
    gone.remove();
  }
}

// ---- the live stream --------------------------------------------------------------------------
function setConn(text, cls) {
  const el = document.getElementById("conn");
  el.textContent = text;
  el.className = "badge " + cls;
}

async function stream() {
  for (;;) {
    try {
      const r = await api("/api/events/stream");
      setConn("live", "live");
      const reader = r.body.getReader();
      const dec = new TextDecoder();
      let buf = "";
      for (;;) {
        const { value, done } = await reader.read();
        if (done) break;
        buf += dec.decode(value, { stream: true });
        let i;
        while ((i = buf.indexOf("\n\n")) >= 0) {
          const block = buf.slice(0, i);
          buf = buf.slice(i + 2);
          let event = "message", data = "";
          for (const line of block.split("\n")) {
            if (line.startsWith("event:")) event = line.slice(6).trim();
            else if (line.startsWith("data:")) data += line.slice(5).trim();
          }
          if (!data) continue;
          const obj = JSON.parse(data);
          if (event === "alert") { addAlert(obj, true); Timeline.alert(obj); }
          else if (event === "stats") { renderCameras(obj.cameras); renderEngine(obj); }
          else if (event === "history") Timeline.rows(obj);
        }
      }
    } catch (e) {
      if (String(e.message) === "unauthorised") { setConn("token needed", "down"); return; }
    }
    setConn("reconnecting", "reconnecting");
    await new Promise((ok) => setTimeout(ok, 1000));
  }
}

async function start() {
  readToken();
  try {
    renderCameras(await (await api("/api/cameras")).json());
    const recent = await (await api("/api/alerts?limit=20")).json();
    for (const a of recent) addAlert(a, false);  // newest first
  } catch (e) {
    if (String(e.message) === "unauthorised") { setConn("token needed", "down"); return; }
  }
  stream();
}

start();
