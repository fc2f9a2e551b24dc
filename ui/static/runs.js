/* /runs: the run history. Filters live in the URL query string (status, q, workflow_id, source,
   tag, archived; schedule_id, trigger_id and parent_run_id from the run page's links); the list
   keeps up by polling (new runs and status changes appear without a reload). */
"use strict";

(() => {
  const { json, request, post, el, badge, ago, seconds, ACTIVE } = Glassbox;
  const STATUSES = ["queued", "running", "completed", "failed", "canceled", "timed_out", "terminated", "interrupted"];
  const PAGE = 50;
  const POLL_ACTIVE_MS = 2000;
  const POLL_IDLE_MS = 4000;
  const body = document.querySelector("#runs tbody");
  const chips = document.getElementById("chips");
  const search = document.getElementById("q");
  const workflowSelect = document.getElementById("workflow");
  const sourceSelect = document.getElementById("source");
  const tagInput = document.getElementById("tag");
  const scope = document.getElementById("scope");
  // Filters without a control of their own: shown above the list, each removable.
  const SCOPES = { schedule_id: "Schedule", trigger_id: "Trigger", parent_run_id: "Started by run" };
  const SOURCES = {
    manual: "Manual", api: "API", cli: "CLI", rerun: "Rerun", schedule: "Schedule", webhook: "Webhook",
    upload: "Upload", follow_up: "Follow-up", agent: "Agent",
  };
  const SOURCE_TITLES = {
    schedule: "Fired by a schedule", webhook: "Started by a call to a trigger URL",
    upload: "Started by a file posted to an upload trigger", follow_up: "A follow-up of an earlier run",
    agent: "Started by another run's run_workflow block", rerun: "A rerun of an earlier run",
  };
  const more = document.getElementById("more");
  const empty = document.getElementById("empty");
  const errorBox = document.getElementById("error");
  const bulk = document.getElementById("bulk");
  const selectAll = document.getElementById("select-all");
  const selected = new Set();
  const workflowTitles = new Map();
  let items = [];
  let nextCursor = null;
  let timer = null;
  let generation = 0;

  function filters() {
    const params = new URLSearchParams(location.search);
    return {
      status: params.get("status") || "", q: params.get("q") || "",
      workflow_id: params.get("workflow_id") || "", source: params.get("source") || "",
      tag: params.get("tag") || "",
      schedule_id: params.get("schedule_id") || "", trigger_id: params.get("trigger_id") || "",
      parent_run_id: params.get("parent_run_id") || "",
      archived: params.get("archived") === "true",
    };
  }

  function setFilters(changes) {
    const params = new URLSearchParams(location.search);
    for (const [name, value] of Object.entries(changes)) {
      if (value) params.set(name, value); else params.delete(name);
    }
    const query = params.toString();
    history.replaceState(null, "", location.pathname + (query ? "?" + query : ""));
    selected.clear();
    load();
  }

  function query(limit, cursor) {
    const f = filters();
    const params = new URLSearchParams({ limit: String(limit) });
    if (f.status) params.set("status", f.status);
    if (f.q) params.set("q", f.q);
    if (f.workflow_id) params.set("workflow_id", f.workflow_id);
    if (f.source) params.set("source", f.source);
    for (const name of ["tag", ...Object.keys(SCOPES)]) if (f[name]) params.set(name, f[name]);
    if (f.archived) params.set("archived", "true");
    if (cursor) params.set("cursor", cursor);
    return "/runs?" + params.toString();
  }

  function renderChips(counts) {
    const current = filters().status;
    const total = Object.values(counts || {}).reduce((a, b) => a + b, 0);
    const chip = (status, label, count) => el("button", {
      type: "button", class: "chip", "aria-pressed": String(current === status), "data-status": status || "all",
      onclick: () => setFilters({ status }),
    }, label, el("span", { class: "count", text: String(count) }));
    chips.replaceChildren(
      chip("", "All", total),
      ...STATUSES.filter((s) => s === current || (counts && counts[s])).map((s) => chip(s, s.replace("_", " "), (counts && counts[s]) || 0)),
    );
  }

  function runDuration(run) {
    if (!run.started_at) return "—";
    const end = run.finished_at ? new Date(run.finished_at) : (ACTIVE.has(run.status) ? new Date() : null);
    return end ? seconds((end - new Date(run.started_at)) / 1000) : "—";
  }

  /** The run's tags, compactly: the first three as chips (click: filter by it), then "+N". */
  function tagChips(run) {
    const tags = run.tags || [];
    if (!tags.length) return null;
    const shown = tags.slice(0, 3).map((tag) => el("button", {
      type: "button", class: "tag", title: `Show the runs tagged ${tag}`, "data-tag": tag, text: tag,
      onclick: () => { tagInput.value = tag; setFilters({ tag }); },
    }));
    const rest = tags.length - shown.length;
    return el("div", { class: "tags" }, shown, rest > 0 ? el("span", { class: "tag more-tags", title: tags.slice(3).join(", "), text: `+${rest}` }) : null);
  }

  function sourceCell(run) {
    const origin = run.schedule_id || run.trigger_id || run.parent_run_id;
    const title = [SOURCE_TITLES[run.source], origin].filter(Boolean).join(": ");
    return el("td", { class: "col-source", "data-source": run.source, title: title || null },
      el("span", { class: `source source-${run.source}`, text: SOURCES[run.source] || run.source }));
  }

  function renderScope() {
    const f = filters();
    const active = Object.keys(SCOPES).filter((name) => f[name]);
    scope.hidden = !active.length;
    scope.replaceChildren(...active.map((name) => el("span", { class: "scope-chip", "data-scope": name },
      `${SCOPES[name]} `, el("code", { text: f[name] }),
      el("button", { type: "button", class: "icon-button", "aria-label": `Remove the ${SCOPES[name].toLowerCase()} filter`, text: "✕",
        onclick: () => setFilters({ [name]: "" }) }))));
  }

  function shortError(run) {
    const reason = run.failure_reason;
    if (!reason || run.status === "completed") return null;
    const line = reason.split("\n")[0];
    return el("div", { class: "short-error" + (run.status === "canceled" ? " canceled" : ""), title: reason, text: line.length > 110 ? line.slice(0, 107) + "…" : line });
  }

  async function act(button, work) {
    button.disabled = true;
    try { await work(); } catch (error) { showError(error, "The action failed"); }
    refresh();
  }

  function rowActions(run) {
    if (ACTIVE.has(run.status)) {
      return el("button", { type: "button", class: "small danger stop", title: "Stop this run", text: "Stop",
        onclick: (e) => act(e.currentTarget, () => post(`/runs/${encodeURIComponent(run.id)}/cancel`)) });
    }
    return el("button", { type: "button", class: "small rerun", title: "Run it again", text: "Rerun",
      onclick: (e) => act(e.currentTarget, async () => {
        const again = await post(`/runs/${encodeURIComponent(run.id)}/rerun`);
        location.assign(`/runs/${encodeURIComponent(again.id)}`);
      }) });
  }

  function row(run) {
    const href = `/runs/${encodeURIComponent(run.id)}`;
    const check = el("input", { type: "checkbox", class: "pick-run", "aria-label": `Select ${run.title || run.id}`, checked: selected.has(run.id),
      onchange: (e) => { if (e.target.checked) selected.add(run.id); else selected.delete(run.id); renderBulk(); } });
    const workflow = run.workflow_id
      ? el("a", { href: `/workflows/${encodeURIComponent(run.workflow_id)}`, text: workflowTitles.get(run.workflow_id) || "saved workflow" })
      : el("span", { class: "muted", text: "inline" });
    return el("tr", { class: (run.read ? "" : "unread") + (run.archived ? " archived" : ""), "data-run-id": run.id, "data-status": run.status },
      el("td", { class: "pick" }, check),
      el("td", { class: "title" },
        run.read ? null : el("span", { class: "unread-dot", title: "Unread", "aria-label": "unread", text: "●" }),
        el("a", { href, text: run.title || run.id }),
        shortError(run), tagChips(run)),
      el("td", { class: "col-workflow" }, workflow),
      el("td", { class: "status-cell" }, badge(run.status)),
      sourceCell(run),
      el("td", { class: "nowrap started" }, ago(run.started_at || run.created_at)),
      el("td", { class: "nowrap num duration", text: runDuration(run) }),
      el("td", { class: "col-steps nowrap", title: `${run.step_count || 0} steps, ${run.action_count || 0} actions`, text: `${run.step_count || 0} / ${run.action_count || 0}` }),
      el("td", { class: "row-actions" }, rowActions(run)));
  }

  function renderBulk() {
    for (const id of [...selected]) if (!items.some((r) => r.id === id)) selected.delete(id);
    bulk.hidden = selected.size === 0;
    document.getElementById("selected-count").textContent = `${selected.size} selected`;
    const archivedView = filters().archived;
    document.getElementById("bulk-archive").hidden = archivedView;
    document.getElementById("bulk-unarchive").hidden = !archivedView;
    selectAll.checked = items.length > 0 && items.every((r) => selected.has(r.id));
    selectAll.indeterminate = selected.size > 0 && !selectAll.checked;
  }

  function render() {
    body.replaceChildren(...items.map(row));
    empty.hidden = items.length > 0;
    more.hidden = !nextCursor;
    renderBulk();
  }

  function schedule() {
    clearTimeout(timer);
    const active = items.some((run) => ACTIVE.has(run.status));
    timer = setTimeout(refresh, active ? POLL_ACTIVE_MS : POLL_IDLE_MS);
  }

  function showError(error, what = "Could not load runs") {
    errorBox.textContent = `${what}: ${error.detail || error.message}`;
    errorBox.hidden = false;
  }

  async function load() {
    const mine = ++generation;
    clearTimeout(timer);
    const f = filters();
    document.getElementById("heading").textContent = f.archived ? "Archived runs" : "Runs";
    const toggle = document.getElementById("archived-view");
    toggle.textContent = f.archived ? "Back to runs" : "Archived";
    toggle.href = f.archived ? "/runs" : "/runs?archived=true";
    renderScope();
    await fetchPage(mine, PAGE);
  }

  /** Reloads what is shown (same number of rows): new runs come in at the top. */
  async function refresh() {
    if (document.hidden) { schedule(); return; }
    await fetchPage(generation, Math.min(500, Math.max(PAGE, items.length)));
  }

  /** The first `limit` runs under the current filters, unless the filters changed meanwhile. */
  async function fetchPage(mine, limit) {
    try {
      const page = await json(query(limit));
      if (mine !== generation) return;
      errorBox.hidden = true;
      items = page.items;
      nextCursor = page.next_cursor;
      renderChips(page.counts);
      render();
    } catch (error) { showError(error); }
    schedule();
  }

  async function bulkAction(button, label, perRun) {
    const ids = [...selected];
    if (!ids.length) return;
    button.disabled = true;
    const failures = [];
    for (const id of ids) {
      try { await perRun(id); } catch (error) { failures.push(`${id}: ${error.detail || error.message}`); }
    }
    button.disabled = false;
    selected.clear();
    if (failures.length) showError({ message: failures.join("\n") }, `${label} failed for ${failures.length} run(s)`);
    await refresh();
  }

  document.getElementById("bulk-archive").addEventListener("click", (e) =>
    bulkAction(e.currentTarget, "Archive", (id) => post(`/runs/${encodeURIComponent(id)}/archive`)));
  document.getElementById("bulk-unarchive").addEventListener("click", (e) =>
    bulkAction(e.currentTarget, "Unarchive", (id) => post(`/runs/${encodeURIComponent(id)}/unarchive`)));
  document.getElementById("bulk-delete").addEventListener("click", (e) => {
    const n = selected.size;
    if (!window.confirm(`Delete ${n} run(s) and all their recordings? This cannot be undone.`)) return;
    bulkAction(e.currentTarget, "Delete", (id) => request(`/runs/${encodeURIComponent(id)}`, { method: "DELETE" }));
  });
  document.getElementById("bulk-clear").addEventListener("click", () => { selected.clear(); render(); });
  selectAll.addEventListener("change", () => {
    if (selectAll.checked) items.forEach((r) => selected.add(r.id)); else selected.clear();
    render();
  });

  more.addEventListener("click", async () => {
    if (!nextCursor) return;
    more.disabled = true;
    try {
      const page = await json(query(PAGE, nextCursor));
      items = items.concat(page.items);
      nextCursor = page.next_cursor;
      render();
    } catch (error) { showError(error); }
    more.disabled = false;
  });

  async function loadWorkflows() {
    try {
      const page = await json("/workflows");
      for (const w of page.items) workflowTitles.set(w.id, w.title);
      const current = filters().workflow_id;
      workflowSelect.replaceChildren(el("option", { value: "", text: "All workflows" }),
        ...page.items.map((w) => el("option", { value: w.id, text: w.title, selected: w.id === current })));
      if (current && !workflowTitles.has(current)) {
        workflowSelect.append(el("option", { value: current, text: current, selected: true }));
      }
      render();
    } catch (_) { /* the list works without titles */ }
  }

  let typing = null;
  const initial = filters();
  search.value = initial.q;
  sourceSelect.value = initial.source;
  tagInput.value = initial.tag;
  let tagTyping = null;
  tagInput.addEventListener("input", () => {
    clearTimeout(tagTyping);
    tagTyping = setTimeout(() => setFilters({ tag: tagInput.value.trim() }), 300);
  });
  search.addEventListener("input", () => {
    clearTimeout(typing);
    typing = setTimeout(() => setFilters({ q: search.value.trim() }), 300);
  });
  workflowSelect.addEventListener("change", () => setFilters({ workflow_id: workflowSelect.value }));
  sourceSelect.addEventListener("change", () => setFilters({ source: sourceSelect.value }));
  document.getElementById("search-form").addEventListener("submit", (event) => {
    event.preventDefault();
    clearTimeout(typing);
    clearTimeout(tagTyping);
    setFilters({ q: search.value.trim(), tag: tagInput.value.trim() });
  });
  document.addEventListener("visibilitychange", () => { if (!document.hidden) refresh(); });
  renderChips(null);
  load();
  loadWorkflows();
})();
