// The wsgate dashboard: log in with the gateway key, then watch the
// backends, the migrations and the connections, refreshed every 5 s.
// Served from the gateway itself; loads nothing from anywhere else.
"use strict";

const REFRESH_MS = 5000;
const $ = (id) => document.getElementById(id);
let timer = null;

async function api(method, path, body) {
  const init = { method, credentials: "same-origin", headers: {} };
  if (body !== undefined) {
    init.headers["Content-Type"] = "application/json";
    init.body = JSON.stringify(body);
  }
  const res = await fetch(path, init);
  if (res.status === 401) {
    showLogin();
    throw new Error("not logged in");
  }
  const data = await res.json().catch(() => ({}));
  if (!res.ok) throw new Error(data.error || res.statusText);
  return data;
}

function showLogin(message) {
  clearInterval(timer);
  timer = null;
  $("dashboard-view").classList.add("hidden");
  $("logout").classList.add("hidden");
  $("login-view").classList.remove("hidden");
  $("login-error").textContent = message || "";
}

function showDashboard() {
  $("login-view").classList.add("hidden");
  $("dashboard-view").classList.remove("hidden");
  $("logout").classList.remove("hidden");
  refresh();
  clearInterval(timer);
  timer = setInterval(refresh, REFRESH_MS);
}

// Green below 60 %, yellow below 85 %, red above.
function colour(percent) {
  return percent < 60 ? "green" : percent < 85 ? "yellow" : "red";
}

function setMeter(card, kind, percent, text) {
  const meter = card.querySelector(`.meter[data-kind="${kind}"]`);
  const fill = meter.querySelector(".fill");
  const p = Math.max(0, Math.min(100, percent || 0));
  fill.style.width = `${p}%`;
  fill.className = `fill ${colour(p)}`;
  meter.querySelector(".meter-value").textContent = text;
}

function serverCard(s) {
  const card = $("server-card").content.firstElementChild.cloneNode(true);
  card.dataset.id = s.id;
  card.querySelector(".server-id").textContent = s.id;
  const status = card.querySelector(".status");
  status.textContent = s.status;
  status.classList.add(s.status);
  card.querySelector(".server-host").textContent =
    `${s.host}:${s.wsPort} (public ${s.publicHost}) · ${s.service}${s.group ? " · " + s.group : ""}`;
  const cpu = s.cpuUsage == null ? null : s.cpuUsage;
  setMeter(card, "cpu", cpu, cpu == null ? "n/a" : `${cpu.toFixed(1)} %`);
  const ramPct = s.ramTotal ? (100 * s.ramUsage) / s.ramTotal : null;
  setMeter(card, "ram", ramPct,
    s.ramTotal ? `${Math.round(s.ramUsage)}/${Math.round(s.ramTotal)} MB` : "n/a");
  const connPct = s.maxConnections ? (100 * s.activeConnections) / s.maxConnections : 0;
  setMeter(card, "connections", connPct,
    `${s.activeConnections}/${s.maxConnections || "∞"}`);
  card.querySelector(".latency").textContent = `Latency: ${s.latency.toFixed(1)} ms`;
  card.querySelector(".drain").addEventListener("click", () => drain(s.id, true));
  card.querySelector(".undrain").addEventListener("click", () => drain(s.id, false));
  card.querySelector(s.status === "draining" ? ".drain" : ".undrain").classList.add("hidden");
  return card;
}

async function drain(id, on) {
  const what = on ? "Drain" : "Undrain";
  if (!window.confirm(`${what} backend ${id}?` +
      (on ? " Its sessions move to other backends." : ""))) return;
  try {
    await api("POST", on ? "/drain" : "/undrain", { serverId: id });
  } catch (e) {
    window.alert(`${what} failed: ${e.message}`);
  }
  refresh();
}

async function disconnect(id) {
  if (!window.confirm(`Disconnect connection ${id}?`)) return;
  try {
    await api("POST", "/disconnect", { connectionId: id });
  } catch (e) {
    window.alert(`Disconnect failed: ${e.message}`);
  }
  refresh();
}

function row(cells) {
  const tr = document.createElement("tr");
  for (const c of cells) {
    const td = document.createElement("td");
    if (c instanceof Node) td.appendChild(c); else td.textContent = c;
    tr.appendChild(td);
  }
  return tr;
}

function renderStats(stats) {
  $("total-servers").textContent = stats.totalServers;
  $("healthy-servers").textContent = stats.healthyServers;
  $("total-sessions").textContent = stats.totalActiveSessions;
  $("total-migrations").textContent = stats.totalMigrations;
  const servers = $("servers");
  servers.replaceChildren(...stats.servers.map(serverCard));
  $("no-servers").classList.toggle("hidden", stats.servers.length > 0);
  const body = $("migrations").querySelector("tbody");
  body.replaceChildren(...stats.recentMigrations.map((m) => row([
    new Date(m.timestamp).toLocaleTimeString(), m.fromServer, m.toServer, m.clientCount,
  ])));
  $("updated").textContent = `updated ${new Date(stats.timestamp).toLocaleTimeString()}`;
}

function renderConnections(list) {
  const body = $("connections").querySelector("tbody");
  body.replaceChildren(...list.connections.map((c) => {
    const button = document.createElement("button");
    button.type = "button";
    button.textContent = "Disconnect";
    button.className = "disconnect";
    button.addEventListener("click", () => disconnect(c.id));
    return row([c.id, c.clientId || "-", c.backend || "-", c.peer,
      `${Math.round(c.ageMs / 1000)} s`, `${c.bytesIn} / ${c.bytesOut}`, button]);
  }));
  $("connections-more").textContent = list.total > list.connections.length
    ? `${list.connections.length} of ${list.total} shown` : "";
}

// A small line chart: the last points, scaled to the canvas.
function drawChart(canvas, values, stroke) {
  const ctx = canvas.getContext("2d");
  const w = canvas.width, h = canvas.height, pad = 24;
  ctx.clearRect(0, 0, w, h);
  const max = Math.max(1, ...values);
  ctx.strokeStyle = "#2c3640";
  ctx.fillStyle = "#8b98a5";
  ctx.font = "11px system-ui";
  ctx.beginPath();
  ctx.moveTo(pad, h - pad);
  ctx.lineTo(w, h - pad);
  ctx.stroke();
  ctx.fillText(String(Math.round(max)), 2, 12);
  ctx.fillText("0", 2, h - pad);
  if (values.length < 2) return;
  ctx.strokeStyle = stroke;
  ctx.lineWidth = 2;
  ctx.beginPath();
  values.forEach((v, i) => {
    const x = pad + ((w - pad) * i) / (values.length - 1);
    const y = h - pad - ((h - 2 * pad) * v) / max;
    if (i === 0) ctx.moveTo(x, y); else ctx.lineTo(x, y);
  });
  ctx.stroke();
}

function renderHistory(history) {
  const points = history.points;
  drawChart($("chart-connections"), points.map((p) => p.connections), "#388bfd");
  drawChart($("chart-messages"), points.map((p) => p.messagesPerSecond), "#2ea043");
}

async function refresh() {
  try {
    const [stats, history, conns] = await Promise.all([
      api("GET", "/api/stats"), api("GET", "/api/history"),
      api("GET", "/api/connections?limit=50"),
    ]);
    renderStats(stats);
    renderHistory(history);
    renderConnections(conns);
  } catch (e) {
    if (e.message !== "not logged in") $("updated").textContent = `refresh failed: ${e.message}`;
  }
}

$("login-form").addEventListener("submit", async (event) => {
  event.preventDefault();
  const res = await fetch("/api/login", {
    method: "POST", credentials: "same-origin",
    headers: { "Content-Type": "application/json" },
    body: JSON.stringify({ authKey: $("key").value }),
  });
  $("key").value = "";
  if (res.ok) {
    showDashboard();
    return;
  }
  showLogin(res.status === 429 ? "Too many attempts; wait a minute." : "Wrong key.");
});

$("logout").addEventListener("click", async () => {
  await fetch("/api/logout", { method: "POST", credentials: "same-origin" });
  showLogin("Logged out.");
});

// A live session cookie skips the login form.
fetch("/api/stats", { credentials: "same-origin" })
  .then((res) => (res.ok ? showDashboard() : showLogin()))
  .catch(() => showLogin());
