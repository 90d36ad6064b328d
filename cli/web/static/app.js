// cellsift review page: plain JavaScript, no build step, no network beyond this server.
"use strict";
const REASONS = ["no_transients", "irregular_shape", "borrowed_fluorescence", "overlap", "background"];
const S = { queue: null, view: [], pos: 0, cards: new Map(), fields: new Map(), undo: [], fieldKind: "max_proj",
            playing: true, clipFrame: 0, clipTimer: null, card: null, retrainPoll: null };
const $ = (id) => document.getElementById(id);

async function api(path, body) {
  const opts = body === undefined ? {} : { method: "POST", body: JSON.stringify(body),
    headers: { "Content-Type": "application/json", "X-Cellsift": "1" } };
  const res = await fetch(path, opts);
  const data = await res.json();
  if (!res.ok) throw new Error(data.error || res.statusText);
  return data;
}
function toast(msg) { const t = $("toast"); t.textContent = msg; t.hidden = false; setTimeout(() => { t.hidden = true; }, 6000); }
function bytes(b64) { const s = atob(b64); const a = new Uint8Array(s.length); for (let i = 0; i < s.length; i++) a[i] = s.charCodeAt(i); return a; }

// ---------- queue and filters ----------
function fill(select, values) {
  for (const v of values) { const o = document.createElement("option"); o.value = v; o.textContent = v; select.appendChild(o); }
}
function applyFilters(keepCid) {
  const q = S.queue, f = (id) => $(id).value, view = [];
  const fa = f("f-animal"), fs = f("f-session"), fl = f("f-label"), fr = f("f-reason"), fo = f("f-ood"), fm = f("f-mine");
  for (let i = 0; i < q.cid.length; i++) {
    if (fa && q.animal[i] !== fa) continue;
    if (fs && q.session[i] !== fs) continue;
    if (fl && (fl === "none" ? q.label[i] !== null : q.label[i] !== fl)) continue;
    if (fr && q.reason[i] !== fr) continue;
    if (fo && q.ood[i] !== (fo === "yes")) continue;
    if (fm && ((q.mine[i] !== null) !== (fm === "done"))) continue;
    view.push(i);
  }
  S.view = view;
  let pos = keepCid ? view.findIndex((i) => q.cid[i] === keepCid) : -1;
  if (pos < 0) pos = Math.max(0, view.findIndex((i) => q.mine[i] === null));
  show(pos);
}
function renderQueue() {
  const ol = $("queue"), q = S.queue, start = Math.max(0, S.pos - 10), end = Math.min(S.view.length, start + 80);
  ol.innerHTML = "";
  for (let k = start; k < end; k++) {
    const i = S.view[k], li = document.createElement("li");
    li.dataset.cid = q.cid[i]; li.dataset.mine = q.mine[i] || "";
    if (k === S.pos) li.className = "current";
    const p = q.p_good[i] === null ? "  -  " : q.p_good[i].toFixed(2);
    li.innerHTML = `<span class="m"></span><span>${q.animal[i]} ${q.session[i]} #${q.unit_id[i]}</span><span class="p">${p}</span>`;
    li.title = q.why[i];
    li.onclick = () => show(k);
    ol.appendChild(li);
  }
  $("position").textContent = S.view.length ? `${S.pos + 1} / ${S.view.length} in view (${q.cid.length} cells)` : "no cell matches the filters";
}

// ---------- cards ----------
const AHEAD = 12;  // cells after a card whose sessions the server reads ahead
function getCard(cid, pos) {
  if (!S.cards.has(cid)) {
    // the next cells of the view (filters applied), so the server reads ahead what comes next here
    const next = pos === undefined ? [] : S.view.slice(pos + 1, pos + 1 + AHEAD).map((i) => `&ahead=${encodeURIComponent(S.queue.cid[i])}`);
    const p = api(`api/card?cid=${encodeURIComponent(cid)}${next.join("")}`);
    p.catch(() => S.cards.delete(cid));
    S.cards.set(cid, p);
    if (S.cards.size > 40) S.cards.delete(S.cards.keys().next().value);
  }
  return S.cards.get(cid);
}
function getField(sid) {
  if (!S.fields.has(sid)) S.fields.set(sid, api(`api/field?sid=${encodeURIComponent(sid)}`));
  return S.fields.get(sid);
}
async function show(pos) {
  if (!S.view.length) { renderQueue(); return; }
  S.pos = Math.max(0, Math.min(pos, S.view.length - 1));
  renderQueue();
  const cid = S.queue.cid[S.view[S.pos]];
  const t0 = performance.now();
  let card;
  try { card = await getCard(cid, S.pos); } catch (e) { toast(e.message); return; }
  if (S.queue.cid[S.view[S.pos]] !== cid) return;  // moved on meanwhile
  S.card = card;
  drawCard(card);
  window.cellsiftLastCardMs = performance.now() - t0;
  document.body.dataset.shown = cid;
  getField(card.sid).then((f) => { if (S.card === card) drawField(card, f); }).catch((e) => toast(e.message));
  for (let k = 1; k <= 3; k++) if (S.pos + k < S.view.length) getCard(S.queue.cid[S.view[S.pos + k]], S.pos + k);
}
function badge(el, text, cls) { el.textContent = text; el.className = "badge " + (cls || ""); }
function drawCard(c) {
  const i = S.view[S.pos], q = S.queue;
  $("card-cid").textContent = `${c.animal} / ${c.session} / unit ${c.unit_id}`;
  badge($("card-p"), c.p_good === null ? "not scored" : `p_good ${c.p_good.toFixed(2)}`);
  badge($("card-call"), c.label ? (c.label === "bad" && c.reason ? `bad: ${c.reason}` : c.label) : "no call", c.label || "");
  $("card-ood").hidden = !c.ood_flag;
  $("card-overlap").hidden = !c.overlap_flag && c.overlap_partner === null;
  $("card-overlap").textContent = c.overlap_flag ? `overlap-flagged (partner ${c.overlap_partner})` : `partner ${c.overlap_partner}`;
  const mine = q.mine[i];
  $("mine-label").textContent = mine ? `you: ${mine}${q.mine_reason[i] ? " (" + q.mine_reason[i] + ")" : ""}` : "";
  $("mine-label").dataset.label = mine || "";
  $("card-why").textContent = c.why;
  const crop = c.crop;
  drawGray($("crop-max"), bytes(crop.max_proj), crop.size, crop.size, overlays(crop));
  if (crop.corr) drawGray($("crop-corr"), bytes(crop.corr), crop.size, crop.size, overlays(crop));
  else clear($("crop-corr"), "no correlation image");
  drawFilm(c); startClip(c); drawTrace(c);
  $("events-note").textContent = c.events.length && !c.events[0].aligned ? "(events as logged: run cellsift analyze to align them)" : (c.events.length ? "" : "(no events)");
  const ft = $("features"); ft.innerHTML = "";
  const rows = { model: c.model_id || "-", ood_score: c.ood_score, ...c.features };
  for (const [k, v] of Object.entries(rows)) {
    const tr = ft.insertRow(); tr.insertCell().textContent = k;
    tr.insertCell().textContent = v === null ? "-" : (typeof v === "number" ? +v.toFixed(3) : v);
  }
  const nb = $("neighbours"); nb.innerHTML = "";
  for (const n of c.neighbours) {
    const li = document.createElement("li"), a = document.createElement("a");
    a.textContent = `unit ${n.unit_id}${n.unit_id === c.overlap_partner ? " (overlap partner)" : ""}`;
    a.onclick = () => jump(n.cid);
    li.appendChild(a); li.append(` ${n.label || ""} ${n.p_good === null ? "" : n.p_good.toFixed(2)}`); nb.appendChild(li);
  }
  if (!c.neighbours.length) nb.innerHTML = "<li>none in the crop</li>";
  const al = $("all-labels"); al.innerHTML = "";
  for (const l of c.labels) { const li = document.createElement("li"); li.textContent = `${l.reviewer}: ${l.label}${l.reason ? " (" + l.reason + ")" : ""}`; al.appendChild(li); }
  if (!c.labels.length) al.innerHTML = "<li>none yet</li>";
  const pick = $("reason-pick");
  if (c.label === "bad" && c.reason && REASONS.includes(c.reason)) pick.value = c.reason;
}
function jump(cid) {
  let k = S.view.findIndex((i) => S.queue.cid[i] === cid);
  if (k < 0) { for (const id of ["f-animal", "f-session", "f-label", "f-reason", "f-ood", "f-mine"]) $(id).value = ""; applyFilters(cid); return; }
  show(k);
}
function overlays(crop) {
  const out = [];
  if (crop.neighbours) out.push([bytes(crop.neighbours), "#00e5ff"]);
  if (crop.partner) out.push([bytes(crop.partner), "#ff4df0"]);
  if (crop.footprint) out.push([bytes(crop.footprint), "#ffd700"]);
  return out;
}
function clear(cv, text) {
  const g = cv.getContext("2d"); g.fillStyle = "#000"; g.fillRect(0, 0, cv.width, cv.height);
  g.fillStyle = "#8b949e"; g.font = "12px sans-serif"; g.fillText(text, 8, cv.height / 2);
}
function drawGray(cv, px, h, w, masks) {
  const img = new ImageData(w, h);
  for (let i = 0; i < h * w; i++) { const v = px[i]; img.data[4 * i] = v; img.data[4 * i + 1] = v; img.data[4 * i + 2] = v; img.data[4 * i + 3] = 255; }
  const off = document.createElement("canvas"); off.width = w; off.height = h; off.getContext("2d").putImageData(img, 0, 0);
  const g = cv.getContext("2d"); g.imageSmoothingEnabled = false;
  g.drawImage(off, 0, 0, cv.width, cv.height);
  for (const [mask, colour] of masks || []) outline(g, mask, h, w, cv.width / w, cv.height / h, colour);
}
function outline(g, mask, h, w, sx, sy, colour) {
  // the pixel-edge outline of a binary mask
  g.strokeStyle = colour; g.lineWidth = 1.5; g.beginPath();
  const at = (y, x) => y >= 0 && x >= 0 && y < h && x < w && mask[y * w + x] > 0;
  for (let y = 0; y < h; y++) for (let x = 0; x < w; x++) {
    if (!at(y, x)) continue;
    if (!at(y - 1, x)) { g.moveTo(x * sx, y * sy); g.lineTo((x + 1) * sx, y * sy); }
    if (!at(y + 1, x)) { g.moveTo(x * sx, (y + 1) * sy); g.lineTo((x + 1) * sx, (y + 1) * sy); }
    if (!at(y, x - 1)) { g.moveTo(x * sx, y * sy); g.lineTo(x * sx, (y + 1) * sy); }
    if (!at(y, x + 1)) { g.moveTo((x + 1) * sx, y * sy); g.lineTo((x + 1) * sx, (y + 1) * sy); }
  }
  g.stroke();
}
function drawField(c, f) {
  const cv = $("field"), kind = S.fieldKind === "corr" && f.corr ? "corr" : "max_proj";
  $("field-kind").textContent = kind === "corr" ? "correlation image" : "max projection";
  drawGray(cv, bytes(f[kind]), f.height, f.width, []);
  const g = cv.getContext("2d"), sx = cv.width / f.width, sy = cv.height / f.height;
  g.fillStyle = "#00e5ff";
  for (const [y, x] of f.centroids) g.fillRect(x * sx - 1, y * sy - 1, 2, 2);
  const crop = c.crop;
  g.strokeStyle = "#ffd700"; g.lineWidth = 1; g.strokeRect(crop.col0 * sx, crop.row0 * sy, crop.size * sx, crop.size * sy);
  g.beginPath(); g.arc(c.centroid[1] * sx, c.centroid[0] * sy, 5, 0, 2 * Math.PI); g.stroke();
}
function clipFrames(c) { return c.clips ? (c._frames || (c._frames = bytes(c.clips.frames))) : null; }
function drawFilm(c) {
  const cv = $("filmstrip"), g = cv.getContext("2d");
  g.fillStyle = "#000"; g.fillRect(0, 0, cv.width, cv.height);
  if (!c.clips) { clear(cv, "no clips"); return; }
  const { n_peaks, n_frames, size } = c.clips, px = clipFrames(c), step = 3, tile = 56;
  const perPeak = Math.ceil(n_frames / step), rows = Math.min(n_peaks, 3);
  cv.width = perPeak * (tile + 2); cv.height = rows * (tile + 2); g.fillStyle = "#000"; g.fillRect(0, 0, cv.width, cv.height);
  const tmp = document.createElement("canvas"); tmp.width = size; tmp.height = size;
  for (let p = 0; p < rows; p++) for (let k = 0; k < perPeak; k++) {
    const f = k * step, img = new ImageData(size, size), base = (p * n_frames + f) * size * size;
    for (let i = 0; i < size * size; i++) { const v = px[base + i]; img.data[4 * i] = v; img.data[4 * i + 1] = v; img.data[4 * i + 2] = v; img.data[4 * i + 3] = 255; }
    tmp.getContext("2d").putImageData(img, 0, 0);
    g.imageSmoothingEnabled = false; g.drawImage(tmp, k * (tile + 2), p * (tile + 2), tile, tile);
  }
}
function startClip(c) {
  S.clipFrame = 0;
  if (S.clipTimer) clearInterval(S.clipTimer);
  const cv = $("clip-player");
  if (!c.clips) { clear(cv, "no clips"); return; }
  const tick = () => {
    const { n_frames, size } = c.clips, px = clipFrames(c), f = S.clipFrame % n_frames;
    const frame = px.subarray(f * size * size, (f + 1) * size * size);
    drawGray(cv, frame, size, size, c.crop.footprint ? [[bytes(c.crop.footprint), "#ffd700"]] : []);
    $("clip-label").textContent = `peak 1/${c.clips.n_peaks}, frame ${f + 1}/${n_frames}`;
    if (S.playing) S.clipFrame++;
  };
  tick(); S.clipTimer = setInterval(tick, 1000 / Math.min(20, c.fps || 20));
}
function drawTrace(c) {
  const cv = $("trace"), g = cv.getContext("2d"), W = cv.width, H = cv.height, pad = 18;
  g.fillStyle = "#0d1117"; g.fillRect(0, 0, W, H);
  const v = c.trace.values; if (!v.length) { clear(cv, "no trace"); return; }
  const n = c.n_frames, fps = c.fps || 1, xs = (frame) => pad + (frame / n) * (W - 2 * pad);
  let lo = Infinity, hi = -Infinity; for (const y of v) { if (y < lo) lo = y; if (y > hi) hi = y; }
  const ys = (y) => H - pad - ((y - lo) / (hi - lo || 1)) * (H - 2 * pad);
  const colours = { "CS+": "#3fb95055", "CS-": "#58a6ff55", shock: "#f8514999" };
  for (const e of c.events) { g.fillStyle = colours[e.event] || "#ffffff22"; const a = xs(e.onset_s * fps), b = xs(Math.max(e.offset_s, e.onset_s + 0.5) * fps); g.fillRect(a, pad, Math.max(2, b - a), H - 2 * pad); }
  g.strokeStyle = "#c9d1d9"; g.lineWidth = 1; g.beginPath();
  const per = c.trace.envelope ? c.trace.step / 2 : 1;
  v.forEach((y, k) => { const x = xs(k * per); k ? g.lineTo(x, ys(y)) : g.moveTo(x, ys(y)); });
  g.stroke();
  g.fillStyle = "#ff7b72";
  for (const t of c.trace.transients) g.fillRect(xs(t) - 1, H - pad + 2, 3, 8);
  g.fillStyle = "#ffd700";
  for (const t of (c.clips ? c.clips.peak_frames : [])) { g.beginPath(); g.moveTo(xs(t), pad - 2); g.lineTo(xs(t) - 4, pad - 10); g.lineTo(xs(t) + 4, pad - 10); g.fill(); }
  g.fillStyle = "#8b949e"; g.font = "11px sans-serif"; g.fillText(`C_raw, ${(n / fps).toFixed(0)} s`, W - pad - 70, 12);
}

// ---------- labelling ----------
async function setLabel(label, reason, advance) {
  if (!S.view.length) return;
  const i = S.view[S.pos], q = S.queue, cid = q.cid[i];
  const prev = [q.mine[i], q.mine_reason[i]];
  try {
    const res = await api("api/label", { cid, label, reason });
    q.mine[i] = res.mine; q.mine_reason[i] = res.mine_reason;
    S.cards.delete(cid);
    if (advance) S.undo.push({ cid, prev });
  } catch (e) { toast(e.message); return; }
  if (advance) show(S.pos + 1); else { renderQueue(); show(S.pos); }
  refreshOverview();
}
async function undo() {
  const last = S.undo.pop(); if (!last) { toast("nothing to undo"); return; }
  const q = S.queue, i = q.cid.indexOf(last.cid);
  try {
    const res = await api("api/label", { cid: last.cid, label: last.prev[0], reason: last.prev[1] });
    q.mine[i] = res.mine; q.mine_reason[i] = res.mine_reason; S.cards.delete(last.cid);
  } catch (e) { toast(e.message); return; }
  jump(last.cid); refreshOverview();
}
function act(what, reason) {
  if (what === "good") setLabel("good", null, true);
  else if (what === "bad") setLabel("bad", reason || $("reason-pick").value || null, true);
  else if (what === "skip" || what === "next") show(S.pos + 1);
  else if (what === "prev") show(S.pos - 1);
  else if (what === "undo") undo();
}
document.addEventListener("keydown", (ev) => {
  if (ev.target.tagName === "SELECT" || ev.ctrlKey || ev.metaKey || ev.altKey) return;
  const k = ev.key;
  if (k === "o") { toggleOverview(); return; }
  if (!$("overview-view").hidden) return;
  if (k === "g") act("good");
  else if (k === "b") act("bad");
  else if (k >= "1" && k <= "5") act("bad", REASONS[+k - 1]);
  else if (k === "s") act("skip");
  else if (k === "u" || k === "z") act("undo");
  else if (k === "ArrowRight" || k === "n" || k === "j") act("next");
  else if (k === "ArrowLeft" || k === "p" || k === "k") act("prev");
  else if (k === " ") { S.playing = !S.playing; }
  else if (k === "f") { S.fieldKind = S.fieldKind === "corr" ? "max_proj" : "corr"; if (S.card) getField(S.card.sid).then((f) => drawField(S.card, f)); }
  else return;
  ev.preventDefault();
});

// ---------- overview and retrain ----------
function toggleOverview(on) {
  const show_ = on === undefined ? $("overview-view").hidden : on;
  $("overview-view").hidden = !show_; $("card-view").hidden = show_;
  $("tab-overview").classList.toggle("active", show_); $("tab-cards").classList.toggle("active", !show_);
  if (show_) refreshOverview();
}
async function refreshOverview() {
  let o; try { o = await api("api/overview"); } catch (e) { toast(e.message); return; }
  $("lake-name").textContent = `lake ${o.lake}`; $("reviewer").textContent = `reviewer ${o.reviewer}`;
  const models = Object.keys(o.models);
  $("model-name").textContent = `model ${models.length ? models.join(", ") : "none (not scored)"}`;
  $("progress-total").textContent = `${o.n_labelled} / ${o.n_cells} labelled (${o.n_mine} by you)`;
  $("ov-summary").textContent = `${o.n_labelled} of ${o.n_cells} cells labelled in review, ${o.n_mine} by ${o.reviewer}. Scored by ${models.length ? models.map((m) => `${m} (${o.models[m]} cells)`).join(", ") : "no model yet"}; retrain base: ${o.base_model}.`;
  const t = $("ov-sessions"); t.innerHTML = "<tr><th>animal</th><th>session</th><th>labelled / total</th><th></th><th>yours</th></tr>";
  for (const s of o.sessions) {
    const tr = t.insertRow(), frac = s.total ? s.labelled / s.total : 0;
    tr.innerHTML = `<td>${s.animal}</td><td>${s.session}</td><td>${s.labelled} / ${s.total}</td><td><span class="barbg"><span class="bar" style="width:${Math.round(120 * frac)}px"></span></span></td><td>${s.mine}</td>`;
  }
  const ma = o.model_agreement, lines = [];
  lines.push(ma.n ? `model vs review labels: ${ma.n} cells, ${(100 * ma.agree).toFixed(1)} % agree, balanced accuracy ${ma.balanced_accuracy === null ? "-" : ma.balanced_accuracy.toFixed(3)}` : "model vs review labels: no labelled cell the model scored yet");
  for (const r of o.reviewer_agreement) lines.push(`${r.reviewers[0]} vs ${r.reviewers[1]}: ${r.n} cells in common, ${(100 * r.agree).toFixed(1)} % agree, Cohen's kappa ${r.kappa === null ? "-" : r.kappa.toFixed(2)}`);
  if (!o.reviewer_agreement.length) lines.push("reviewers: no cell labelled by two reviewers yet");
  $("ov-agreement").innerHTML = lines.map((l) => `<div>${l}</div>`).join("");
  showRetrain(o.retrain, o.history);
}
function showRetrain(r, history) {
  const st = $("retrain-state"); st.dataset.state = r.state;
  st.textContent = r.state === "idle" ? "" : r.state === "running" ? "retraining..." : r.state === "done" ? `registered ${r.model_id}` : `retrain failed`;
  st.title = r.error || "";
  $("ov-retrain").textContent = r.error ? `last retrain failed: ${r.error}` : (r.model_id ? `last retrain: ${r.model_id}` : "");
  if (history) plotHistory(history);
}
function plotHistory(h) {
  const svg = $("ov-history"), W = 520, H = 240, pad = 40;
  const pts = h.filter((e) => e.balanced_accuracy !== null);
  const maxN = Math.max(10, ...h.map((e) => e.n_labels));
  const x = (n) => pad + (n / maxN) * (W - 2 * pad), y = (b) => H - pad - ((b - 0.5) / 0.5) * (H - 2 * pad);
  let s = `<line x1="${pad}" y1="${H - pad}" x2="${W - pad}" y2="${H - pad}" stroke="#8b949e"/><line x1="${pad}" y1="${pad}" x2="${pad}" y2="${H - pad}" stroke="#8b949e"/>`;
  for (const b of [0.5, 0.75, 1.0]) s += `<text x="4" y="${y(b) + 4}" fill="#8b949e" font-size="11">${b.toFixed(2)}</text>`;
  s += `<text x="${W / 2 - 40}" y="${H - 8}" fill="#8b949e" font-size="11">labelled cells</text><text x="${pad + 4}" y="${pad - 8}" fill="#8b949e" font-size="11">out-of-fold balanced accuracy</text>`;
  s += `<text x="${W - pad - 10}" y="${H - pad + 14}" fill="#8b949e" font-size="11">${maxN}</text>`;
  if (pts.length) s += `<polyline fill="none" stroke="#58a6ff" stroke-width="2" points="${pts.map((e) => `${x(e.n_labels)},${y(Math.max(0.5, e.balanced_accuracy))}`).join(" ")}"/>`;
  for (const e of pts) s += `<circle cx="${x(e.n_labels)}" cy="${y(Math.max(0.5, e.balanced_accuracy))}" r="4" fill="#58a6ff"><title>${e.model_id}: ${e.balanced_accuracy}</title></circle>`;
  if (!h.length) s += `<text x="${pad + 20}" y="${H / 2}" fill="#8b949e" font-size="12">no retrain yet</text>`;
  svg.innerHTML = s;
}
async function retrain() {
  try { const r = await api("api/retrain", {}); showRetrain(r, r.history); if (!r.started) toast("a retrain is already running"); }
  catch (e) { toast(e.message); return; }
  if (S.retrainPoll) clearInterval(S.retrainPoll);
  S.retrainPoll = setInterval(async () => {
    const r = await api("api/retrain"); showRetrain(r, r.history);
    $("retrain-lines").textContent = r.lines.join("\n");
    if (r.state !== "running") {
      clearInterval(S.retrainPoll); S.retrainPoll = null;
      if (r.state === "done") { await loadQueue(); refreshOverview(); }
    }
  }, 1000);
}

// ---------- start ----------
async function loadQueue() {
  const keep = S.view.length ? S.queue.cid[S.view[S.pos]] : null;
  S.queue = await api("api/queue"); S.cards.clear();
  applyFilters(keep);
}
async function start() {
  const pick = $("reason-pick");
  REASONS.forEach((r, k) => { const o = document.createElement("option"); o.value = r; o.textContent = `${k + 1} ${r}`; pick.appendChild(o); });
  document.querySelectorAll("#actions button").forEach((b) => { b.onclick = () => act(b.dataset.act); });
  $("tab-overview").onclick = () => toggleOverview(true); $("tab-cards").onclick = () => toggleOverview(false);
  $("retrain-btn").onclick = retrain;
  try { S.queue = await api("api/queue"); } catch (e) { toast(e.message); return; }
  const q = S.queue;
  fill($("f-animal"), [...new Set(q.animal)].sort()); fill($("f-session"), [...new Set(q.session)].sort());
  fill($("f-reason"), [...new Set(q.reason.filter((r) => r))].sort());
  for (const id of ["f-animal", "f-session", "f-label", "f-reason", "f-ood", "f-mine"]) $(id).onchange = () => applyFilters();
  applyFilters();
  refreshOverview();
  document.body.dataset.ready = "1";
}
start();
