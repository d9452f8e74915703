// forgeline's dashboard: one page on the REST API and the WebSocket event stream.
// The key lives in sessionStorage (this tab only). Event types this page does not know
// are shown generically in the live log, so new kinds of events appear as they land.
"use strict";

const KEY = "forgeline.key";
const $ = (id) => document.getElementById(id);
let stream = null; // { socket, after, filter, onEvent, closed }
let me = null;
let refreshTimer = null;

// ------------------------------------------------------------------------ helpers

function el(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [name, value] of Object.entries(attrs)) {
    if (name === "class") node.className = value;
    else if (name.startsWith("on")) node.addEventListener(name.slice(2), value);
    else node.setAttribute(name, value);
  }
  for (const child of children.flat()) {
    if (child === null || child === undefined) continue;
    node.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return node;
}

function show(section) {
  for (const id of ["login", "tasks", "task", "agents"]) $(id).hidden = id !== section;
}

async function api(path, options = {}) {
  const headers = { Authorization: `Bearer ${sessionStorage.getItem(KEY) || ""}` };
  if (options.body !== undefined) headers["Content-Type"] = "application/json";
  const response = await fetch(path, {
    method: options.method || "GET",
    headers,
    body: options.body === undefined ? undefined : JSON.stringify(options.body),
  });
  if (response.status === 401) {
    logout("your key was refused: log in again");
    throw new Error("unauthorized");
  }
  const type = response.headers.get("content-type") || "";
  const data = type.includes("json") ? await response.json() : await response.text();
  if (!response.ok) throw new Error((data && data.detail) || response.statusText);
  return data;
}

function when(iso) {
  return iso ? new Date(iso).toLocaleTimeString() : "";
}

// -------------------------------------------------------------------------- login

async function login(key) {
  sessionStorage.setItem(KEY, key);
  try {
    me = await api("/api/me");
  } catch (error) {
    sessionStorage.removeItem(KEY);
    $("login-error").textContent = error.message === "unauthorized" ? "that key was refused" : error.message;
    return false;
  }
  $("who").textContent = `${me.name} (${me.scope})`;
  $("nav").hidden = false;
  return true;
}

function logout(message = "") {
  sessionStorage.removeItem(KEY);
  me = null;
  closeStream();
  $("nav").hidden = true;
  $("login-error").textContent = message;
  show("login");
}

// ------------------------------------------------------------------------- stream

function closeStream() {
  if (stream) {
    stream.closed = true;
    if (stream.socket) stream.socket.close();
  }
  stream = null;
  $("live").textContent = "offline";
  $("live").classList.remove("on");
}

// Follow the log after ``after`` (only ``task``'s events when given); reconnects after
// the last event seen, so nothing is missed and nothing comes twice.
function openStream(after, task, onEvent) {
  closeStream();
  const current = { socket: null, after, task, onEvent, closed: false };
  stream = current;
  const connect = () => {
    if (current.closed) return;
    const scheme = location.protocol === "https:" ? "wss" : "ws";
    const socket = new WebSocket(`${scheme}://${location.host}/api/events/ws`);
    current.socket = socket;
    socket.onopen = () => {
      socket.send(JSON.stringify({ key: sessionStorage.getItem(KEY), after: current.after, task: current.task }));
      $("live").textContent = "live";
      $("live").classList.add("on");
    };
    socket.onmessage = (message) => {
      const event = JSON.parse(message.data);
      if (event.position <= current.after) return;
      current.after = event.position;
      current.onEvent(event);
    };
    socket.onclose = (closing) => {
      $("live").textContent = "offline";
      $("live").classList.remove("on");
      if (closing.code === 4401) return logout("your key was refused: log in again");
      if (!current.closed) setTimeout(connect, 1000);
    };
  };
  connect();
}

function later(fn) {
  clearTimeout(refreshTimer);
  refreshTimer = setTimeout(fn, 150);
}

// -------------------------------------------------------------------------- tasks

async function showTasks() {
  show("tasks");
  const page = await api("/api/tasks?limit=100");
  renderTasks(page.tasks);
  openStream(page.position, null, () => later(async () => renderTasks((await api("/api/tasks?limit=100")).tasks)));
}

function renderTasks(tasks) {
  const body = $("task-table").querySelector("tbody");
  body.replaceChildren(
    ...tasks.map((t) =>
      el(
        "tr",
        { "data-task": t.id, onclick: () => (location.hash = `#/tasks/${t.id}`) },
        el("td", {}, el("code", {}, t.id)),
        el("td", { class: `status status-${t.status}` }, t.status),
        el("td", {}, t.phase),
        el("td", {}, t.request.length > 90 ? `${t.request.slice(0, 90)}...` : t.request),
        el("td", {}, when(t.updated_at)),
      ),
    ),
  );
  if (!tasks.length) body.append(el("tr", {}, el("td", { colspan: "5" }, "no tasks yet")));
}

async function submitTask(event) {
  event.preventDefault();
  $("submit-error").textContent = "";
  try {
    const task = await api("/api/tasks", {
      method: "POST",
      body: { request: $("request").value, workspace: $("workspace").value },
    });
    $("request").value = "";
    location.hash = `#/tasks/${task.id}`;
  } catch (error) {
    $("submit-error").textContent = error.message;
  }
}

// ----------------------------------------------------------------------- one task

let currentTask = null;

async function showTask(id) {
  show("task");
  currentTask = id;
  $("log").replaceChildren();
  $("diff").replaceChildren();
  selectTab("log");
  await refreshTask();
  openStream(0, id, (event) => {
    appendLog(event);
    later(refreshTask);
  });
}

async function refreshTask() {
  if (!currentTask) return;
  let task;
  try {
    task = await api(`/api/tasks/${currentTask}`);
  } catch (error) {
    $("task-error").textContent = error.message;
    return;
  }
  $("task-title").replaceChildren("Task ", el("code", {}, task.id), " ", el("span", { class: `status status-${task.status}`, id: "task-status" }, task.status));
  $("task-request").textContent = task.request;
  const facts = [
    ["phase", task.phase],
    ["workspace", task.repository],
    ["branch", task.branch],
    ["complexity", task.complexity ?? ""],
    ["agent", task.agent ?? ""],
    ["waiting", task.waiting ?? ""],
    ["question", task.question ?? ""],
    ["paused", task.paused.join("; ")],
    ["preview", task.preview_url ? el("a", { href: task.preview_url, target: "_blank", rel: "noopener" }, task.preview_url) : ""],
    ["cost", `$${task.cost_usd.toFixed(4)}`],
    ["failure", task.failure ?? ""],
    ["commits", task.commits.map((c) => `${c.sha} ${c.subject}`).join("\n")],
  ].filter(([, value]) => value !== "");
  $("task-facts").replaceChildren(...facts.flatMap(([name, value]) => [el("dt", {}, name), el("dd", {}, value)]));
  renderActions(task);
  renderPlan(task.plan);
  renderTests(task.tests);
  renderReview(task.review, task.deploy);
  renderUsage(task.usage);
}

function renderActions(task) {
  const actions = [];
  const writable = me && me.scope !== "read";
  if (writable && task.status === "needs_clarification") {
    const input = el("input", { id: "answer", placeholder: "your answer" });
    actions.push(input, el("button", { type: "button", onclick: () => act("answer", { answer: input.value }) }, "Answer"));
  }
  if (writable && task.status === "awaiting_approval") {
    const tokens = el("input", { id: "approve-tokens", type: "number", min: "0", placeholder: "new token budget" });
    actions.push(tokens, el("button", { type: "button", onclick: () => act("approve", { budget: { tokens: Number(tokens.value) } }) }, "Approve"));
  }
  if (writable && !["completed", "failed", "cancelled"].includes(task.status)) {
    actions.push(el("button", { type: "button", class: "secondary", id: "cancel", onclick: () => act("cancel") }, "Cancel"));
  }
  actions.push(el("a", { href: "#", onclick: (e) => { e.preventDefault(); download(task.id); } }, "Download .tar.gz"));
  $("task-actions").replaceChildren(...actions);
}

async function act(action, body) {
  $("task-error").textContent = "";
  try {
    await api(`/api/tasks/${currentTask}/${action}`, { method: "POST", body: body ?? {} });
    await refreshTask();
  } catch (error) {
    $("task-error").textContent = error.message;
  }
}

async function download(id) {
  const response = await fetch(`/api/tasks/${id}/archive`, { headers: { Authorization: `Bearer ${sessionStorage.getItem(KEY)}` } });
  if (!response.ok) return ($("task-error").textContent = "no archive yet");
  const link = el("a", { href: URL.createObjectURL(await response.blob()), download: `${id}.tar.gz` });
  link.click();
}

// What an event says, in a line: known types by their meaning, any other by its fields.
function describe(event) {
  const d = event.data;
  switch (event.type) {
    case "task.initiated": return d.request;
    case "plan.created": return `${d.items.length} step(s), complexity ${d.complexity}: ${d.summary}`;
    case "task.assigned": return `agent ${d.agent} (complexity ${d.complexity})`;
    case "task.waiting": return d.reason;
    case "architecture.proposed": return d.summary;
    case "plan.item.dispatched": return `step ${d.item_id}`;
    case "plan.item.completed": return `step ${d.item_id}: ${d.files.join(", ")}`;
    case "code.pr.opened": return `${d.reason} round ${d.round}: ${d.files.join(", ")}`;
    case "test.results": return `${d.passed} passed, ${d.failed} failed, ${d.errors} errors`;
    case "review.decision": return d.approved ? "approved" : `changes requested: ${d.comments.join("; ")}`;
    case "deploy.status": return `${d.ok ? "ok" : "failed"} (${d.kind})${d.url ? ` ${d.url}` : ""}`;
    case "task.completed": return d.summary;
    case "task.failed": return d.reason;
    case "stage.failed": return `${d.stage}: ${d.error}`;
    case "llm.usage": return `${d.role} ${d.model}: ${d.input_tokens}+${d.output_tokens} tokens`;
    case "clarification.requested": return d.question;
    default:
      return Object.entries(d)
        .filter(([name]) => name !== "type")
        .map(([name, value]) => `${name}=${typeof value === "object" ? JSON.stringify(value) : value}`)
        .join(" ")
        .slice(0, 300);
  }
}

function appendLog(event) {
  const log = $("log");
  log.append(
    el(
      "li",
      { "data-type": event.type },
      el("span", { class: "pos" }, `#${event.position}`),
      el("span", { class: "time" }, `${when(event.created_at)} ${event.actor}`),
      el("span", { class: "type" }, event.type),
      el("span", {}, describe(event)),
    ),
  );
  log.scrollTop = log.scrollHeight;
}

// The plan as a dependency graph: a column per depth, each step with its status.
function renderPlan(plan) {
  const target = $("plan");
  if (!plan) return target.replaceChildren("no plan yet");
  const depth = {};
  const byId = Object.fromEntries(plan.items.map((i) => [i.id, i]));
  const level = (item, seen = new Set()) => {
    if (depth[item.id] !== undefined) return depth[item.id];
    if (seen.has(item.id)) return 0;
    seen.add(item.id);
    const parents = item.depends_on.map((d) => byId[d]).filter(Boolean);
    return (depth[item.id] = parents.length ? 1 + Math.max(...parents.map((p) => level(p, seen))) : 0);
  };
  plan.items.forEach((i) => level(i));
  const columns = [];
  for (const item of plan.items) (columns[depth[item.id]] ||= []).push(item);
  target.replaceChildren(
    el("p", {}, plan.summary),
    el(
      "div",
      { class: "graph" },
      columns.map((items) =>
        el(
          "div",
          { class: "column" },
          items.map((i) =>
            el(
              "div",
              { class: `node ${i.status}`, "data-item": i.id },
              el("strong", {}, `${i.id}. ${i.title}`),
              el("small", {}, `${i.status}${i.depends_on.length ? ` · after ${i.depends_on.join(", ")}` : ""}`),
              el("small", {}, i.files.join(", ")),
            ),
          ),
        ),
      ),
    ),
  );
}

function renderTests(tests) {
  const target = $("tests");
  if (!tests) return target.replaceChildren("no test run yet");
  target.replaceChildren(
    el("p", { id: "test-summary", class: tests.ok ? "ok" : "bad" }, `${tests.passed} passed, ${tests.failed} failed, ${tests.errors} errors, ${tests.skipped} skipped${tests.timed_out ? " (timed out)" : ""} at ${tests.commit.slice(0, 8)}`),
    tests.failing.length ? el("p", {}, `failing: ${tests.failing.join(", ")}`) : null,
    el("pre", { class: "output" }, tests.output),
  );
}

function renderReview(review, deploy) {
  const target = $("review");
  const parts = [];
  if (review) parts.push(el("p", { class: review.approved ? "ok" : "bad" }, review.approved ? "approved" : "changes requested"), el("ul", {}, review.comments.map((c) => el("li", {}, c))));
  if (deploy) parts.push(el("p", {}, `deploy (${deploy.kind}): ${deploy.ok ? "ok" : "failed"}`), el("pre", { class: "output" }, deploy.output));
  target.replaceChildren(...(parts.length ? parts : ["no review yet"]));
}

function renderUsage(usage) {
  const target = $("usage");
  if (!usage.length) return target.replaceChildren("no model calls yet");
  target.replaceChildren(
    el(
      "table",
      {},
      el("thead", {}, el("tr", {}, ["role", "model", "calls", "tokens in", "tokens out", "cost"].map((h) => el("th", {}, h)))),
      el("tbody", {}, usage.map((u) => el("tr", {}, [u.role, u.model, u.calls, u.input_tokens, u.output_tokens, `$${u.cost_usd.toFixed(4)}`].map((v) => el("td", {}, v))))),
    ),
  );
}

async function renderDiff() {
  const data = await api(`/api/tasks/${currentTask}/diff`);
  const lines = data.diff.split("\n").map((line) => {
    const kind = line.startsWith("+") && !line.startsWith("+++") ? "add" : line.startsWith("-") && !line.startsWith("---") ? "del" : line.startsWith("@@") ? "hunk" : "";
    return el("span", { class: kind }, `${line}\n`);
  });
  $("diff").replaceChildren(...(data.diff ? lines : ["no changes yet"]));
}

function selectTab(name) {
  for (const button of document.querySelectorAll(".tabs button")) button.classList.toggle("active", button.dataset.tab === name);
  for (const tab of document.querySelectorAll(".tab")) tab.hidden = tab.id !== `tab-${name}`;
  if (name === "diff") renderDiff().catch((error) => ($("diff").textContent = error.message));
}

// ------------------------------------------------------------------------- agents

async function showAgents() {
  show("agents");
  closeStream();
  const agents = await api("/api/agents");
  $("agent-table").querySelector("tbody").replaceChildren(
    ...agents.map((a) =>
      el(
        "tr",
        {},
        el("td", {}, a.name, a.registered ? "" : " (default)"),
        el("td", {}, `${a.min_complexity}-${a.max_complexity}`),
        el("td", {}, a.capacity ?? "no limit"),
        el("td", { class: a.status === "busy" ? "status-waiting" : "ok" }, a.status),
        el("td", {}, a.tasks.join(" ")),
        el("td", {}, when(a.last_active)),
        el("td", {}, Object.entries(a.models).map(([r, m]) => `${r}: ${m}`).join("; ")),
      ),
    ),
  );
  $("agent-admin").hidden = !(me && me.scope === "admin");
}

async function addAgent(event) {
  event.preventDefault();
  $("agent-error").textContent = "";
  const chain = $("agent-model").value.trim();
  const models = chain ? Object.fromEntries(["planner", "architect", "coder", "fixer", "reviewer"].map((r) => [r, chain])) : {};
  try {
    await api("/api/agents", {
      method: "POST",
      body: {
        name: $("agent-name").value,
        models,
        min_complexity: Number($("agent-min").value),
        max_complexity: Number($("agent-max").value),
        capacity: Number($("agent-capacity").value),
      },
    });
    await showAgents();
  } catch (error) {
    $("agent-error").textContent = error.message;
  }
}

// ------------------------------------------------------------------------- routing

async function route() {
  if (!sessionStorage.getItem(KEY)) return logout();
  if (!me && !(await login(sessionStorage.getItem(KEY)))) return show("login");
  const hash = location.hash || "#/tasks";
  const task = hash.match(/^#\/tasks\/([\w-]+)$/);
  currentTask = null;
  try {
    if (task) await showTask(task[1]);
    else if (hash === "#/agents") await showAgents();
    else await showTasks();
  } catch (error) {
    if (error.message !== "unauthorized") $("task-error").textContent = error.message;
  }
}

document.addEventListener("DOMContentLoaded", () => {
  $("login-form").addEventListener("submit", async (event) => {
    event.preventDefault();
    if (await login($("key").value.trim())) {
      $("key").value = "";
      route();
    }
  });
  $("logout").addEventListener("click", () => logout());
  $("submit-form").addEventListener("submit", submitTask);
  $("agent-form").addEventListener("submit", addAgent);
  for (const button of document.querySelectorAll(".tabs button")) button.addEventListener("click", () => selectTab(button.dataset.tab));
  window.addEventListener("hashchange", route);
  route();
});
