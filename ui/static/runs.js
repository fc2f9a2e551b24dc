/* /runs: the run history. Filters live in the URL query string (status, q). */
"use strict";

(() => {
  const { json, el, badge, date, duration, ACTIVE } = Glassbox;
  const STATUSES = ["queued", "running", "completed", "failed", "canceled", "timed_out", "terminated", "interrupted"];
  const PAGE = 50;
  const body = document.querySelector("#runs tbody");
  const chips = document.getElementById("chips");
  const search = document.getElementById("q");
  const more = document.getElementById("more");
  const empty = document.getElementById("empty");
  const errorBox = document.getElementById("error");
  let items = [];
  let nextCursor = null;
  let timer = null;
  let generation = 0;

  function filters() {
    const params = new URLSearchParams(location.search);
    return {
      status: params.get("status") || "", q: params.get("q") || "",
      workflow_id: params.get("workflow_id") || "", source: params.get("source") || "",
    };
  }

  function setFilters(changes) {
    const params = new URLSearchParams(location.search);
    for (const [name, value] of Object.entries(changes)) {
      if (value) params.set(name, value); else params.delete(name);
    }
    const query = params.toString();
    history.replaceState(null, "", location.pathname + (query ? "?" + query : ""));
    load();
  }

  function query(limit, cursor) {
    const { status, q, workflow_id: workflowId, source } = filters();
    const params = new URLSearchParams({ limit: String(limit) });
    if (status) params.set("status", status);
    if (q) params.set("q", q);
    if (workflowId) params.set("workflow_id", workflowId);
    if (source) params.set("source", source);
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

  function row(run) {
    const href = `/runs/${encodeURIComponent(run.id)}`;
    return el("tr", { class: run.read ? "" : "unread", "data-run-id": run.id },
      el("td", { class: "title" },
        run.read ? null : el("span", { class: "unread-dot", title: "Unread", "aria-label": "unread", text: "●" }),
        el("a", { href, text: run.title || run.id })),
      el("td", {}, badge(run.status)),
      el("td", { title: run.created_at }, date(run.created_at)),
      el("td", {}, duration(run)),
      el("td", { class: "mono" }, el("a", { href, text: run.id })));
  }

  function render() {
    body.replaceChildren(...items.map(row));
    empty.hidden = items.length > 0;
    more.hidden = !nextCursor;
  }

  function schedule() {
    clearTimeout(timer);
    if (items.some((run) => ACTIVE.has(run.status))) timer = setTimeout(refresh, 2000);
  }

  function showError(error) {
    errorBox.textContent = `Could not load runs: ${error.message}`;
    errorBox.hidden = false;
  }

  async function load() {
    const mine = ++generation;
    clearTimeout(timer);
    try {
      const page = await json(query(PAGE));
      if (mine !== generation) return;
      errorBox.hidden = true;
      items = page.items;
      nextCursor = page.next_cursor;
      renderChips(page.counts);
      render();
      schedule();
    } catch (error) { showError(error); }
  }

  /** Reloads what is shown (same number of rows), while some visible run is active. */
  async function refresh() {
    const mine = generation;
    try {
      const page = await json(query(Math.min(500, Math.max(PAGE, items.length))));
      if (mine !== generation) return;
      items = page.items;
      nextCursor = page.next_cursor;
      renderChips(page.counts);
      render();
    } catch (error) { showError(error); }
    schedule();
  }

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

  let typing = null;
  search.value = filters().q;
  search.addEventListener("input", () => {
    clearTimeout(typing);
    typing = setTimeout(() => setFilters({ q: search.value.trim() }), 300);
  });
  document.getElementById("search-form").addEventListener("submit", (event) => {
    event.preventDefault();
    clearTimeout(typing);
    setFilters({ q: search.value.trim() });
  });
  renderChips(null);
  load();
})();
