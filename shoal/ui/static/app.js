// The Shoal board: draws the snapshots the server pushes on /api/events (Server-Sent Events).
// Plain DOM, no framework, no build step; every text from the cluster goes in via textContent.
"use strict";

const state = { cluster: null };

function el(tag, attrs, ...children) {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(attrs || {})) {
    if (key === "dataset") Object.assign(node.dataset, value);
    else if (key === "text") node.textContent = value;
    else node.setAttribute(key, value);
  }
  for (const child of children) node.append(child);
  return node;
}

function serviceLink(id, text) {
  return el("a", { href: "#/service/" + encodeURIComponent(id), text: text });
}

function card(task) {
  return el("div", { class: "task", dataset: { taskId: task.id, state: task.state, service: task.service } },
    el("div", { class: "name" }, serviceLink(task.service_id, task.name)),
    el("div", { class: "state", text: task.state + (task.error ? ": " + task.error : "") }));
}

function column(node) {
  const meta = [node.role + (node.leader ? " (leader)" : ""), node.status, node.availability].join(" · ");
  return el("article", { class: "node", dataset: { nodeId: node.id, status: node.status,
                                                   availability: node.availability, role: node.role } },
    el("header", {}, el("div", { class: "hostname", text: node.hostname }), el("div", { class: "meta", text: meta })),
    el("div", { class: "cards" }, ...node.tasks.map(card)));
}

function drawBoard() {
  const cluster = state.cluster;
  if (!cluster) return;
  document.getElementById("board").replaceChildren(...cluster.nodes.map(column));
  const waiting = document.getElementById("unassigned");
  waiting.hidden = cluster.unassigned.length === 0 || !onBoard();
  waiting.querySelector(".cards").replaceChildren(...cluster.unassigned.map(card));
  document.getElementById("services").replaceChildren(...cluster.services.map(s => {
    const link = serviceLink(s.id, s.name);
    link.append(el("span", { class: "count", text: s.running + "/" + s.desired }));
    return link;
  }));
}

function table(headers, rows) {
  return el("table", {}, el("thead", {}, el("tr", {}, ...headers.map(h => el("th", { text: h })))),
    el("tbody", {}, ...rows));
}

function eventTime(ev) {
  return new Date(Math.floor(ev.timeNano / 1e6)).toISOString().replace("T", " ").replace("Z", "");
}

function attributes(ev) {
  const attrs = (ev.Actor && ev.Actor.Attributes) || {};
  return Object.keys(attrs).sort().map(k => k + "=" + attrs[k]).join(", ");
}

function drawService(page) {
  const s = page.service;
  const section = document.getElementById("service");
  const taskRows = page.tasks.map(t => el("tr", { class: t.current ? "current" : "history", dataset: { state: t.state } },
    el("td", { text: t.name }), el("td", { text: t.node || "" }), el("td", { class: "state", text: t.state }),
    el("td", { text: t.desired }), el("td", { text: t.error || t.message || "" }), el("td", {}, el("code", { text: t.id.slice(0, 12) }))));
  const eventRows = page.events.slice().reverse().map(ev => el("tr", {},
    el("td", { text: eventTime(ev) }), el("td", { text: ev.Type }), el("td", { text: ev.Action }),
    el("td", { text: attributes(ev) })));
  section.replaceChildren(
    el("h1", { text: s.name }),
    el("p", { text: `${s.mode} · ${s.image} · ${s.running}/${s.desired} running · ID ${s.id}` }),
    el("h2", { text: "Tasks" }),
    table(["Name", "Node", "State", "Desired", "Message", "ID"], taskRows),
    el("h2", { text: "Recent events" }),
    table(["Time", "Type", "Action", "Attributes"], eventRows));
  section.dataset.serviceId = s.id;
}

function onBoard() { return !location.hash.startsWith("#/service/"); }

function problem(text) {
  const p = document.getElementById("problem");
  p.hidden = !text;
  p.textContent = text || "";
}

async function loadService() {
  const ref = decodeURIComponent(location.hash.slice("#/service/".length));
  try {
    const response = await fetch("/api/services/" + encodeURIComponent(ref));
    const body = await response.json();
    if (!response.ok) throw new Error(body.message || response.statusText);
    if (!onBoard()) { drawService(body); problem(""); }
  } catch (err) {
    problem("service " + ref + ": " + err.message);
  }
}

function route() {
  const board = onBoard();
  document.getElementById("board").hidden = !board;
  document.getElementById("service").hidden = board;
  problem("");
  drawBoard();
  if (!board) loadService();
}

function connect() {
  const conn = document.getElementById("conn");
  const source = new EventSource("/api/events");
  source.addEventListener("open", () => { conn.dataset.state = "live"; conn.textContent = "live"; problem(""); });
  source.addEventListener("error", () => {
    conn.dataset.state = "reconnecting"; conn.textContent = "reconnecting";
    if (source.readyState === EventSource.CLOSED) {   // refused (not a manager...): say why, try again
      fetch("/api/cluster").then(r => r.json()).then(b => problem(b.message || "")).catch(e => problem(e.message));
      setTimeout(connect, 2000);
    }
  });
  source.addEventListener("snapshot", msg => {
    state.cluster = JSON.parse(msg.data);
    document.body.dataset.snapshots = String(Number(document.body.dataset.snapshots || 0) + 1);
    drawBoard();
    if (!onBoard()) loadService();
  });
  // "event" messages (each cluster event) are for scripts; the page redraws from the snapshots.
  source.addEventListener("failure", msg => problem(JSON.parse(msg.data).message));
}

window.addEventListener("hashchange", route);
route();
connect();
