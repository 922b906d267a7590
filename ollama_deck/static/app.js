/* Ollama Deck page: plain JavaScript, no build step.
 *
 * Every URL comes from the #deck-config JSON the server renders (so the page works under any
 * mount prefix). Text from Ollama or users only ever reaches the DOM as text nodes.
 */
(function () {
  "use strict";

  const config = JSON.parse(document.getElementById("deck-config").textContent);
  const API = config.api;
  const PROGRESS = config.progress;
  const ACTIVE = new Set(["queued", "running"]);
  const FINAL = new Set(["succeeded", "failed", "cancelled", "interrupted"]);
  const RETRYABLE = new Set(["failed", "cancelled", "interrupted"]);
  const STATUS_EVERY_MS = 5000;
  const POLL_EVERY_MS = 2000;
  const SSE_RETRY_MS = 10000;
  const LOG_KEEP = Math.max(1, Number(config.log_lines) || 300);

  const state = {
    ops: new Map(), // id -> {op, card, logs: Map(seq -> line)}
    models: [],
    active: null,
    loaded: new Set(),
    reachable: null,
    stale: false,
    lastSeq: 0,
    dirty: new Set(),
    frame: 0,
  };

  // ---------------------------------------------------------------- small helpers

  const $ = (sel, root) => (root || document).querySelector(sel);

  /** An element with attributes and children; strings become text nodes, never markup. */
  function el(tag, attrs, ...children) {
    const node = document.createElement(tag);
    for (const [key, value] of Object.entries(attrs || {})) {
      if (value === null || value === undefined || value === false) continue;
      if (key === "className") node.className = value;
      else if (key === "dataset") Object.assign(node.dataset, value);
      else if (key === "text") node.textContent = value;
      else if (key.startsWith("on")) node.addEventListener(key.slice(2), value);
      else node.setAttribute(key, value === true ? "" : String(value));
    }
    for (const child of children.flat()) {
      if (child === null || child === undefined || child === false) continue;
      node.append(child instanceof Node ? child : document.createTextNode(String(child)));
    }
    return node;
  }

  function setText(node, text) {
    const value = text === null || text === undefined ? "" : String(text);
    if (node.textContent !== value) node.textContent = value;
  }

  function show(node, visible) {
    node.hidden = !visible;
  }

  function encodeName(name) {
    return String(name).split("/").map(encodeURIComponent).join("/");
  }

  const modelUrl = (template, name) => template.replace(config.slots.model, encodeName(name));
  const opUrl = (template, id) => template.replace(config.slots.op, encodeURIComponent(id));

  function humanBytes(bytes) {
    if (bytes === null || bytes === undefined || isNaN(bytes)) return "–";
    const units = ["B", "KB", "MB", "GB", "TB"];
    let value = Number(bytes);
    let unit = 0;
    while (value >= 1000 && unit < units.length - 1) {
      value /= 1000;
      unit += 1;
    }
    const digits = unit === 0 ? 0 : value >= 100 ? 0 : 1;
    return value.toFixed(digits) + " " + units[unit];
  }

  function humanDuration(seconds) {
    if (seconds === null || seconds === undefined || !isFinite(seconds)) return "";
    const s = Math.max(0, Math.round(seconds));
    if (s < 60) return s + "s";
    const m = Math.floor(s / 60);
    if (m < 60) return m + "m " + String(s % 60).padStart(2, "0") + "s";
    return Math.floor(m / 60) + "h " + String(m % 60).padStart(2, "0") + "m";
  }

  function relativeTime(iso) {
    const when = Date.parse(iso);
    if (isNaN(when)) return "";
    const seconds = (Date.now() - when) / 1000;
    if (seconds < 60) return "just now";
    const table = [
      [3600, 60, "minute"],
      [86400, 3600, "hour"],
      [86400 * 30, 86400, "day"],
      [86400 * 365, 86400 * 30, "month"],
      [Infinity, 86400 * 365, "year"],
    ];
    for (const [limit, size, name] of table) {
      if (seconds < limit) {
        const n = Math.floor(seconds / size);
        return n + " " + name + (n === 1 ? "" : "s") + " ago";
      }
    }
    return "";
  }

  function formatPercent(value) {
    const p = Math.max(0, Math.min(100, Number(value) || 0));
    return p.toFixed(1) + "%";
  }

  /** fetch + JSON; throws an Error carrying the API's error message and the status. */
  async function api(url, options) {
    const opts = Object.assign({ headers: {} }, options || {});
    if (opts.json !== undefined) {
      opts.body = JSON.stringify(opts.json);
      opts.headers["Content-Type"] = "application/json";
      delete opts.json;
    }
    opts.headers.Accept = "application/json";
    const response = await fetch(url, opts);
    if (response.status === 401) askForToken();
    let data = null;
    try {
      data = await response.json();
    } catch (err) {
      data = null;
    }
    if (!response.ok) {
      const message =
        (data && data.error && (data.error.message || data.error)) ||
        response.status + " " + response.statusText;
      const error = new Error(String(message));
      error.status = response.status;
      error.data = data;
      throw error;
    }
    return data;
  }

  // ---------------------------------------------------------------- access token

  // With OLLAMA_DECK_TOKEN set, the page asks for the token once and trades it for an
  // HttpOnly session cookie, which fetch and EventSource then send on their own.
  let tokenWaiters = null;

  /** Resolves once the server accepts this page: at once, or after the token was given. */
  async function ensureSession() {
    let response;
    try {
      response = await fetch(API.session, { headers: { Accept: "application/json" } });
    } catch (err) {
      return; // the server is unreachable: the page shows that itself
    }
    if (response.status === 401) await askForToken();
  }

  function askForToken() {
    if (!tokenWaiters) {
      tokenWaiters = [];
      const dialog = $("#token-dialog");
      show($("#token-error"), false);
      if (!dialog.open) dialog.showModal();
      $("#token-input").focus();
    }
    return new Promise((resolve) => tokenWaiters.push(resolve));
  }

  $("#token-dialog").addEventListener("cancel", (event) => event.preventDefault());
  $("#token-form").addEventListener("submit", async (event) => {
    event.preventDefault();
    const input = $("#token-input");
    const error = $("#token-error");
    $("#token-submit").disabled = true;
    try {
      const response = await fetch(API.session, {
        method: "POST",
        headers: { Accept: "application/json", Authorization: "Bearer " + input.value.trim() },
      });
      if (!response.ok) {
        const wrong = response.status === 401;
        setText(error, wrong ? "That token is not right." : response.status + " " + response.statusText);
        show(error, true);
        input.select();
        return;
      }
      input.value = "";
      $("#token-dialog").close();
      const waiters = tokenWaiters || [];
      tokenWaiters = null;
      for (const resolve of waiters) resolve();
      // Asked again mid-session (the token changed): start afresh with the new session.
      if (document.body.dataset.ready) location.reload();
    } catch (err) {
      setText(error, err.message);
      show(error, true);
    } finally {
      $("#token-submit").disabled = false;
    }
  });

  // ---------------------------------------------------------------- Ollama status

  async function refreshStatus() {
    try {
      const status = await api(API.status);
      setReachable(Boolean(status.reachable), status);
      state.loaded = new Set((status.running || []).map((m) => m.name || m.model));
      markLoaded();
    } catch (err) {
      setReachable(false, { error: err.message });
    }
  }

  function setReachable(reachable, status) {
    const was = state.reachable;
    state.reachable = reachable;
    state.downReason = reachable ? null : (status && status.error) || null;
    const box = $("#ollama-status");
    box.dataset.state = reachable ? "up" : "down";
    if (status && status.host) setText($("#ollama-host"), status.host);
    setText($("#ollama-version"), reachable && status.version ? "v" + status.version : reachable ? "" : "unreachable");
    box.title = reachable ? "Ollama answers" : (status && status.error) || "Ollama does not answer";
    updateBanner();
    if (was === false && reachable) refreshModels();
  }

  function updateBanner() {
    const down = state.reachable === false || state.stale;
    if (down) {
      const why = state.downReason ? " (" + state.downReason + ")" : "";
      setText(
        $("#ollama-banner-text"),
        "The deck cannot reach Ollama" + why + ". The list below is the last one seen; " +
          "checking again every " + STATUS_EVERY_MS / 1000 + " s.",
      );
    }
    show($("#ollama-banner"), down);
  }

  // ---------------------------------------------------------------- installed models

  let modelsPending = null;

  function refreshModels() {
    // Several `done` events in a row ask for one refresh, not one each.
    if (modelsPending) return modelsPending;
    modelsPending = (async () => {
      try {
        const data = await api(API.models);
        state.models = data.models || [];
        state.stale = Boolean(data.stale);
        if (data.host) setText($("#ollama-host"), data.host);
        renderModels(data);
        updateBanner();
      } catch (err) {
        const note = $("#installed-note");
        setText(note, "Could not list models: " + err.message);
        show(note, true);
      } finally {
        modelsPending = null;
      }
    })();
    return modelsPending;
  }

  function renderModels(data) {
    const list = $("#installed-list");
    // Keep the rows whose model did not change, so a refresh does not rebuild the table.
    const existing = new Map([...list.children].map((r) => [r.dataset.model, r]));
    const rows = state.models.map((model) => {
      const sig = modelSignature(model);
      const old = existing.get(model.name);
      if (old && old.dataset.sig === sig) return old;
      const row = modelRow(model);
      row.dataset.sig = sig;
      return row;
    });
    if (rows.length !== list.children.length || rows.some((r, i) => list.children[i] !== r)) {
      list.replaceChildren(...rows);
    }
    show($("#installed-empty"), rows.length === 0);
    setText($("#stat-count"), String(data.count ?? rows.length));
    setText($("#stat-disk"), humanBytes(data.total_size || 0));
    const note = $("#installed-note");
    if (data.stale) {
      setText(note, "Ollama is not answering: this is the last list seen" +
        (data.cached_at ? " (" + relativeTime(data.cached_at) + ")." : "."));
      show(note, true);
    } else {
      show(note, false);
    }
    markActive();
    markLoaded();
    fillPromptModels();
  }

  function modelSignature(model) {
    const d = model.details || {};
    const pulling = Boolean(model.operation && ACTIVE.has(model.operation.status));
    return JSON.stringify([model.digest, model.size, model.modified_at, d.parameter_size,
      d.quantization_level, pulling]);
  }

  function modelRow(model) {
    const details = model.details || {};
    const name = model.name;
    const pulling = model.operation && ACTIVE.has(model.operation.status);
    const row = el(
      "tr",
      { dataset: { model: name } },
      el(
        "td",
        { className: "name-cell", "data-label": "Name" },
        el(
          "div",
          { className: "name-wrap" },
          el("span", { className: "model-name", text: name }),
          el("span", { className: "badge badge-active", text: "active", hidden: true }),
          el("span", { className: "badge badge-loaded", text: "in memory", hidden: true }),
          pulling ? el("span", { className: "badge badge-running", text: "pulling" }) : null,
        ),
      ),
      el("td", { className: "num", "data-label": "Size", text: humanBytes(model.size) }),
      el("td", { "data-label": "Params", text: details.parameter_size || "–" }),
      el("td", { "data-label": "Quant", text: details.quantization_level || "–" }),
      el("td", {
        "data-label": "Modified",
        className: "nowrap",
        text: relativeTime(model.modified_at),
        title: model.modified_at ? new Date(model.modified_at).toLocaleString() : null,
      }),
      el(
        "td",
        { className: "actions" },
        el(
          "div",
          { className: "row-actions" },
          el("button", { type: "button", className: "small", dataset: { action: "details" } }, "Details"),
          el("button", { type: "button", className: "small", dataset: { action: "activate" } }, "Set active"),
          el("button", { type: "button", className: "small", dataset: { action: "load" } }, "Load"),
          el("button", { type: "button", className: "small", dataset: { action: "unload" }, hidden: true }, "Unload"),
          el("button", { type: "button", className: "small danger-ghost", dataset: { action: "delete" } }, "Delete"),
        ),
      ),
    );
    return row;
  }

  function sameModel(a, b) {
    if (!a || !b) return false;
    const norm = (n) => {
      n = String(n).toLowerCase();
      return n.slice(n.lastIndexOf("/") + 1).includes(":") ? n : n + ":latest";
    };
    return norm(a) === norm(b);
  }

  function markActive() {
    setText($("#active-model"), state.active || "none");
    $("#active-model").classList.toggle("muted", !state.active);
    for (const row of document.querySelectorAll("#installed-list tr[data-model]")) {
      const active = sameModel(row.dataset.model, state.active);
      row.classList.toggle("is-active", active);
      $(".badge-active", row).hidden = !active;
      const button = $('[data-action="activate"]', row);
      button.disabled = active;
      setText(button, active ? "Active" : "Set active");
    }
  }

  function markLoaded() {
    for (const row of document.querySelectorAll("#installed-list tr[data-model]")) {
      const loaded = [...state.loaded].some((n) => sameModel(n, row.dataset.model));
      $(".badge-loaded", row).hidden = !loaded;
      $('[data-action="load"]', row).hidden = loaded;
      $('[data-action="unload"]', row).hidden = !loaded;
    }
  }

  async function refreshActive() {
    try {
      const data = await api(API.active);
      state.active = data.model || null;
      markActive();
      fillPromptModels();
    } catch (err) {
      /* the active model is a nicety; the rest of the page still works */
    }
  }

  async function setActive(name) {
    try {
      const data = await api(API.active, { method: "PUT", json: { model: name } });
      state.active = data.model || null;
      markActive();
      fillPromptModels(true);
    } catch (err) {
      flash("Could not set the active model: " + err.message);
    }
  }

  $("#installed-list").addEventListener("click", (event) => {
    const button = event.target.closest("button[data-action]");
    if (!button) return;
    const row = button.closest("tr[data-model]");
    const name = row.dataset.model;
    const action = button.dataset.action;
    if (action === "delete") confirmDelete(name);
    else if (action === "details") openDetails(name);
    else if (action === "activate") setActive(name);
    else if (action === "load") loadModel(name, button);
    else if (action === "unload") unloadModel(name, button);
  });

  function confirmDelete(name) {
    const dialog = $("#confirm-dialog");
    setText($("#confirm-text"), "Delete " + name + " from Ollama? Its files are removed from disk.");
    dialog.returnValue = "";
    dialog.onclose = async () => {
      if (dialog.returnValue !== "confirm") return;
      try {
        await api(modelUrl(API.model, name), { method: "DELETE" });
        const row = document.querySelector('#installed-list tr[data-model="' + CSS.escape(name) + '"]');
        if (row) row.remove();
        if (sameModel(name, state.active)) state.active = null;
      } catch (err) {
        flash("Could not delete " + name + ": " + err.message);
      }
      refreshModels();
      refreshActive();
    };
    dialog.showModal();
    $("#confirm-cancel").focus();
  }

  async function loadModel(name, button) {
    button.disabled = true;
    try {
      const op = await api(modelUrl(API.load, name), { method: "POST", json: {} });
      upsertOp(op);
    } catch (err) {
      flash("Could not load " + name + ": " + err.message);
    } finally {
      button.disabled = false;
    }
  }

  async function unloadModel(name, button) {
    button.disabled = true;
    try {
      await api(modelUrl(API.unload, name), { method: "POST", json: {} });
    } catch (err) {
      flash("Could not unload " + name + ": " + err.message);
    } finally {
      button.disabled = false;
      refreshStatus();
    }
  }

  /** A short notice in the pull box area, for errors of row actions. */
  function flash(message) {
    const box = $("#pull-error");
    setText(box, message);
    show(box, true);
  }

  // ---------------------------------------------------------------- details drawer

  async function openDetails(name) {
    const drawer = $("#details-drawer");
    const body = $("#details-body");
    setText($("#details-title"), name);
    body.replaceChildren(el("p", { className: "muted", text: "Loading…" }));
    if (!drawer.open) drawer.showModal();
    try {
      const info = await api(modelUrl(API.model, name));
      body.replaceChildren(...detailsContent(info));
    } catch (err) {
      body.replaceChildren(el("p", { className: "error-text", text: err.message }));
    }
  }

  function detailsContent(info) {
    const vram = info.vram || {};
    const fitsBadge = fitBadge(info.fits);
    const facts = [
      ["Family", info.family],
      ["Parameters", info.parameter_size],
      ["Quantization", info.quantization],
      ["Format", info.format],
      ["Context length", info.context_length ? Number(info.context_length).toLocaleString() : null],
      ["Capabilities", (info.capabilities || []).join(", ")],
      ["License", info.license_summary],
    ];
    const list = el("dl", { className: "facts" });
    for (const [label, value] of facts) {
      list.append(el("dt", { text: label }), el("dd", { text: value || "–" }));
    }
    const parts = [list];
    if (info.stale) {
      parts.unshift(el("p", { className: "muted", text: "From the last list seen (" + (info.error || "Ollama is not reachable") + ")." }));
    }
    const gpu = info.gpu && info.gpu.known ? humanBytes(info.gpu.total_bytes) + " GPU" : "no GPU detected";
    parts.push(
      el(
        "section",
        { className: "vram" },
        el("h3", {}, "VRAM estimate"),
        el(
          "p",
          { className: "vram-total" },
          el("strong", { text: vram.total_gb !== undefined ? vram.total_gb + " GB" : "–" }),
          " ",
          fitsBadge,
          el("span", { className: "muted", text: " (" + gpu + ")" }),
        ),
        el(
          "p",
          { className: "muted" },
          "weights " + humanBytes(vram.weights_bytes) +
            " · KV cache " + humanBytes(vram.kv_cache_bytes) +
            " · overhead " + humanBytes(vram.overhead_bytes),
        ),
        el("ul", { className: "assumptions" }, (vram.assumptions || []).map((a) => el("li", { text: a }))),
      ),
    );
    if (info.parameters) parts.push(el("h3", {}, "Parameters"), el("pre", { className: "code", text: info.parameters }));
    if (info.template) parts.push(el("h3", {}, "Template"), el("pre", { className: "code", text: info.template }));
    if (info.license) {
      parts.push(
        el("details", { className: "license" }, el("summary", {}, "Full license"), el("pre", { className: "code", text: info.license })),
      );
    }
    return parts;
  }

  function fitBadge(fits) {
    if (fits === true) return el("span", { className: "badge fits-yes", dataset: { fits: "yes" } }, "fits");
    if (fits === false) return el("span", { className: "badge fits-no", dataset: { fits: "no" } }, "too big");
    return el("span", { className: "badge fits-unknown", dataset: { fits: "unknown" }, title: "no GPU memory known" }, "fit unknown");
  }

  $("#details-close").addEventListener("click", () => $("#details-drawer").close());
  $("#details-drawer").addEventListener("click", (event) => {
    if (event.target === event.currentTarget) event.currentTarget.close(); // a click on the backdrop
  });

  // ---------------------------------------------------------------- pulls

  async function startPull(name) {
    const box = $("#pull-error");
    show(box, false);
    try {
      const op = await api(API.pull, { method: "POST", json: { model: name } });
      upsertOp(op);
      return op;
    } catch (err) {
      setText(box, err.message);
      show(box, true);
      return null;
    }
  }

  $("#pull-form").addEventListener("submit", async (event) => {
    event.preventDefault();
    const input = $("#pull-input");
    const name = input.value.trim();
    if (!name) {
      input.focus();
      return;
    }
    const button = $("#pull-button");
    button.disabled = true;
    const op = await startPull(name);
    button.disabled = false;
    if (op) input.value = "";
  });

  // ---------------------------------------------------------------- operation cards

  function entryFor(op) {
    let entry = state.ops.get(op.id);
    if (!entry) {
      entry = { op: op, card: null, logs: new Map(), logFetched: false, renderedLogs: 0 };
      state.ops.set(op.id, entry);
    }
    return entry;
  }

  /** Merge a newer operation state in; returns the entry. Older states (by seq) are ignored. */
  function upsertOp(op) {
    const entry = entryFor(op);
    const before = entry.op;
    if (before.seq !== undefined && op.seq !== undefined && op.seq < before.seq) return entry;
    entry.op = Object.assign({}, before, op);
    if (op.urls) entry.urls = op.urls;
    if (before !== op && ACTIVE.has(before.status) && FINAL.has(op.status)) onFinished(entry.op);
    schedule(op.id);
    return entry;
  }

  function onFinished(op) {
    refreshModels();
    refreshStatus();
    if (op.kind === "pull") refreshCatalogSoon();
  }

  function schedule(id) {
    state.dirty.add(id);
    if (!state.frame) state.frame = requestAnimationFrame(flush);
  }

  /** One DOM pass per frame whatever the number of events that arrived. */
  function flush() {
    state.frame = 0;
    const ids = [...state.dirty];
    state.dirty.clear();
    for (const id of ids) {
      const entry = state.ops.get(id);
      if (entry) renderCard(entry);
    }
    updateOpsSummary();
  }

  function updateOpsSummary() {
    let active = 0;
    for (const { op } of state.ops.values()) if (ACTIVE.has(op.status)) active += 1;
    setText($("#stat-pulls"), String(active));
    show($("#ops-empty"), state.ops.size === 0);
  }

  function newCard(entry) {
    const fragment = $("#op-template").content.cloneNode(true);
    const card = fragment.querySelector(".op-card");
    card.dataset.opId = entry.op.id;
    const details = $(".op-log", card);
    details.addEventListener("toggle", () => {
      if (details.open && !entry.logFetched) fetchLog(entry);
    });
    insertCard(card, entry.op);
    return card;
  }

  /** Newest operation first, as GET /progress lists them. */
  function insertCard(card, op) {
    const list = $("#op-list");
    const created = Date.parse(op.created_at) || Date.now();
    for (const other of list.children) {
      const otherEntry = state.ops.get(other.dataset.opId);
      const otherCreated = otherEntry ? Date.parse(otherEntry.op.created_at) || 0 : 0;
      if (created > otherCreated) {
        list.insertBefore(card, other);
        return;
      }
    }
    list.append(card);
  }

  function renderCard(entry) {
    const op = entry.op;
    if (!entry.card) entry.card = newCard(entry);
    const card = entry.card;
    const running = op.status === "running";
    card.dataset.status = op.status;
    card.dataset.percent = String(op.percent ?? 0);
    setText($(".op-model", card), op.model);
    setText($(".op-kind", card), op.kind);
    setText($(".op-status", card), op.status);
    const percent = Math.max(0, Math.min(100, Number(op.percent) || 0));
    const bar = $(".bar", card);
    bar.setAttribute("aria-valuenow", percent.toFixed(1));
    bar.classList.toggle("animated", running || op.status === "queued");
    $(".bar-fill", card).style.width = percent + "%";
    setText($(".op-percent", card), formatPercent(percent));
    const total = op.total_bytes;
    setText(
      $(".op-bytes", card),
      total ? humanBytes(op.completed_bytes || 0) + " / " + humanBytes(total) : "",
    );
    setText($(".op-speed", card), running && op.speed ? humanBytes(op.speed) + "/s" : "");
    setText($(".op-eta", card), running && op.eta_seconds ? "ETA " + humanDuration(op.eta_seconds) : "");
    setText($(".op-phase", card), op.phase || "");
    const message = op.error && op.message === op.error ? "" : op.message;
    setText($(".op-message", card), message || "");
    const error = $(".op-error", card);
    setText(error, op.error || "");
    show(error, Boolean(op.error));
    $('[data-action="cancel"]', card).hidden = !ACTIVE.has(op.status) || Boolean(op.cancel_requested);
    $('[data-action="retry"]', card).hidden = !RETRYABLE.has(op.status);
    $('[data-action="dismiss"]', card).hidden = !FINAL.has(op.status);
    renderLog(entry);
  }

  function addLog(line) {
    const entry = state.ops.get(line.operation_id);
    if (!entry) return; // its card arrives with the next progress event, then its log on demand
    entry.logs.set(line.seq, line);
    if (entry.logs.size > LOG_KEEP) entry.logs.delete(entry.logs.keys().next().value);
    schedule(line.operation_id);
  }

  function renderLog(entry) {
    const card = entry.card;
    const view = $(".log-view", card);
    const lines = [...entry.logs.values()].sort((a, b) => a.seq - b.seq);
    setText($(".op-log-count", card), lines.length ? "(" + lines.length + ")" : "");
    const last = lines.length ? lines[lines.length - 1].seq : 0;
    if (entry.renderedSeq === last && entry.renderedLogs === lines.length) return;
    const atBottom = view.scrollTop + view.clientHeight >= view.scrollHeight - 4;
    // Append in place when only newer lines came; rebuild when a fetched log filled a gap.
    const previous = entry.renderedSeq || 0;
    const onlyNewer = entry.renderedLogs > 0 && lines.length - entry.renderedLogs ===
      lines.filter((l) => l.seq > previous).length;
    if (onlyNewer) {
      for (const line of lines) if (line.seq > previous) view.append(logLine(line));
      while (view.childElementCount > LOG_KEEP) view.firstElementChild.remove();
    } else {
      view.replaceChildren(...lines.map(logLine));
    }
    entry.renderedSeq = last;
    entry.renderedLogs = lines.length;
    if (atBottom) view.scrollTop = view.scrollHeight;
  }

  function logLine(line) {
    const time = line.time ? new Date(line.time).toLocaleTimeString() : "";
    return el("div", { className: "log-line" }, el("time", { text: time }), " ", el("span", { text: line.text }));
  }

  async function fetchLog(entry) {
    try {
      const data = await api(opUrl(PROGRESS.operation, entry.op.id) + "?log=" + LOG_KEEP);
      entry.logFetched = true;
      for (const line of data.log || []) entry.logs.set(line.seq, line);
      upsertOp(data);
    } catch (err) {
      setText($(".op-log-note", entry.card), "log unavailable: " + err.message);
    }
  }

  function logText(entry) {
    return [...entry.logs.values()]
      .sort((a, b) => a.seq - b.seq)
      .map((l) => (l.time || "") + "  " + l.text)
      .join("\n") + "\n";
  }

  async function copyText(text) {
    if (navigator.clipboard && window.isSecureContext) {
      try {
        await navigator.clipboard.writeText(text);
        return true;
      } catch (err) {
        /* fall through to the textarea way */
      }
    }
    const area = el("textarea", { readonly: true, className: "offscreen" });
    area.value = text;
    document.body.append(area);
    area.select();
    let ok = false;
    try {
      ok = document.execCommand("copy");
    } catch (err) {
      ok = false;
    }
    area.remove();
    return ok;
  }

  function download(filename, text) {
    const url = URL.createObjectURL(new Blob([text], { type: "text/plain" }));
    const link = el("a", { href: url, download: filename });
    document.body.append(link);
    link.click();
    link.remove();
    setTimeout(() => URL.revokeObjectURL(url), 1000);
  }

  $("#op-list").addEventListener("click", async (event) => {
    const button = event.target.closest("button[data-action]");
    if (!button) return;
    const card = button.closest("[data-op-id]");
    const entry = state.ops.get(card.dataset.opId);
    if (!entry) return;
    const op = entry.op;
    const note = $(".op-log-note", card);
    const action = button.dataset.action;
    if (action === "copy-log") {
      if (!entry.logFetched) await fetchLog(entry);
      setText(note, (await copyText(logText(entry))) ? "copied" : "copy failed");
    } else if (action === "download-log") {
      if (!entry.logFetched) await fetchLog(entry);
      const safe = String(op.model).replace(/[^A-Za-z0-9._-]+/g, "_");
      download("ollama-deck-" + safe + "-" + op.id.slice(0, 8) + ".log", logText(entry));
    } else if (action === "cancel") {
      button.disabled = true;
      try {
        upsertOp(await api(opUrl(PROGRESS.cancel, op.id), { method: "POST" }));
      } catch (err) {
        setText($(".op-error", card), err.message);
        show($(".op-error", card), true);
      } finally {
        button.disabled = false;
      }
    } else if (action === "retry") {
      button.disabled = true;
      if (op.kind === "load") {
        try {
          upsertOp(await api(modelUrl(API.load, op.model), { method: "POST", json: {} }));
        } catch (err) {
          flash(err.message);
        }
      } else {
        await startPull(op.model);
      }
      button.disabled = false;
    } else if (action === "dismiss") {
      try {
        await api(opUrl(PROGRESS.operation, op.id), { method: "DELETE" });
      } catch (err) {
        if (err.status !== 404) {
          flash(err.message);
          return;
        }
      }
      state.ops.delete(op.id);
      card.remove();
      updateOpsSummary();
    }
  });

  async function loadOperations(polling) {
    const data = await api(PROGRESS.list + "?limit=50");
    let finishedUnseen = false;
    for (const op of data.operations || []) {
      // Between two polls an operation may start and end unseen: the model list changed.
      if (polling && !state.ops.has(op.id) && FINAL.has(op.status)) finishedUnseen = true;
      upsertOp(op);
    }
    if (finishedUnseen) refreshModels();
    return data;
  }

  // ---------------------------------------------------------------- live updates

  let source = null;
  let pollTimer = 0;
  let sseRetryTimer = 0;

  function setLive(mode) {
    const badge = $("#live-state");
    badge.dataset.state = mode;
    setText(badge, mode);
  }

  function connect() {
    clearTimeout(sseRetryTimer);
    if (!window.EventSource) {
      startPolling();
      return;
    }
    // A fresh EventSource has no Last-Event-ID; the query parameter resumes after a fallback.
    const url = state.lastSeq ? PROGRESS.stream + "?last_event_id=" + state.lastSeq : PROGRESS.stream;
    source = new EventSource(url);
    source.addEventListener("open", () => {
      setLive("live");
      stopPolling();
    });
    source.addEventListener("progress", (event) => onOpEvent(event));
    source.addEventListener("done", (event) => onOpEvent(event));
    source.addEventListener("log", (event) => {
      noteSeq(event);
      addLog(JSON.parse(event.data));
    });
    source.addEventListener("error", () => {
      if (source.readyState === EventSource.CLOSED) {
        // The browser gave up (an HTTP error): poll, and try the stream again later.
        source = null;
        startPolling();
        sseRetryTimer = setTimeout(connect, SSE_RETRY_MS);
      } else {
        startPolling(); // reconnecting by itself; keep the cards fresh meanwhile
      }
    });
  }

  function noteSeq(event) {
    const seq = parseInt(event.lastEventId, 10);
    if (seq > state.lastSeq) state.lastSeq = seq;
  }

  function onOpEvent(event) {
    noteSeq(event);
    const op = JSON.parse(event.data);
    const known = state.ops.get(op.id);
    const wasActive = known ? ACTIVE.has(known.op.status) : true;
    upsertOp(op);
    // A done event for a card we never saw active still means the model list changed.
    if (event.type === "done" && (!known || !wasActive)) onFinished(op);
  }

  function startPolling() {
    if (pollTimer) return;
    setLive("polling");
    const tick = async () => {
      try {
        await loadOperations(true);
      } catch (err) {
        /* the server may be restarting; the next tick tries again */
      }
    };
    tick();
    pollTimer = setInterval(tick, POLL_EVERY_MS);
  }

  function stopPolling() {
    clearInterval(pollTimer);
    pollTimer = 0;
  }

  // ---------------------------------------------------------------- catalog

  let catalogCategory = "";
  let catalogLoaded = false;
  let catalogRequest = 0;
  let catalogTimer = 0;

  async function loadCatalog() {
    const number = ++catalogRequest;
    const params = new URLSearchParams();
    if (catalogCategory) params.set("category", catalogCategory);
    const q = $("#catalog-search").value.trim();
    if (q) params.set("q", q);
    const url = API.catalog + (params.toString() ? "?" + params : "");
    const list = $("#catalog-list");
    list.setAttribute("aria-busy", "true");
    try {
      const data = await api(url);
      if (number !== catalogRequest) return; // a newer search answered first
      catalogLoaded = true;
      renderChips(data.categories || []);
      renderCatalog(data);
    } catch (err) {
      if (number === catalogRequest) list.replaceChildren(el("p", { className: "error-text", text: err.message }));
    } finally {
      if (number === catalogRequest) list.removeAttribute("aria-busy");
    }
  }

  function refreshCatalogSoon() {
    if (catalogLoaded) {
      clearTimeout(catalogTimer);
      catalogTimer = setTimeout(loadCatalog, 200);
    }
  }

  function renderChips(categories) {
    const box = $("#catalog-chips");
    const wanted = ["", ...categories];
    const have = [...box.children].map((c) => c.dataset.category);
    if (have.join("|") !== wanted.join("|")) {
      box.replaceChildren(
        ...wanted.map((name) =>
          el("button", { type: "button", className: "chip", dataset: { category: name } }, name || "all"),
        ),
      );
    }
    for (const chip of box.children) {
      chip.setAttribute("aria-pressed", String(chip.dataset.category === catalogCategory));
    }
  }

  function renderCatalog(data) {
    const gpu = data.gpu || {};
    setText(
      $("#catalog-gpu"),
      gpu.known
        ? "Fit is checked against the largest GPU: " + humanBytes(gpu.total_bytes) + "."
        : "No GPU memory detected, so fit is unknown. VRAM figures are estimates at a 4096-token context.",
    );
    const families = data.families || [];
    if (!families.length) {
      $("#catalog-list").replaceChildren(el("p", { className: "empty", text: "Nothing in the catalog matches." }));
      return;
    }
    $("#catalog-list").replaceChildren(...families.map(familyCard));
  }

  function familyCard(family) {
    const rows = family.tags.map((tag) =>
      el(
        "tr",
        { dataset: { model: tag.model } },
        el("td", { "data-label": "Tag" }, el("span", { className: "tag-name", text: tag.name }),
          tag.recommended ? el("span", { className: "badge badge-rec", text: "recommended" }) : null),
        el("td", { "data-label": "Params", text: tag.parameter_size }),
        el("td", { "data-label": "Quant", text: tag.quantization }),
        el("td", { className: "num", "data-label": "Download", text: humanBytes(tag.size_bytes) }),
        el("td", { className: "num", "data-label": "VRAM", text: tag.vram ? tag.vram.total_gb + " GB" : "–",
          title: tag.vram ? (tag.vram.assumptions || []).join("\n") : null }),
        el("td", { "data-label": "Fits" }, fitBadge(tag.fits)),
        el(
          "td",
          { className: "actions" },
          tag.installed
            ? el("span", { className: "badge badge-installed", text: "installed" })
            : el("button", { type: "button", className: "small primary", dataset: { action: "pull", model: tag.model } }, "Pull"),
        ),
      ),
    );
    return el(
      "article",
      { className: "family", dataset: { family: family.name, category: family.category } },
      el(
        "header",
        { className: "family-head" },
        el("h3", { text: family.name }),
        el("span", { className: "badge badge-cat", text: family.category }),
        family.installed ? el("span", { className: "badge badge-installed", text: "installed" }) : null,
      ),
      el("p", { className: "family-desc", text: family.description }),
      family.capabilities && family.capabilities.length
        ? el("p", { className: "caps" }, family.capabilities.map((c) => el("span", { className: "cap", text: c })))
        : null,
      el(
        "div",
        { className: "table-wrap" },
        el(
          "table",
          { className: "tags" },
          el("thead", {}, el("tr", {}, ["Tag", "Params", "Quant", "Download", "VRAM", "Fits", ""].map((h, i) =>
            el("th", { scope: "col", className: i === 3 || i === 4 ? "num" : null, text: h })))),
          el("tbody", {}, rows),
        ),
      ),
    );
  }

  $("#catalog-chips").addEventListener("click", (event) => {
    const chip = event.target.closest("[data-category]");
    if (!chip) return;
    catalogCategory = chip.dataset.category;
    renderChips([...$("#catalog-chips").children].map((c) => c.dataset.category).filter(Boolean));
    loadCatalog();
  });

  $("#catalog-search").addEventListener("input", () => {
    clearTimeout(catalogTimer);
    catalogTimer = setTimeout(loadCatalog, 250);
  });

  $("#catalog-list").addEventListener("click", async (event) => {
    const button = event.target.closest('button[data-action="pull"]');
    if (!button) return;
    button.disabled = true;
    const op = await startPull(button.dataset.model);
    if (op) setText(button, "Pulling…");
    else button.disabled = false;
  });

  // ---------------------------------------------------------------- prompt

  let chatRunning = null;
  let promptPicked = false; // once the user picks a model, refreshes keep their choice

  function fillPromptModels(preferActive) {
    const select = $("#prompt-model");
    const current = select.value;
    const names = state.models.map((m) => m.name);
    const have = [...select.options].map((o) => o.value);
    if (have.join("\n") !== names.join("\n")) {
      select.replaceChildren(...names.map((n) => el("option", { value: n, text: n })));
    }
    const activeName = names.find((n) => sameModel(n, state.active));
    if (preferActive) promptPicked = false;
    if (promptPicked && names.includes(current)) select.value = current;
    else if (activeName) select.value = activeName;
    else if (names.includes(current)) select.value = current;
    $("#prompt-send").disabled = names.length === 0 || chatRunning !== null;
  }

  $("#prompt-model").addEventListener("change", () => {
    promptPicked = true;
  });

  $("#prompt-form").addEventListener("submit", (event) => {
    event.preventDefault();
    sendPrompt();
  });
  $("#prompt-input").addEventListener("keydown", (event) => {
    if (event.key === "Enter" && (event.ctrlKey || event.metaKey)) {
      event.preventDefault();
      sendPrompt();
    }
  });
  $("#prompt-stop").addEventListener("click", () => chatRunning && chatRunning.abort());

  async function sendPrompt() {
    if (chatRunning) return;
    const model = $("#prompt-model").value;
    const prompt = $("#prompt-input").value;
    const reply = $("#prompt-reply");
    const stats = $("#prompt-stats");
    const error = $("#prompt-error");
    show(error, false);
    setText(stats, "");
    reply.replaceChildren();
    if (!model || !prompt.trim()) {
      setText(error, !model ? "Pick a model first." : "Write a prompt first.");
      show(error, true);
      return;
    }
    chatRunning = new AbortController();
    $("#prompt-send").disabled = true;
    show($("#prompt-stop"), true);
    reply.classList.add("streaming");
    try {
      const response = await fetch(API.chat, {
        method: "POST",
        headers: { "Content-Type": "application/json", Accept: "text/event-stream" },
        body: JSON.stringify({ model: model, prompt: prompt }),
        signal: chatRunning.signal,
      });
      if (response.status === 401) askForToken();
      if (!response.ok) {
        let message = response.status + " " + response.statusText;
        try {
          const data = await response.json();
          if (data && data.error) message = data.error.message || String(data.error);
        } catch (err) {
          /* not JSON: keep the status line */
        }
        throw new Error(message);
      }
      await readEvents(response.body, (name, data) => {
        if (name === "token") reply.append(document.createTextNode(data.content || ""));
        else if (name === "done") setText(stats, chatStats(data));
        else if (name === "error") {
          setText(error, data.message || "the reply failed");
          show(error, true);
        }
      });
    } catch (err) {
      if (err.name !== "AbortError") {
        setText(error, err.message);
        show(error, true);
      } else {
        setText(stats, "stopped");
      }
    } finally {
      chatRunning = null;
      reply.classList.remove("streaming");
      show($("#prompt-stop"), false);
      $("#prompt-send").disabled = state.models.length === 0;
    }
  }

  function chatStats(data) {
    const parts = [];
    if (data.tokens !== undefined) parts.push(data.tokens + " tokens");
    if (data.tokens_per_second) parts.push(data.tokens_per_second + " tokens/s");
    if (data.total_seconds) parts.push(data.total_seconds + " s total");
    if (data.done_reason) parts.push("stop: " + data.done_reason);
    return parts.join(" · ");
  }

  /** Read an SSE body with a stream reader (EventSource cannot POST); calls on(event, data). */
  async function readEvents(body, on) {
    const reader = body.getReader();
    const decoder = new TextDecoder();
    let buffer = "";
    const dispatch = (frame) => {
      let name = "message";
      const data = [];
      for (const line of frame.split(/\r?\n/)) {
        if (!line || line.startsWith(":")) continue;
        const colon = line.indexOf(":");
        const field = colon === -1 ? line : line.slice(0, colon);
        let value = colon === -1 ? "" : line.slice(colon + 1);
        if (value.startsWith(" ")) value = value.slice(1);
        if (field === "event") name = value;
        else if (field === "data") data.push(value);
      }
      if (!data.length) return;
      let parsed;
      try {
        parsed = JSON.parse(data.join("\n"));
      } catch (err) {
        parsed = { content: data.join("\n") };
      }
      on(name, parsed);
    };
    for (;;) {
      const { value, done } = await reader.read();
      if (done) break;
      buffer += decoder.decode(value, { stream: true });
      let cut;
      while ((cut = buffer.search(/\r?\n\r?\n/)) !== -1) {
        const frame = buffer.slice(0, cut);
        buffer = buffer.slice(cut).replace(/^\r?\n\r?\n/, "");
        dispatch(frame);
      }
    }
    buffer += decoder.decode();
    if (buffer.trim()) dispatch(buffer);
  }

  // ---------------------------------------------------------------- tabs

  const tabs = [...document.querySelectorAll('[role="tab"]')];

  function selectTab(tab) {
    for (const other of tabs) {
      const selected = other === tab;
      other.setAttribute("aria-selected", String(selected));
      other.tabIndex = selected ? 0 : -1;
      document.getElementById(other.getAttribute("aria-controls")).hidden = !selected;
    }
    if (tab.dataset.tab === "catalog" && !catalogLoaded) loadCatalog();
    if (location.hash !== "#" + tab.dataset.tab) history.replaceState(null, "", "#" + tab.dataset.tab);
  }

  for (const tab of tabs) tab.addEventListener("click", () => selectTab(tab));
  window.addEventListener("hashchange", () => {
    const wanted = tabs.find((t) => "#" + t.dataset.tab === location.hash);
    if (wanted) selectTab(wanted);
  });
  $(".tabs").addEventListener("keydown", (event) => {
    const index = tabs.indexOf(document.activeElement);
    if (index === -1) return;
    const step = event.key === "ArrowRight" ? 1 : event.key === "ArrowLeft" ? -1 : 0;
    if (!step) return;
    const next = tabs[(index + step + tabs.length) % tabs.length];
    next.focus();
    selectTab(next);
  });

  // ---------------------------------------------------------------- start

  async function start() {
    await ensureSession();
    const wanted = tabs.find((t) => "#" + t.dataset.tab === location.hash);
    if (wanted) selectTab(wanted);
    updateOpsSummary();
    connect();
    await Promise.allSettled([refreshActive(), refreshModels(), refreshStatus(), loadOperations()]);
    setInterval(() => {
      refreshStatus();
      if (state.stale || state.reachable === false) refreshModels();
    }, STATUS_EVERY_MS);
    document.body.dataset.ready = "true";
  }

  start();
})();
