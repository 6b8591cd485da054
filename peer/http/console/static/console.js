// The dfs web console: plain JavaScript, no build step, every request to the peer that served it.
"use strict";

const POLL_MS = 1500;
const COLORS = ["#2457c5", "#1e8e3e", "#c77700", "#8e24aa", "#00838f", "#c5221f", "#5d4037", "#546e7a"];
const state = { session: null, prefix: "", pageToken: "", timer: null, colors: {} };

const $ = (id) => document.getElementById(id);

function el(tag, attrs, ...children) {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(attrs || {})) {
    if (key === "class") node.className = value;
    else if (key.startsWith("on")) node.addEventListener(key.slice(2), value);
    else if (key === "dataset") Object.assign(node.dataset, value);
    else node.setAttribute(key, value);
  }
  for (const child of children) {
    if (child === null || child === undefined) continue;
    node.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return node;
}

function bytes(n) {
  if (n === null || n === undefined) return "–";
  const units = ["B", "KiB", "MiB", "GiB", "TiB", "PiB"];
  let i = 0;
  while (n >= 1024 && i < units.length - 1) { n /= 1024; i++; }
  return (i === 0 ? n : n.toFixed(1)) + " " + units[i];
}

function ago(seconds) {
  if (seconds === null || seconds === undefined || seconds < 0) return "never";
  if (seconds < 1) return "now";
  if (seconds < 120) return seconds.toFixed(1) + " s ago";
  if (seconds < 7200) return Math.round(seconds / 60) + " min ago";
  return Math.round(seconds / 3600) + " h ago";
}

function short(nodeId) { return nodeId.slice(0, 12); }

function peerList(ids) {
  if (!ids.length) return ["–"];
  return ids.flatMap((id, i) => [i ? ", " : "", el("span", { class: "peer", title: id }, short(id))]);
}

class ApiError extends Error {
  constructor(status, doc) { super((doc && doc.message) || ("HTTP " + status)); this.status = status; }
}

async function api(path, options) {
  const opts = Object.assign({ credentials: "same-origin", headers: {} }, options || {});
  if (opts.method && opts.method !== "GET" && state.session) opts.headers["X-CSRF-Token"] = state.session.csrf;
  const response = await fetch("api/" + path, opts);
  const doc = await response.json().catch(() => null);
  if (response.status === 401) { showLogin(doc && doc.message); throw new ApiError(401, doc); }
  if (!response.ok) throw new ApiError(response.status, doc);
  return doc;
}

// -- session -------------------------------------------------------------------------------------

function showLogin(message) {
  stopPolling();
  state.session = null;
  for (const id of ["cluster-view", "files-view", "nav", "logout"]) $(id).hidden = true;
  $("who").textContent = "";
  $("login-view").hidden = false;
  $("login-error").textContent = message || "";
}

async function start() {
  const doc = await api("session");
  if (!doc.authenticated) { showLogin(""); return; }
  state.session = doc;
  $("login-view").hidden = true;
  $("nav").hidden = false;
  $("logout").hidden = !doc.auth;
  $("auth-off").hidden = doc.auth;
  $("who").textContent = doc.auth ? `${doc.name || doc.token_id} (${doc.role})` : "authentication off";
  route();
}

async function login(event) {
  event.preventDefault();
  $("login-error").textContent = "";
  const response = await fetch("api/login", {
    method: "POST", credentials: "same-origin",
    headers: { "Content-Type": "application/json" },
    body: JSON.stringify({ token: $("token").value }),
  });
  const doc = await response.json().catch(() => null);
  if (!response.ok) { $("login-error").textContent = (doc && doc.message) || ("HTTP " + response.status); return; }
  $("token").value = "";
  if (!location.hash) location.hash = "#cluster";
  await start();
}

async function logout() {
  await api("logout", { method: "POST" }).catch(() => null);
  showLogin("logged out");
}

// -- routing -------------------------------------------------------------------------------------

function route() {
  if (!state.session) return;
  const files = location.hash.startsWith("#files");
  $("cluster-view").hidden = files;
  $("files-view").hidden = !files;
  $("nav-cluster").classList.toggle("active", !files);
  $("nav-files").classList.toggle("active", files);
  if (files) {
    stopPolling();
    const prefix = decodeURIComponent(location.hash.slice("#files".length + 1));
    loadFiles(prefix);
  } else {
    startPolling();
  }
}

// -- cluster page --------------------------------------------------------------------------------

function stopPolling() { if (state.timer) { clearTimeout(state.timer); state.timer = null; } }

function startPolling() {
  stopPolling();
  const tick = async () => {
    try {
      renderCluster(await api("cluster"));
      $("cluster-error").textContent = "";
    } catch (err) {
      if (err.status === 401) return;
      $("cluster-error").textContent = "update failed: " + err.message;
    }
    if (!$("cluster-view").hidden) state.timer = setTimeout(tick, POLL_MS);
  };
  tick();
}

function colorOf(node) {
  if (!(node in state.colors)) state.colors[node] = COLORS[Object.keys(state.colors).length % COLORS.length];
  return state.colors[node];
}

function percent(fraction) {
  if (fraction === null || fraction === undefined) return "–";
  const p = 100 * fraction;
  if (p >= 100 || p <= 0) return Math.round(p) + " %";
  return Math.min(p, 99.9).toFixed(1) + " %";  // never "100.0 %" for a share short of all
}

// A bar of `fraction` (0..1) with its text beside it; `level` colours it (ok, warn, bad).
function bar(fraction, text, level, title) {
  const fill = el("span", { class: "fill " + (level || "") });
  fill.style.width = (100 * Math.max(0, Math.min(1, fraction))).toFixed(1) + "%";
  return el("span", { class: "meter", title: title || "" }, el("span", { class: "bar" }, fill), el("span", { class: "label" }, text));
}

function diskCell(s) {
  if (!s.disk_total_bytes) return "–";
  const used = s.disk_total_bytes - s.disk_free_bytes;
  const fraction = used / s.disk_total_bytes;
  return bar(fraction, `${bytes(used)} / ${bytes(s.disk_total_bytes)}`, fraction > 0.9 ? "bad" : fraction > 0.75 ? "warn" : "",
    `${bytes(s.disk_free_bytes)} free on the data directory's file system`);
}

function budgetCell(s) {
  if (!s.memory_budget_bytes) return "–";
  const fraction = s.memory_in_use_bytes / s.memory_budget_bytes;
  return bar(fraction, `${bytes(s.memory_in_use_bytes)} / ${bytes(s.memory_budget_bytes)}`, fraction > 0.9 ? "warn" : "",
    "upload bytes in flight, of the peer's memory budget for them");
}

function redundancyCell(fraction) {
  if (fraction === null || fraction === undefined) return "–";
  return bar(fraction, percent(fraction), fraction >= 1 ? "ok" : fraction >= 0.9 ? "warn" : "bad");
}

function peerCell(m) {
  const cell = el("td", {}, el("span", { class: "swatch" }), el("span", { title: m.node_id }, short(m.node_id)), m.local ? " (this peer)" : "");
  cell.querySelector(".swatch").style.background = colorOf(m.node_id);
  return cell;
}

function renderCluster(doc) {
  $("cluster-peer").textContent = "as seen by " + doc.node_id;
  $("cluster-updated").textContent = "updated " + new Date().toLocaleTimeString();
  const states = Object.entries(doc.states).sort().map(([s, n]) => `${n} ${s}`).join(", ");
  $("card-members").textContent = (states || "none") + (doc.zones.length ? ` in ${doc.zones.length} zone${doc.zones.length > 1 ? "s" : ""}` : "");
  const meta = doc.metadata;
  $("metadata-health").replaceChildren(el("span", { class: meta.healthy ? "ok" : "bad" },
    meta.healthy ? "healthy" : "unavailable"), ` (${meta.backend})`, ...(meta.error ? [el("div", { class: "meta" }, meta.error)] : []));
  const t = doc.totals;
  $("card-redundancy").replaceChildren(redundancyCell(doc.redundancy));
  $("card-under").textContent = `${t.under_replicated} under-replicated, ${t.misplaced} misplaced`;
  $("card-repair").textContent = `${t.repaired} repaired`;
  $("card-repair-more").textContent = `${t.handed_off} handed off, ${t.corrupt_found} corrupt found`;
  $("card-stored").textContent = `${t.chunk_count} chunks, ${bytes(t.chunk_bytes)}`;
  const zones = doc.zones.length > 0;
  document.querySelectorAll("#members .zone-col").forEach((th) => { th.hidden = !zones; });
  $("members").tBodies[0].replaceChildren(...doc.members.map((m) => el("tr", { dataset: { node: m.node_id, state: m.state } },
    peerCell(m),
    el("td", {}, el("span", { class: "state state-" + m.state }, m.state)),
    zones ? el("td", { class: "zone" }, m.zone || "–") : null,
    el("td", { class: "mono" }, m.grpc_addr || "–"),
    el("td", { class: "mono" }, m.gossip_addr || "–"),
    el("td", {}, m.local ? "this peer" : ago(m.last_seen_s)),
    el("td", {}, m.on_ring ? bar(m.ring_share, percent(m.ring_share) + ` (${m.ring_vnodes} vnodes)`, "share") : "off ring"),
  )));
  $("resources").tBodies[0].replaceChildren(...doc.members.map((m) => {
    const s = m.stats || {};
    const answered = m.stats !== null;
    return el("tr", { dataset: { node: m.node_id, state: m.state } },
      peerCell(m),
      el("td", { class: "num chunks" }, `${m.chunk_count} (${bytes(m.chunk_bytes)})`),
      el("td", { class: "disk" }, answered ? diskCell(s) : "–"),
      el("td", { class: "num rss" }, answered && s.rss_bytes ? bytes(s.rss_bytes) : "–"),
      el("td", { class: "budget" }, answered ? budgetCell(s) : "–"),
      el("td", { class: "redundancy" }, redundancyCell(m.redundancy)),
      el("td", { class: "num" }, s.under_replicated ?? "–"),
      el("td", { class: "num" }, s.misplaced ?? "–"),
      el("td", { class: "num" }, s.repaired ?? "–"),
      el("td", { class: "num" }, s.handed_off ?? "–"),
      el("td", {}, answered ? ago(s.last_sync_s) : "–"),
    );
  }));
  drawRing(doc.ring);
}

function drawRing(ring) {
  $("ring-digest").textContent = `${ring.replicas}× · ${ring.vnodes} vnodes · ${ring.digest.slice(0, 8)}`;
  const canvas = $("ring-canvas");
  const ctx = canvas.getContext("2d");
  const c = canvas.width / 2;
  ctx.clearRect(0, 0, canvas.width, canvas.height);
  ctx.lineWidth = 26;
  for (const [start, end, node] of ring.arcs) {
    ctx.beginPath();
    ctx.strokeStyle = colorOf(node);
    ctx.arc(c, c, c - 18, -Math.PI / 2 + start * 2 * Math.PI, -Math.PI / 2 + end * 2 * Math.PI);
    ctx.stroke();
  }
}

// -- file browser --------------------------------------------------------------------------------

function showFilesError(err) { $("files-error").textContent = err ? err.message : ""; }

async function loadFiles(prefix, more) {
  state.prefix = prefix;
  if (!more) state.pageToken = "";
  showFilesError(null);
  renderCrumbs(prefix);
  const query = new URLSearchParams({ prefix, delimiter: "/", page_token: state.pageToken });
  let doc;
  try { doc = await api("files?" + query); } catch (err) { showFilesError(err); return; }
  const rows = [];
  for (const p of doc.prefixes) {
    rows.push(el("tr", { dataset: { prefix: p } },
      el("td", {}, el("a", { class: "folder", href: "#files/" + encodeURIComponent(p) }, "📁 " + p.slice(prefix.length))),
      el("td", {}), el("td", {}), el("td", {}), el("td", {})));
  }
  for (const f of doc.files) {
    rows.push(el("tr", { dataset: { name: f.name } },
      el("td", {}, el("button", { class: "link details", type: "button", onclick: () => showDetails(f.name, "") },
        f.name.slice(prefix.length))),
      el("td", { class: "num" }, bytes(f.size)),
      el("td", { class: "num" }, "v" + f.version),
      el("td", {}, new Date(f.created_at * 1000).toLocaleString()),
      el("td", {},
        el("a", { class: "download", href: "api/download?" + new URLSearchParams({ name: f.name }), download: f.name.split("/").pop() }, "Download"),
        " ",
        el("button", { class: "delete", type: "button", onclick: () => confirmDelete(f.name, "") }, "Delete"))));
  }
  const body = $("file-list").tBodies[0];
  if (more) body.append(...rows); else body.replaceChildren(...rows);
  if (!rows.length && !more) body.replaceChildren(el("tr", {}, el("td", { colspan: "5", class: "meta" }, "nothing here")));
  state.pageToken = doc.next_token;
  $("more").hidden = !doc.next_token;
}

function renderCrumbs(prefix) {
  const parts = prefix.split("/").filter((p, i, all) => p || i < all.length - 1);
  const crumbs = [el("a", { href: "#files/" }, "root")];
  let acc = "";
  for (const part of parts) {
    acc += part + "/";
    crumbs.push(" / ", el("a", { href: "#files/" + encodeURIComponent(acc) }, part));
  }
  $("crumbs").replaceChildren(...crumbs);
}

function upload() {
  const file = $("upload-input").files[0];
  if (!file) { $("upload-status").textContent = "choose a file first"; return; }
  const name = state.prefix + file.name;
  const xhr = new XMLHttpRequest();
  const bar = $("upload-progress");
  bar.hidden = false; bar.value = 0;
  $("upload-status").textContent = "uploading " + name + "…";
  xhr.upload.addEventListener("progress", (e) => { if (e.lengthComputable) bar.value = (100 * e.loaded) / e.total; });
  xhr.addEventListener("load", () => {
    let doc = null;
    try { doc = JSON.parse(xhr.responseText); } catch (e) { doc = null; }
    if (xhr.status === 201) {
      bar.value = 100;
      $("upload-status").textContent = `uploaded ${doc.name} v${doc.version} (${bytes(doc.size)})`;
      $("upload-input").value = "";
      loadFiles(state.prefix);
    } else {
      if (xhr.status === 401) showLogin(doc && doc.message);
      $("upload-status").textContent = "upload failed: " + ((doc && doc.message) || ("HTTP " + xhr.status));
    }
  });
  xhr.addEventListener("error", () => { $("upload-status").textContent = "upload failed: the connection broke"; });
  xhr.open("PUT", "api/upload?" + new URLSearchParams({ name }));
  xhr.setRequestHeader("X-CSRF-Token", state.session.csrf);
  xhr.setRequestHeader("X-Dfs-Content-Type", file.type || "");
  xhr.send(file);
}

function confirmDelete(name, versionId) {
  const dialog = $("confirm-dialog");
  $("confirm-text").textContent = versionId ? `Delete version ${versionId} of ${name}?` : `Delete ${name} and all its versions?`;
  dialog.returnValue = "";
  dialog.onclose = async () => {
    if (dialog.returnValue !== "yes") return;
    try {
      const query = new URLSearchParams({ name });
      if (versionId) query.set("version_id", versionId);
      await api("file?" + query, { method: "DELETE" });
      $("details").hidden = true;
      loadFiles(state.prefix);
    } catch (err) { showFilesError(err); }
  };
  dialog.showModal();
}

async function showDetails(name, versionId) {
  showFilesError(null);
  let doc, versions;
  try {
    const query = new URLSearchParams({ name });
    if (versionId) query.set("version_id", versionId);
    [doc, versions] = await Promise.all([api("object?" + query), api("versions?" + new URLSearchParams({ name }))]);
  } catch (err) { showFilesError(err); return; }
  $("details").hidden = false;
  $("details-name").textContent = doc.name;
  const facts = [["version", `v${doc.version} (${doc.version_id})`], ["size", `${bytes(doc.size)} (${doc.size} bytes)`],
    ["sha256", doc.sha256 || "–"], ["content type", doc.content_type || "–"], ["policy", doc.policy || "–"],
    ["created", new Date(doc.created_at * 1000).toLocaleString()]];
  $("details-facts").replaceChildren(...facts.flatMap(([k, v]) => [el("dt", {}, k), el("dd", {}, v)]));
  $("version-list").tBodies[0].replaceChildren(...versions.versions.map((v) => el("tr", { dataset: { version: v.version_id } },
    el("td", {}, "v" + v.version + (v.latest ? " (latest)" : "") + (v.delete_marker ? " delete marker" : "")),
    el("td", { class: "mono" }, v.version_id),
    el("td", { class: "num" }, bytes(v.size)),
    el("td", {}, new Date(v.created_at * 1000).toLocaleString()),
    el("td", {},
      v.delete_marker ? "" : el("button", { type: "button", onclick: () => showDetails(name, v.version_id) }, "Chunks"),
      v.delete_marker ? "" : el("a", { href: "api/download?" + new URLSearchParams({ name, version_id: v.version_id }), download: name.split("/").pop() }, "Download"),
      " ",
      el("button", { type: "button", class: "delete-version", onclick: () => confirmDelete(name, v.version_id) }, "Delete")))));
  $("chunks-version").textContent = "of v" + doc.version;
  $("chunk-table").tBodies[0].replaceChildren(...doc.chunk_list.map((c) => el("tr", { dataset: { chunk: c.chunk_id } },
    el("td", { class: "num" }, c.index),
    el("td", { class: "mono", title: c.chunk_id }, c.chunk_id.slice(0, 16) + "…"),
    el("td", { class: "num" }, c.offset),
    el("td", { class: "num" }, bytes(c.size)),
    el("td", { class: "mono holders" }, ...peerList(c.peers)),
    el("td", { class: "mono owners" }, ...peerList(c.owners)))));
}

document.addEventListener("DOMContentLoaded", () => {
  $("login-form").addEventListener("submit", login);
  $("logout").addEventListener("click", logout);
  $("upload-button").addEventListener("click", upload);
  $("more").addEventListener("click", () => loadFiles(state.prefix, true));
  window.addEventListener("hashchange", route);
  if (!location.hash) history.replaceState(null, "", "#cluster");
  start().catch((err) => { if (err.status !== 401) $("login-error").textContent = err.message; });
});
