// The timeline: per camera, the last http.history_minutes of scores as lanes (the top classes, anomaly,
// sound level) with its alerts marked; a click on a mark shows the alert's keyframe and plays its audio.
// Fed by GET /api/cameras/{id}/history once, then by the event stream's `history` rows and `alert`s.
// Plain SVG, no build step. Uses api() and blobUrl() of app.js.
"use strict";

const Timeline = (() => {
  const NS = "http://www.w3.org/2000/svg";
  const W = 900, LABEL = 120, LANE = 24, GAP = 4;
  const LEVEL_FLOOR = -90;  // dBFS at the bottom of the level lane
  const cams = new Map();  // camera -> {minutes, t, lanes, anomaly, level, alerts: Map(id -> alert)}
  const loading = new Set();  // cameras whose history is being fetched

  function lanesOf(c) {
    return [...Object.keys(c.lanes), "anomaly", "level"];
  }

  function laneOf(c, a) {
    if (a.event === "loud") return "level";
    return a.event;  // a class, or anomaly
  }

  function unit(c, lane, i) {
    if (lane === "level") {
      const v = c.level[i];
      return v === null || v === undefined ? null : Math.max(0, Math.min(1, (v - LEVEL_FLOOR) / -LEVEL_FLOOR));
    }
    if (lane === "anomaly") {
      if (!c.anomaly) return null;
      const v = c.anomaly[i];
      return v === null || v === undefined ? null : v / (v + 1);  // unbounded distance into [0, 1)
    }
    const v = (c.lanes[lane] || [])[i];
    return v === null || v === undefined ? null : v;
  }

  function el(name, attrs, text) {
    const e = document.createElementNS(NS, name);
    for (const [k, v] of Object.entries(attrs)) e.setAttribute(k, v);
    if (text !== undefined) e.textContent = text;
    return e;
  }

  function box(cid) {
    const all = document.getElementById("timelines");
    let b = all.querySelector(`[data-timeline="${CSS.escape(cid)}"]`);
    if (!b) {
      b = document.createElement("div");
      b.className = "timeline";
      b.dataset.timeline = cid;
      const h = document.createElement("h3");
      h.textContent = cid;
      b.append(h, el("svg", { viewBox: `0 0 ${W} 10`, class: "lanes" }));
      all.appendChild(b);
    }
    return b;
  }

  function draw(cid) {
    const c = cams.get(cid);
    if (!c) return;
    const svg = box(cid).querySelector("svg");
    // the last `minutes`, or since the oldest row when the camera has run for less
    const now = Date.now() / 1000, t0 = Math.max(now - c.minutes * 60, c.t.length ? c.t[0] : now - 60), span = now - t0;
    const x = (t) => LABEL + ((t - t0) / span) * (W - LABEL);
    const lanes = lanesOf(c), bottom = lanes.length * (LANE + GAP);
    svg.setAttribute("viewBox", `0 0 ${W} ${bottom + 12}`);
    svg.replaceChildren(
      el("text", { x: LABEL, y: bottom + 9, class: "axis" }, `-${span >= 120 ? (span / 60).toFixed(0) + " min" : span.toFixed(0) + " s"}`),
      el("text", { x: W, y: bottom + 9, class: "axis end" }, "now"));
    lanes.forEach((lane, k) => {
      const y0 = k * (LANE + GAP), g = el("g", { class: "lane", "data-lane": lane });
      g.append(el("rect", { x: LABEL, y: y0, width: W - LABEL, height: LANE, class: "lane-bg" }),
        el("text", { x: LABEL - 6, y: y0 + LANE / 2 + 4, class: "lane-name" }, lane === "level" ? "level dBFS" : lane));
      let d = "", pen = false;
      c.t.forEach((t, i) => {
        const u = unit(c, lane, i);
        if (u === null || t < t0) { pen = false; return; }
        d += `${pen ? "L" : "M"}${x(t).toFixed(1)},${(y0 + LANE - u * LANE).toFixed(1)}`;
        pen = true;
      });
      g.appendChild(el("path", { d, class: "trace " + (lane === "level" || lane === "anomaly" ? lane : "score") }));
      svg.appendChild(g);
    });
    for (const a of c.alerts.values()) {
      const k = lanes.indexOf(laneOf(c, a)), t = Date.parse(a.end_utc) / 1000;
      if (k < 0 || t < t0) continue;
      const m = el("circle", { cx: x(Math.min(t, now)), cy: k * (LANE + GAP) + LANE / 2, r: 6,
        class: "mark " + a.state, "data-alert-id": a.id, "data-lane": laneOf(c, a) });
      m.appendChild(el("title", {}, `${a.event} ${a.state} ${a.time} score ${Number(a.score).toFixed(3)}`));
      m.addEventListener("click", () => review(a));
      svg.appendChild(m);
    }
    svg.dataset.lastT = c.t.length ? String(c.t[c.t.length - 1]) : "";
  }

  async function load(cid) {
    if (loading.has(cid)) return;
    loading.add(cid);
    try {
      const h = await (await api(`/api/cameras/${encodeURIComponent(cid)}/history`)).json();
      const alerts = new Map((h.alerts || []).map((a) => [a.id, a]));
      const prev = cams.get(cid);
      for (const [id, a] of (prev ? prev.alerts : [])) alerts.set(id, a);  // alerts that came meanwhile
      cams.set(cid, { minutes: h.minutes, t: h.t, lanes: h.lanes, anomaly: h.anomaly, level: h.level, alerts });
      draw(cid);
    } catch (e) {
      // the next `history` rows try again
    } finally {
      loading.delete(cid);
    }
  }

  function sameLanes(c, view) {
    const a = Object.keys(c.lanes), b = Object.keys(view.lanes);
    return a.length === b.length && a.every((k, i) => k === b[i]) && (c.anomaly === null) === (view.anomaly === null);
  }

  // the event stream's `history`: {camera: rows since the last ones sent}
  function rows(obj) {
    for (const [cid, view] of Object.entries(obj)) {
      const c = cams.get(cid);
      if (!c || !sameLanes(c, view)) { load(cid); continue; }
      const last = c.t.length ? c.t[c.t.length - 1] : -Infinity, keep = c.t[c.t.length - 1] - c.minutes * 60;
      view.t.forEach((t, i) => {
        if (t <= last) return;
        c.t.push(t);
        for (const k of Object.keys(c.lanes)) c.lanes[k].push(view.lanes[k][i]);
        if (c.anomaly) c.anomaly.push(view.anomaly[i]);
        c.level.push(view.level[i]);
      });
      let drop = 0;
      while (drop < c.t.length && c.t[drop] < keep) drop++;
      if (drop) {
        c.t.splice(0, drop);
        for (const k of Object.keys(c.lanes)) c.lanes[k].splice(0, drop);
        if (c.anomaly) c.anomaly.splice(0, drop);
        c.level.splice(0, drop);
      }
      draw(cid);
    }
  }

  function alert(a) {
    const c = cams.get(a.camera);
    if (!c) { load(a.camera); return; }
    c.alerts.set(a.id, a);
    if (lanesOf(c).includes(laneOf(c, a))) draw(a.camera);
    else load(a.camera);  // a class not among the lanes: the server now ranks it in
  }

  function cameras(ids) {
    for (const cid of ids) if (!cams.has(cid)) load(cid);
    for (const cid of [...cams.keys()]) {
      if (!ids.includes(cid)) {
        cams.delete(cid);
        const b = document.querySelector(`[data-timeline="${CSS.escape(cid)}"]`);
        if (b) b.remove();
      }
    }
  }

  async function review(a) {
    const box = document.getElementById("review");
    box.hidden = false;
    box.dataset.alertId = a.id;
    const head = document.createElement("div");
    head.textContent = `${a.camera} · ${a.event} ${a.state} · score ${Number(a.score).toFixed(3)}` +
      (a.level ? ` · ${a.level.rms_dbfs} dBFS` : "") + ` · ${a.time}`;
    const top = document.createElement("div");
    top.className = "a-top";
    top.textContent = (a.top || []).map((s) => `${s.class} ${s.score.toFixed(2)}`).join(" · ");
    box.replaceChildren(head, top);
    const ev = a.evidence || {};
    if (ev.keyframe) {
      const img = document.createElement("img");
      img.className = "review-frame";
      img.alt = "keyframe";
      box.appendChild(img);
      img.src = await blobUrl(`/api/alerts/${a.id}/keyframe.jpg`);
      img.dataset.loaded = "1";
    }
    if (ev.audio) {
      const audio = document.createElement("audio");
      audio.controls = true;
      box.appendChild(audio);
      audio.src = await blobUrl(`/api/alerts/${a.id}/audio.wav`);
      audio.dataset.loaded = "1";
      audio.play().catch(() => {});
    }
    if (!ev.keyframe && !ev.audio) box.appendChild(document.createTextNode("no evidence (end alerts have none)"));
  }

  return { cameras, rows, alert, draw, review };
})();
