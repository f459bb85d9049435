// The dashboard page: one small HTML document, one script, one stylesheet,
// all served by the node (no CDN, nothing fetched from elsewhere; the
// Content-Security-Policy in routes.ts forbids it). Kept as strings in a
// module so that a build to JavaScript carries them without a copy step.
// The script uses no template literals: it lives inside one.

export const INDEX_HTML = String.raw`<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>debughost</title>
<link rel="icon" href="/ui/icon.svg">
<link rel="stylesheet" href="/ui/app.css">
<script src="/ui/app.js" defer></script>
</head>
<body>
<header>
  <h1>debughost</h1>
  <span id="connection" data-state="connecting">connecting…</span>
  <span id="identity"></span>
  <button id="forget-token" type="button" hidden>forget token</button>
</header>
<form id="token-form" hidden>
  <label for="token-input">Access token</label>
  <input id="token-input" type="password" autocomplete="off" placeholder="paste a debughost token">
  <button type="submit">Connect</button>
  <p id="token-message"></p>
</form>
<main>
  <section id="cluster">
    <h2>Cluster</h2>
    <dl id="cluster-facts"></dl>
    <table id="members"><thead><tr><th>member</th><th>address</th><th>role</th><th>liveness</th></tr></thead><tbody></tbody></table>
  </section>
  <section id="projects">
    <h2>Projects by node</h2>
    <div id="by-node"><p class="empty">no projects</p></div>
  </section>
  <section id="logs" hidden>
    <h2 id="logs-title">Logs</h2>
    <p id="logs-state"></p>
    <pre id="log-lines"></pre>
  </section>
</main>
</body>
</html>
`;

export const APP_CSS = String.raw`
:root { color-scheme: light; --fg: #1d2330; --muted: #5d6675; --line: #d9dee7; --bg: #f6f7f9; --card: #fff;
  --ok: #1f7a3d; --warn: #9a6400; --bad: #b3261e; --idle: #5d6675; }
* { box-sizing: border-box; }
[hidden] { display: none !important; }
body { margin: 0; font: 14px/1.4 system-ui, -apple-system, "Segoe UI", sans-serif; color: var(--fg); background: var(--bg); }
header { display: flex; gap: 16px; align-items: baseline; padding: 10px 20px; background: #232a36; color: #fff; }
header h1 { font-size: 18px; margin: 0; }
#connection[data-state="live"] { color: #8be0a4; }
#connection:not([data-state="live"]) { color: #ffd27a; }
#identity { color: #c8cfdb; margin-left: auto; }
button { font: inherit; cursor: pointer; }
main { display: grid; grid-template-columns: minmax(320px, 1fr) 2fr; gap: 16px; padding: 16px 20px; }
section { background: var(--card); border: 1px solid var(--line); border-radius: 6px; padding: 12px 16px; }
#logs { grid-column: 1 / -1; }
h2 { font-size: 15px; margin: 0 0 10px; }
h3 { font-size: 14px; margin: 14px 0 6px; }
dl { display: grid; grid-template-columns: max-content 1fr; gap: 2px 12px; margin: 0 0 12px; }
dt { color: var(--muted); }
dd { margin: 0; font-variant-numeric: tabular-nums; }
table { border-collapse: collapse; width: 100%; }
th, td { text-align: left; padding: 4px 8px; border-bottom: 1px solid var(--line); vertical-align: top; }
th { color: var(--muted); font-weight: 500; }
tr[data-project] { cursor: pointer; }
tr[data-project]:hover, tr[data-selected="true"] { background: #eef3fb; }
.badge { display: inline-block; padding: 0 6px; border-radius: 3px; color: #fff; background: var(--idle); font-size: 12px; }
.badge[data-state="running"], .badge[data-state="up"] { background: var(--ok); }
.badge[data-state="starting"], .badge[data-state="draining"] { background: var(--warn); }
.badge[data-state="failed"], .badge[data-state="crashLoop"], .badge[data-state="exited"], .badge[data-state="down"] { background: var(--bad); }
.leader { font-weight: 600; }
.muted, .empty { color: var(--muted); }
td.muted { white-space: nowrap; }
code { font-size: 12px; }
#token-form { margin: 16px 20px; padding: 12px 16px; background: #fff8e1; border: 1px solid #f0d48a; border-radius: 6px; display: flex; gap: 8px; align-items: center; flex-wrap: wrap; }
#token-form input { min-width: 320px; padding: 4px 6px; }
#token-message { width: 100%; margin: 0; color: var(--bad); }
#log-lines { margin: 0; max-height: 360px; overflow: auto; background: #10141b; color: #d7dde8; padding: 8px; border-radius: 4px; font-size: 12px; white-space: pre-wrap; }
`;

export const APP_JS = String.raw`
(function () {
  'use strict';
  var TOKEN_KEY = 'debughost-token';
  var LOG_LINES_MAX = 500;
  var RETRY_MS_MIN = 250;
  var RETRY_MS_MAX = 5000;
  var state = { identity: null, cluster: null, projects: new Map(), shownState: new Map(), selected: null, logs: null };
  // What changed and when it was shown, for anyone measuring the page (a test reads it).
  var changes = [];
  window.dhDashboard = { changes: changes };
  var retryMs = RETRY_MS_MIN;

  function byId(id) { return document.getElementById(id); }
  function el(tag, attributes, children) {
    var node = document.createElement(tag);
    Object.keys(attributes || {}).forEach(function (name) { node.setAttribute(name, attributes[name]); });
    (children || []).forEach(function (child) {
      node.appendChild(typeof child === 'string' ? document.createTextNode(child) : child);
    });
    return node;
  }
  function badge(text) { return el('span', { class: 'badge', 'data-state': text }, [text]); }
  function now() { return performance.timeOrigin + performance.now(); }

  function AuthError(message) { this.name = 'AuthError'; this.message = message; }
  function authHeaders() {
    var token = sessionStorage.getItem(TOKEN_KEY);
    return token ? { Authorization: 'Bearer ' + token } : {};
  }

  // Server-sent events read over fetch: EventSource cannot send an Authorization header.
  async function stream(url, onEvent, signal) {
    var response = await fetch(url, { headers: authHeaders(), cache: 'no-store', signal: signal });
    if (response.status === 401) {
      var refused = await response.json().catch(function () { return {}; });
      throw new AuthError(refused.error || 'this node wants a token');
    }
    if (!response.ok) {
      var failed = await response.json().catch(function () { return {}; });
      throw new Error(failed.error || ('HTTP ' + response.status));
    }
    var reader = response.body.pipeThrough(new TextDecoderStream()).getReader();
    var buffer = '';
    for (;;) {
      var chunk = await reader.read();
      if (chunk.done) return;
      buffer += chunk.value;
      var end;
      while ((end = buffer.indexOf('\n\n')) >= 0) {
        var block = buffer.slice(0, end);
        buffer = buffer.slice(end + 2);
        var event = 'message';
        var data = '';
        block.split('\n').forEach(function (line) {
          if (line.indexOf('event: ') === 0) event = line.slice(7);
          else if (line.indexOf('data: ') === 0) data += line.slice(6);
        });
        if (data !== '') onEvent(event, JSON.parse(data));
      }
    }
  }

  function setConnection(text, live) {
    var node = byId('connection');
    node.textContent = text;
    node.dataset.state = live ? 'live' : 'down';
  }

  async function connect() {
    setConnection('connecting…', false);
    try {
      await stream('/ui/api/stream', onDashboardEvent);
      setConnection('connection closed; reconnecting…', false);
    } catch (error) {
      if (error instanceof AuthError) return askToken(error.message);
      setConnection('disconnected (' + error.message + '); reconnecting…', false);
    }
    setTimeout(connect, retryMs);
    retryMs = Math.min(retryMs * 2, RETRY_MS_MAX);
  }

  function askToken(message) {
    sessionStorage.removeItem(TOKEN_KEY);
    setConnection('needs a token', false);
    byId('token-message').textContent = message;
    byId('token-form').hidden = false;
    byId('token-input').focus();
  }

  function onDashboardEvent(type, data) {
    if (type === 'hello') {
      retryMs = RETRY_MS_MIN;
      state.identity = data.identity;
      setConnection('live', true);
      byId('identity').textContent = 'viewing as ' + data.identity.name + (data.identity.tenant === null ? ' (all tenants)' : ' (tenant ' + data.identity.tenant + ')');
      byId('forget-token').hidden = !sessionStorage.getItem(TOKEN_KEY);
    } else if (type === 'cluster') {
      var before = state.cluster;
      state.cluster = data.cluster;
      renderCluster();
      renderProjects();
      if (before === null || before.leader !== data.cluster.leader) changes.push({ what: 'leader', key: 'leader', value: data.cluster.leader, serverAt: data.at, shownAt: now() });
    } else if (type === 'projects') {
      if (data.full) state.projects = new Map();
      data.remove.forEach(function (key) { state.projects.delete(key); });
      data.upsert.forEach(function (project) { state.projects.set(project.tenant + '/' + project.name, project); });
      renderProjects();
      var shownAt = now();
      data.upsert.forEach(function (project) {
        var key = project.tenant + '/' + project.name;
        if (state.shownState.get(key) !== project.state) changes.push({ what: 'project', key: key, value: project.state, serverAt: data.at, shownAt: shownAt });
        state.shownState.set(key, project.state);
      });
      data.remove.forEach(function (key) {
        changes.push({ what: 'project', key: key, value: 'removed', serverAt: data.at, shownAt: shownAt });
        state.shownState.delete(key);
      });
      if (changes.length > 1000) changes.splice(0, changes.length - 1000);
      followSelected();
    }
  }

  function renderCluster() {
    var cluster = state.cluster;
    var facts = byId('cluster-facts');
    facts.replaceChildren();
    [['this node', cluster.node + ' (' + cluster.role + ')'], ['cluster', cluster.clusterId || '(not formed yet)'], ['leader', cluster.leader || 'none known'],
      ['term', String(cluster.term)], ['ring epoch', String(cluster.ringEpoch)]].forEach(function (pair) {
      facts.appendChild(el('dt', {}, [pair[0]]));
      facts.appendChild(el('dd', { 'data-fact': pair[0] }, [pair[1]]));
    });
    var body = byId('members').tBodies[0];
    body.replaceChildren();
    cluster.members.forEach(function (member) {
      body.appendChild(el('tr', { 'data-member': member.id, 'data-leader': String(member.leader) }, [
        el('td', { class: member.leader ? 'leader' : '' }, [member.id + (member.leader ? ' ★ leader' : '')]),
        el('td', {}, [el('code', {}, [member.address])]),
        el('td', {}, [member.learner ? 'learner' : 'voter']),
        el('td', {}, [badge(member.liveness)]),
      ]));
    });
  }

  function renderProjects() {
    var groups = new Map();
    (state.cluster ? state.cluster.members : []).forEach(function (member) { groups.set(member.id, []); });
    Array.from(state.projects.values()).sort(function (a, b) {
      return (a.tenant + '/' + a.name) < (b.tenant + '/' + b.name) ? -1 : 1;
    }).forEach(function (project) {
      var node = project.node || '(not placed yet)';
      if (!groups.has(node)) groups.set(node, []);
      groups.get(node).push(project);
    });
    var container = byId('by-node');
    container.replaceChildren();
    if (state.projects.size === 0) container.appendChild(el('p', { class: 'empty' }, ['no projects' + (state.identity && state.identity.tenant !== null ? ' in tenant ' + state.identity.tenant : '')]));
    var allTenants = state.identity === null || state.identity.tenant === null;
    groups.forEach(function (projects, node) {
      container.appendChild(el('h3', { 'data-node': node }, [node + ' · ' + projects.length + ' project' + (projects.length === 1 ? '' : 's')]));
      if (projects.length === 0) return;
      var rows = projects.map(function (project) {
        var key = project.tenant + '/' + project.name;
        var ports = Object.keys(project.ports).map(function (name) { return name + ' ' + project.ports[name]; }).join(', ');
        return el('tr', { 'data-project': key, 'data-state': project.state, 'data-desired': project.desired, 'data-selected': String(state.selected === key) }, [
          el('td', {}, [allTenants ? key : project.name]),
          el('td', {}, [badge(project.state)]),
          el('td', { class: 'muted' }, ['wants ' + project.desired]),
          el('td', {}, [String(project.restarts)]),
          el('td', {}, [ports]),
          el('td', {}, [el('code', {}, [(project.image ? project.image + ' ' : '') + (project.command || '')])]),
        ]);
      });
      var table = el('table', {}, [el('thead', {}, [el('tr', {}, ['project', 'state', 'desired', 'restarts', 'ports', 'command'].map(function (h) { return el('th', {}, [h]); }))]), el('tbody', {}, rows)]);
      container.appendChild(table);
    });
  }

  // ---- live log tail of the selected project ----

  function openLogs(key) {
    if (state.logs !== null) state.logs.controller.abort();
    state.selected = key;
    var project = state.projects.get(key);
    var logs = { key: key, node: project ? project.node : null, controller: new AbortController() };
    state.logs = logs;
    renderProjects();
    byId('logs').hidden = false;
    byId('logs-title').textContent = 'Logs of ' + key;
    byId('log-lines').replaceChildren();
    var slash = key.indexOf('/');
    var url = '/ui/api/logs?tenant=' + encodeURIComponent(key.slice(0, slash)) + '&name=' + encodeURIComponent(key.slice(slash + 1));
    byId('logs-state').textContent = 'following…';
    stream(url, function (type, data) {
      if (type === 'lines') appendLines(data.lines);
      else if (type === 'error') byId('logs-state').textContent = data.message;
    }, logs.controller.signal).then(function () {
      if (state.logs === logs) { byId('logs-state').textContent = 'log stream ended; reopening…'; setTimeout(function () { if (state.logs === logs) openLogs(key); }, 1000); }
    }, function (error) {
      if (error.name === 'AbortError') return;
      if (error instanceof AuthError) return askToken(error.message);
      byId('logs-state').textContent = error.message;
    });
  }

  // A project that moved to another node is followed there.
  function followSelected() {
    if (state.logs === null) return;
    var project = state.projects.get(state.logs.key);
    if (project && project.node !== state.logs.node && project.node !== null) openLogs(state.logs.key);
  }

  function appendLines(lines) {
    var pre = byId('log-lines');
    var atBottom = pre.scrollTop + pre.clientHeight >= pre.scrollHeight - 4;
    lines.forEach(function (line) {
      pre.appendChild(el('span', { 'data-stream': line.stream }, [line.line + '\n']));
    });
    while (pre.childNodes.length > LOG_LINES_MAX) pre.removeChild(pre.firstChild);
    byId('logs-state').textContent = 'following · ' + pre.childNodes.length + ' lines shown';
    if (atBottom) pre.scrollTop = pre.scrollHeight;
  }

  document.addEventListener('DOMContentLoaded', function () {
    byId('by-node').addEventListener('click', function (event) {
      var row = event.target.closest('tr[data-project]');
      if (row) openLogs(row.dataset.project);
    });
    byId('token-form').addEventListener('submit', function (event) {
      event.preventDefault();
      sessionStorage.setItem(TOKEN_KEY, byId('token-input').value.trim());
      byId('token-input').value = '';
      byId('token-form').hidden = true;
      retryMs = RETRY_MS_MIN;
      connect();
    });
    byId('forget-token').addEventListener('click', function () {
      sessionStorage.removeItem(TOKEN_KEY);
      location.reload();
    });
    connect();
  });
})();
`;

export const ICON_SVG = String.raw`<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 16 16"><rect width="16" height="16" rx="3" fill="#232a36"/><circle cx="5" cy="8" r="2" fill="#8be0a4"/><circle cx="11" cy="5" r="2" fill="#8be0a4"/><circle cx="11" cy="11" r="2" fill="#8be0a4"/></svg>
`;
