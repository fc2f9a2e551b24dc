/* /runs/{id}: one run. Live through Server-Sent Events (cards, status) and a WebSocket (frames). */
"use strict";

(() => {
  const { json, text, post, send, el, badge, date, duration, clock, withKey, ACTIVE } = Glassbox;
  const runId = decodeURIComponent(location.pathname.split("/").filter(Boolean)[1] || "");
  const runPath = `/runs/${encodeURIComponent(runId)}`;
  const $ = (id) => document.getElementById(id);
  const TABS = ["overview", "output", "parameters", "recording", "code", "trace"];
  let run = null;
  let cards = [];
  let selectedSeq = null;
  let events = null;
  let socket = null;
  let frameUrl = null;
  let codeLoaded = false;
  let codeText = "";
  let traceLoaded = false;
  let activity = null; // {requests, console, missing} once the run has ended

  function showError(message) {
    $("error").textContent = message;
    $("error").hidden = false;
  }

  function artifact(kind) {
    const found = (run && run.artifacts || []).filter((a) => a.kind === kind);
    return found.length ? found[found.length - 1] : null;
  }

  function size(n) {
    if (n === null || n === undefined || n < 0) return "—";
    if (n < 1024) return `${n} B`;
    if (n < 1024 * 1024) return `${(n / 1024).toFixed(1)} KB`;
    return `${(n / 1024 / 1024).toFixed(1)} MB`;
  }

  /** Copies `value`; the button says so for a moment. */
  async function copy(value, button) {
    try {
      await navigator.clipboard.writeText(value);
    } catch (_) {
      const area = el("textarea", { style: "position: fixed; opacity: 0" });
      area.value = value;
      document.body.append(area);
      area.select();
      document.execCommand("copy");
      area.remove();
    }
    if (!button) return;
    const label = button.dataset.label || button.textContent;
    button.dataset.label = label;
    button.textContent = "Copied";
    button.classList.add("copied");
    setTimeout(() => { button.textContent = label; button.classList.remove("copied"); }, 1500);
  }

  // Icons: constant SVG markup (never data), drawn with currentColor.
  const ICONS = {
    thought: '<path d="M3 4h10v6H7l-3 3v-3H3z"/>',
    block: '<path d="M2 5l6-3 6 3-6 3z"/><path d="M2 8.5l6 3 6-3"/><path d="M2 11.5l6 3 6-3"/>',
    action: '<path d="M4 2l8 5-3.5 1L11 13l-1.7.8L7 9l-3 2.5z"/>',
    divergence: '<path d="M8 14V8M8 8L3 3M8 8l5-5"/>',
    ok: '<path d="M3 8.5l3 3 7-7"/>',
    bad: '<path d="M4 4l8 8M12 4l-8 8"/>',
    running: '<circle cx="8" cy="8" r="5.5" stroke-dasharray="22 12"/>',
    stopped: '<path d="M4 8h8"/>',
    image: '<rect x="2" y="3" width="12" height="10" rx="1.5"/><path d="M2 11l4-4 3 3 2-2 3 3"/>',
  };
  function icon(name, cls = "icon") {
    const span = el("span", { class: cls, "aria-hidden": "true" });
    span.innerHTML = `<svg viewBox="0 0 16 16" width="16" height="16" fill="none" stroke="currentColor" stroke-width="1.6" stroke-linecap="round" stroke-linejoin="round">${ICONS[name] || ""}</svg>`;
    return span;
  }

  // --- tabs: WAI-ARIA tabs (automatic activation, roving tabindex), kept in the URL hash ----------

  function currentTab() {
    return TABS.find((t) => $("tab-" + t).getAttribute("aria-selected") === "true");
  }

  function selectTab(name, push = true) {
    if (!TABS.includes(name)) name = "overview";
    for (const tab of TABS) {
      const button = $("tab-" + tab);
      button.setAttribute("aria-selected", String(tab === name));
      button.tabIndex = tab === name ? 0 : -1;
      $("panel-" + tab).hidden = tab !== name;
    }
    if (push && location.hash.slice(1) !== (name === "overview" ? "" : name)) {
      history.replaceState(null, "", name === "overview" ? location.pathname + location.search : "#" + name);
    }
    if (name === "code") loadCode();
    if (name === "trace") { if (traceLoaded) keepTabFocus($("trace-frame"), true); else loadTrace(); }
    if (name === "recording") placeMarkers();
    if (name === "parameters") renderBlockConfig();
  }

  for (const tab of TABS) {
    const button = $("tab-" + tab);
    button.addEventListener("click", () => selectTab(tab));
    button.addEventListener("keydown", (e) => {
      const at = TABS.indexOf(tab);
      const to = { ArrowRight: at + 1, ArrowLeft: at - 1, Home: 0, End: TABS.length - 1 }[e.key];
      if (to === undefined) return;
      e.preventDefault();
      const next = TABS[(to + TABS.length) % TABS.length];
      selectTab(next);
      $("tab-" + next).focus();
    });
  }
  window.addEventListener("hashchange", () => selectTab(location.hash.slice(1), false));

  // --- header ----------------------------------------------------------------------------------

  const OUTCOME_LABELS = {
    canceled: "Canceled by a user", timed_out: "Timed out", terminated: "Terminated",
    interrupted: "Interrupted", failed: "Failure reason",
  };

  function renderHeader() {
    document.title = `${run.title || run.id} · Glassbox`;
    $("title").textContent = run.title || run.id;
    $("status").replaceChildren(badge(run.status));
    $("run-id").textContent = run.id;
    $("source").textContent = `Source ${SOURCE_LABELS[run.source] || run.source}`;
    $("source").dataset.source = run.source;
    $("created").replaceChildren("Created ", Glassbox.ago(run.created_at));
    $("duration").textContent = "Duration " + duration(run);
    const active = ACTIVE.has(run.status);
    $("cancel").hidden = !active;
    $("cancel").disabled = !!run.cancel_requested;
    $("cancel").textContent = run.cancel_requested ? "Canceling…" : "Cancel";
    $("rerun").hidden = active;
    $("rerun-from").hidden = active;
    $("continue").hidden = active;
    const wf = run.workflow_id;
    $("edit").hidden = !wf;
    $("duplicate-link").hidden = !wf;
    $("duplicate").hidden = !!wf;
    if (wf) {
      $("edit").href = `/workflows/${encodeURIComponent(wf)}/edit`;
      $("duplicate-link").href = `/workflows/${encodeURIComponent(wf)}?from=${encodeURIComponent(run.id)}#run`;
      $("crumb-workflow").replaceChildren(" / ", el("a", { href: `/workflows/${encodeURIComponent(wf)}`, text: "Workflow" }));
    }
    renderOutcome();
    renderCounters();
    renderRelations();
  }

  // --- where the run comes from and what it started: tags, metadata, parent, schedule or
  // trigger, child runs (run_workflow blocks, follow-ups, reruns) -------------------------------

  const SOURCE_LABELS = {
    manual: "manual", api: "API", cli: "CLI", rerun: "rerun", schedule: "schedule", webhook: "trigger URL",
    upload: "upload trigger", follow_up: "follow-up", agent: "another run",
  };
  let children = null; // {items, more}: the runs this one started, once loaded
  const origins = new Map(); // "schedules/ID" or "triggers/ID" → its record, {missing: true}, or null while loading

  /** A value for a small table: text as is, lists and objects compact and readable. */
  function compact(v, depth = 0) {
    if (v === null || v === undefined) return "—";
    if (Array.isArray(v)) return v.map((x) => compact(x, depth + 1)).join(", ");
    if (typeof v === "object") {
      const inner = Object.entries(v).map(([k, x]) => `${k}: ${compact(x, depth + 1)}`).join(", ");
      return depth ? `{${inner}}` : inner;
    }
    return String(v);
  }

  /** key → value rows (not a JSON wall): long values cut short, the whole in the title. */
  function metaTable(object, id) {
    return el("table", { class: "meta", id }, el("tbody", {}, Object.entries(object).map(([k, v]) => {
      const full = compact(v);
      const shown = full.length > 200 ? full.slice(0, 197) + "…" : full;
      return el("tr", { "data-key": k }, el("th", { scope: "row", text: k }),
        el("td", { class: typeof v === "string" ? null : "mono", title: shown !== full ? full : null, text: shown }));
    })));
  }

  function tagLinks(tags) {
    return (tags || []).map((t) => el("a", { class: "tag", href: `/runs?tag=${encodeURIComponent(t)}`, title: `The runs tagged ${t}`, text: t }));
  }

  function runLink(id, label) {
    return el("a", { href: `/runs/${encodeURIComponent(id)}`, class: label ? null : "mono", text: label || id });
  }

  async function loadOrigin(key) {
    origins.set(key, null);
    try { origins.set(key, await json(`/${key}`)); } catch (_) { origins.set(key, { missing: true }); }
    renderRelations();
  }

  function originLine(kind, id) {
    const key = `${kind}/${encodeURIComponent(id)}`;
    if (!origins.has(key)) loadOrigin(key);
    const found = origins.get(key);
    const name = found && !found.missing ? (found.title || found.name) : null;
    const what = kind === "schedules" ? "Schedule" : (run.source === "upload" ? "Upload trigger" : "Trigger");
    const wf = run.workflow_id;
    const label = name ? `${name} (${id})` : id;
    return [
      el("span", { text: what }),
      wf ? el("a", { href: `/workflows/${encodeURIComponent(wf)}${kind === "schedules" ? "#schedules" : ""}`, "data-origin": kind, text: label })
        : el("code", { text: label }),
      found && found.missing ? el("span", { class: "muted", text: "(deleted)" }) : null,
      el("span", { class: "muted", text: "·" }),
      el("a", { href: `/runs?${kind === "schedules" ? "schedule_id" : "trigger_id"}=${encodeURIComponent(id)}`, text: "its runs" }),
    ];
  }

  function renderRelations() {
    if (!run || children === null) return; // once, with the runs it started: no second jump
    const rows = [];
    const row = (name, id, ...content) => rows.push(el("dt", { text: name }), el("dd", { id }, ...content));
    if ((run.tags || []).length) row("Tags", "run-tags", tagLinks(run.tags));
    if (run.metadata && Object.keys(run.metadata).length) row("Metadata", "run-metadata", metaTable(run.metadata, "metadata-table"));
    if (run.schedule_id) row("Started by", "run-origin", originLine("schedules", run.schedule_id));
    else if (run.trigger_id) row("Started by", "run-origin", originLine("triggers", run.trigger_id));
    if (run.parent_run_id) {
      const label = { follow_up: "Follows", rerun: "Rerun of", agent: "Started by run" }[run.source] || "Parent run";
      row(label, "run-parent", runLink(run.parent_run_id));
    }
    if (children && children.items.length) {
      row("Started runs", "run-children", children.items.map((c) => el("span", { class: "child", "data-run-id": c.id },
        badge(c.status), runLink(c.id, c.title || c.id), el("span", { class: "muted", text: SOURCE_LABELS[c.source] || c.source }))),
      el("a", { href: `/runs?parent_run_id=${encodeURIComponent(run.id)}`, text: children.more ? "all of them" : "in the history" }));
    }
    $("relations").replaceChildren(...rows);
    $("relations").hidden = !rows.length;
  }

  async function loadChildren() {
    try {
      const page = await json(`/runs?parent_run_id=${encodeURIComponent(runId)}&limit=20`);
      children = { items: page.items.slice().reverse(), more: !!page.next_cursor }; // oldest first
    } catch (_) {
      if (children === null) children = { items: [], more: false };
    }
    renderRelations();
  }

  function renderOutcome() {
    const outcome = $("outcome");
    outcome.replaceChildren();
    if (OUTCOME_LABELS[run.status] && (run.failure_reason || run.status === "canceled")) {
      const canceled = run.status === "canceled";
      const reason = run.failure_reason || "";
      const redundant = canceled && /^canceled by a user\.?$/i.test(reason.trim());
      outcome.append(el("div", { class: "outcome " + (canceled ? "canceled" : "failure"), id: canceled ? "canceled" : "failure" },
        icon(canceled ? "stopped" : "bad", "outcome-icon"),
        el("div", {}, el("strong", { text: OUTCOME_LABELS[run.status] }),
          reason && !redundant ? el("pre", { text: reason }) : null)));
    }
    if (run.summary_html && !ACTIVE.has(run.status)) {
      const body = el("div", { class: "markdown", id: "summary" });
      body.innerHTML = run.summary_html; // Markdown rendered server-side, sanitized by nh3
      outcome.append(el("div", { class: "outcome summary" }, el("strong", { text: "Summary" }), body));
    }
    if (run.extracted_information && Object.keys(run.extracted_information).length && !run.failure_reason) {
      outcome.append(el("div", { class: "outcome extracted", id: "extracted" },
        el("div", { class: "section-head" }, el("strong", { text: "Extracted information" }),
          el("a", { href: "#output", text: "Output tab" })),
        keyValues(run.extracted_information)));
    }
    // The evidence, apart from the status: a record that could not be completed says so.
    const record = run.record;
    if (record && record.complete === false) {
      outcome.append(el("div", { class: "outcome incomplete", id: "record-incomplete", role: "alert" },
        el("strong", { text: "Incomplete record: some artifacts could not be kept" }),
        el("ul", {}, ...(record.missing || []).map((line) => el("li", { text: line })))));
    }
  }

  /** A flat object as key: value chips; lists and nested values compact, cut short. */
  function keyValues(object) {
    return el("dl", { class: "kv" }, Object.entries(object).map(([k, v]) => {
      let shown = compact(v);
      if (shown.length > 160) shown = shown.slice(0, 157) + "…";
      return el("div", {}, el("dt", { text: k }), el("dd", { class: "mono", text: shown }));
    }));
  }

  $("copy-id").addEventListener("click", (e) => copy(runId, e.currentTarget));

  $("cancel").addEventListener("click", async () => {
    $("cancel").disabled = true;
    try {
      run = Object.assign(run, await post(`${runPath}/cancel`));
      renderHeader();
    } catch (error) {
      if (error.status === 409) {
        // It ended meanwhile: show how, not the refusal.
        await loadRun();
        if (!ACTIVE.has(run.status)) { finished(); return; }
      }
      showError(`Could not cancel: ${error.detail || error.message}`);
      $("cancel").disabled = false;
    }
  });

  $("rerun").addEventListener("click", async () => {
    $("rerun").disabled = true;
    try {
      const created = await post(`${runPath}/rerun`);
      location.assign(`/runs/${encodeURIComponent(created.id)}`);
    } catch (error) {
      if (error.status === 422 && run.workflow_id) {
        // Secrets are not kept: the workflow's form asks for them again.
        location.assign($("duplicate-link").href);
        return;
      }
      if (error.status === 422) { fromBlock = false; openDuplicate(error); $("rerun").disabled = false; return; }
      showError(`Could not rerun: ${error.detail || error.message}`);
      $("rerun").disabled = false;
    }
  });

  for (const dialog of document.querySelectorAll("dialog")) {
    for (const button of dialog.querySelectorAll(".close")) button.addEventListener("click", () => dialog.close());
    dialog.addEventListener("click", (e) => { if (e.target === dialog) dialog.close(); });
  }

  // --- duplicate an inline run: a form from its definition's parameters ---------------------

  let definition = null; // the run's workflow, from /reproduce (secrets masked)
  let snippets = null;
  async function reproduce() {
    if (!snippets) {
      snippets = await json(`${runPath}/reproduce`);
      definition = snippets.body.workflow || {};
    }
    return snippets;
  }

  function paramField(name, spec, value) {
    const id = `dup-${name}`;
    const type = spec.type || "string";
    const common = { id, "data-parameter": name, name };
    let input;
    if (type === "boolean") input = el("input", Object.assign({ type: "checkbox", checked: value === true || value === "true" }, common));
    else {
      input = el("input", Object.assign({
        type: spec.secret ? "password" : (type === "number" || type === "integer") ? "number" : "text",
        step: type === "integer" ? "1" : type === "number" ? "any" : null,
        autocomplete: spec.secret ? "new-password" : "off",
        value: value === null || value === undefined || spec.secret ? "" : String(value),
      }, common));
    }
    if (type === "file") { input.disabled = true; input.title = "Files are kept from the original run"; }
    return el("div", { class: "field" + (type === "boolean" ? " check" : "") },
      el("label", { for: id }, el("span", { class: "name", text: name }),
        el("span", { class: "type", text: spec.secret ? `${type}, secret` : type })),
      input,
      el("p", { class: "help", text: spec.description || "" }),
      el("p", { class: "field-error", "data-error-for": `parameters.${name}`, hidden: true }));
  }

  let fromBlock = false; // the form reruns from a block instead of duplicating
  async function openDuplicate(error) {
    try {
      await reproduce();
    } catch (e) {
      showError(`Could not load the run's workflow: ${e.message}`);
      return;
    }
    $("from-block-field").hidden = !fromBlock;
    $("duplicate-title").textContent = fromBlock ? "Rerun from a block" : "Duplicate this run";
    if (fromBlock) {
      const blocks = (definition.blocks || []).map((b) => b.label).filter(Boolean);
      $("from-block").replaceChildren(...blocks.map((label) => el("option", { value: label, text: label })));
      if (blocks.length > 1) $("from-block").value = blocks[blocks.length - 1];
    }
    const specs = definition.parameters || {};
    const values = run.parameters || {};
    const fields = Object.entries(specs).map(([name, spec]) => paramField(name, spec || {}, name in values ? values[name] : (spec || {}).default));
    $("duplicate-fields").replaceChildren(...(fields.length ? fields : [el("p", { class: "muted", text: "This workflow takes no parameters." })]));
    $("duplicate-error").hidden = true;
    $("duplicate-dialog").showModal();
    const first = $("duplicate-fields").querySelector("input:not([disabled])");
    if (first) first.focus();
    if (error) showDuplicateErrors(error); // focuses the first field at fault
  }

  function showDuplicateErrors(error) {
    const form = $("duplicate-form");
    for (const node of form.querySelectorAll(".field-error")) node.hidden = true;
    for (const node of form.querySelectorAll("[aria-invalid]")) node.removeAttribute("aria-invalid");
    const unplaced = Glassbox.placeErrors(form, error);
    if (!(error.fields || []).length) unplaced.push(error.detail || error.message);
    $("duplicate-error").textContent = unplaced.join("\n");
    $("duplicate-error").hidden = !unplaced.length;
    const invalid = form.querySelector("[aria-invalid=true]");
    if (invalid) invalid.focus();
  }

  $("duplicate").addEventListener("click", () => { fromBlock = false; openDuplicate(null); });

  // --- rerun from a block: the same form, with the block to go live from -------------------
  $("rerun-from").addEventListener("click", () => { fromBlock = true; openDuplicate(null); });

  // --- continue: a new run in this run's browser state, with a goal --------------------------
  $("continue").addEventListener("click", () => {
    $("continue-error").hidden = true;
    $("continue-dialog").showModal();
    $("continue-goal").focus();
  });
  $("continue-form").addEventListener("submit", async (e) => {
    e.preventDefault();
    $("continue-start").disabled = true;
    try {
      const created = await send("POST", `${runPath}/continue`, { goal: $("continue-goal").value });
      location.assign(`/runs/${encodeURIComponent(created.id)}`);
    } catch (error) {
      const unplaced = Glassbox.placeErrors($("continue-form"), error);
      if (!(error.fields || []).length) unplaced.push(error.detail || error.message);
      $("continue-error").textContent = unplaced.join("\n");
      $("continue-error").hidden = !unplaced.length;
      $("continue-start").disabled = false;
    }
  });
  $("duplicate-form").addEventListener("submit", async (e) => {
    e.preventDefault();
    const specs = definition.parameters || {};
    const parameters = {};
    for (const input of $("duplicate-form").querySelectorAll("[data-parameter]")) {
      const name = input.dataset.parameter;
      const spec = specs[name] || {};
      if (input.disabled) continue;
      if (input.type === "checkbox") parameters[name] = input.checked;
      else if (input.value !== "") {
        parameters[name] = (spec.type === "number" || spec.type === "integer") && !isNaN(Number(input.value)) ? Number(input.value) : input.value;
      }
    }
    $("duplicate-start").disabled = true;
    try {
      const created = fromBlock
        ? await send("POST", `${runPath}/rerun`, { parameters, from_block: $("from-block").value })
        : await send("POST", `${runPath}/duplicate`, { parameters });
      location.assign(`/runs/${encodeURIComponent(created.id)}`);
    } catch (error) {
      showDuplicateErrors(error);
      $("duplicate-start").disabled = false;
    }
  });

  // --- API & Webhooks: the snippets that recreate the run, the webhook deliveries ---------------

  const SNIPPETS = [["curl", "curl"], ["python", "Python"], ["powershell", "PowerShell"]];
  let snippetKind = "curl";

  function showSnippet(kind) {
    snippetKind = kind;
    for (const button of $("snippet-tabs").querySelectorAll("button")) {
      button.setAttribute("aria-pressed", String(button.dataset.kind === kind));
    }
    $("snippet").textContent = snippets[kind] || "";
  }

  async function loadWebhook() {
    const box = $("webhook");
    $("payload").replaceChildren(jsonBlock(run));
    if (!run.webhook_url) {
      box.replaceChildren(el("p", { class: "note", text: "This run has no webhook_url. Give one when creating a run to be told when it ends." }));
      return;
    }
    const answer = await json(`${runPath}/webhook-deliveries`);
    const rows = answer.items.map((d) => el("tr", { class: d.error || (d.status_code && d.status_code >= 300) ? "failed" : null },
      el("td", { text: String(d.attempt) + (d.manual ? " (sent again)" : "") }),
      el("td", { text: date(d.at) }),
      el("td", { text: d.status_code === null ? "—" : String(d.status_code) }),
      el("td", { text: d.error || "" }),
      el("td", { text: d.duration_ms === null ? "" : `${d.duration_ms} ms` })));
    const resend = el("button", { type: "button", class: "small", id: "resend", text: "Send again" });
    resend.hidden = ACTIVE.has(run.status);
    resend.addEventListener("click", async () => {
      resend.disabled = true;
      try {
        await post(`${runPath}/webhook-deliveries`);
        await loadWebhook();
      } catch (error) {
        showError(`Could not send the webhook: ${error.message}`);
        resend.disabled = false;
      }
    });
    const urlCopy = el("button", { type: "button", class: "small", text: "Copy", onclick: (e) => copy(run.webhook_url, e.currentTarget) });
    box.replaceChildren(
      el("p", { class: "webhook-line" }, el("code", { text: run.webhook_url }), " ", urlCopy, el("span", { class: "muted", text: ` state: ${answer.state || "—"} ` }), resend),
      rows.length
        ? el("div", { class: "table-wrap" }, el("table", { class: "deliveries", id: "deliveries" },
          el("thead", {}, el("tr", {}, ["Attempt", "At", "Status", "Error", "Took"].map((h) => el("th", { text: h })))),
          el("tbody", {}, rows)))
        : el("p", { class: "note", text: "No delivery yet." }));
  }

  $("api-button").addEventListener("click", async () => {
    $("api-dialog").showModal();
    try {
      if (!$("snippet-tabs").children.length) {
        await reproduce();
        $("snippet-tabs").replaceChildren(...SNIPPETS.map(([kind, label]) =>
          el("button", { type: "button", class: "small", dataset: { kind }, text: label, onclick: () => showSnippet(kind) })));
        showSnippet("curl");
        const env = snippets.secret_env || [];
        $("snippet-env").hidden = !env.length;
        $("snippet-env").textContent = env.length ? `Secrets are read from environment variables: ${env.join(", ")} (and GLASSBOX_API_KEY).` : "";
      }
      await loadWebhook();
    } catch (error) {
      showError(`Could not load the API snippets: ${error.message}`);
    }
  });
  $("copy-snippet").addEventListener("click", (e) => copy(snippets ? snippets[snippetKind] : "", e.currentTarget));
  $("copy-payload").addEventListener("click", (e) => copy(JSON.stringify(run, null, 2), e.currentTarget));

  // --- overview: timeline, browser panel, the selected card's requests and console --------------

  function cardState(card) {
    if (card.kind === "action" || card.kind === "block") {
      if (card.error || (card.status && !["completed", "running"].includes(card.status))) return card.status === "canceled" ? "stopped" : "bad";
      if (card.status === "running" || (card.kind === "block" && card.event === "started")) {
        return ACTIVE.has(run.status) ? "running" : "ok";
      }
      if (card.status === "completed") return "ok";
    }
    if (card.kind === "divergence") return "warn";
    return "neutral";
  }

  function cardBody(card) {
    if (card.kind === "thought") return [card.text || ""];
    if (card.kind === "block") {
      const what = `${card.label || card.block_label || ""} (${card.type || "block"}) ${card.event || ""}`;
      return [what, card.error ? el("span", { class: "result bad", text: " — " + card.error }) : null];
    }
    if (card.kind === "action") {
      const bad = card.status && card.status !== "completed";
      return [
        el("span", { class: "verb", text: card.verb || card.tool || "action" }), " ",
        card.target ? el("code", { class: "target", text: card.target }) : null,
        card.value !== null && card.value !== undefined && card.verb !== "extract" ? el("span", { class: "value", text: ` = ${card.value}` }) : null,
        el("div", { class: "result" + (bad || card.error ? " bad" : "") },
          card.error ? card.error : (card.result ? `→ ${card.result}` : "")),
      ];
    }
    if (card.kind === "divergence") {
      const found = (card.found || "").split("\n");
      return [
        el("div", {}, `Replayed ${card.verb || "action"} ${card.step || ""}: expected `, el("code", { class: "target", text: card.expected || "?" })),
        el("div", { class: "muted", text: `The page showed: ${found.slice(0, 2).join(" — ")}` }),
        el("div", { class: "result" + (card.status === "failed" ? " bad" : ""), text: `Instead: ${card.instead || "?"}` }),
      ];
    }
    return [card.text || card.kind];
  }

  function cardLabel(card) {
    if (card.kind === "action") return `${card.verb || card.tool || "action"}${card.target ? " " + card.target : ""}`;
    if (card.kind === "block") return `block ${card.label || card.block_label || ""} ${card.event || ""}`.trim();
    if (card.kind === "thought") return "thought";
    return card.kind;
  }

  function cardItem(card) {
    const kindClass = card.kind === "block" ? "block-card" : card.kind;
    const state = cardState(card);
    const selected = card.seq === selectedSeq;
    return el("li", {
      class: `card ${kindClass} state-${state}` + (selected ? " selected" : ""),
      "data-seq": String(card.seq), "data-kind": card.kind, "data-state": state,
      tabindex: selected || (selectedSeq === null && card === cards[cards.length - 1]) ? "0" : "-1",
      "aria-current": selected ? "true" : null,
      onclick: () => selectCard(card),
      onkeydown: (e) => cardKey(e, card),
    },
    el("span", { class: "card-icon" }, icon(card.kind in ICONS ? card.kind : "thought")),
    el("div", { class: "card-main" },
      el("div", { class: "line1" },
        el("span", { class: "kind", text: card.kind }),
        card.block_label ? el("span", { class: "block", text: card.block_label }) : null,
        card.duration_ms !== null && card.duration_ms !== undefined ? el("span", { class: "block", text: `${card.duration_ms} ms` }) : null,
        el("span", { class: "at video-ms", title: "Position in the recording", text: clock(card.video_ms) }),
        state === "neutral" ? null : icon(state === "warn" ? "divergence" : state, `state-icon ${state}`)),
      el("div", { class: "body" }, cardBody(card))));
  }

  function cardKey(e, card) {
    const items = [...$("timeline").querySelectorAll(".card")];
    const at = items.findIndex((i) => Number(i.dataset.seq) === card.seq);
    if (e.key === "Enter" || e.key === " ") { e.preventDefault(); selectCard(card); return; }
    const to = { ArrowDown: at + 1, ArrowUp: at - 1, Home: 0, End: items.length - 1 }[e.key];
    if (to === undefined) return;
    e.preventDefault();
    const next = items[Math.max(0, Math.min(items.length - 1, to))];
    for (const i of items) i.tabIndex = i === next ? 0 : -1;
    next.focus();
  }

  function renderCounters() {
    if (!run) return;
    const actions = cards.filter((c) => c.kind === "action");
    const failed = actions.filter((c) => c.status === "failed").length;
    const thoughts = cards.filter((c) => c.kind === "thought").length;
    const blocks = new Set(cards.filter((c) => c.kind === "block").map((c) => c.block_label || c.label)).size;
    // The stored count lags while a run goes (saved as blocks end); the steps of its action
    // cards do not.
    const carded = new Set(actions.filter((c) => c.step != null).map((c) => `${c.block_label}\u0000${c.step}`)).size;
    const steps = Math.max(run.step_count ?? 0, carded);
    const m = run.metrics || {};
    const tokens = (m.prompt_tokens || 0) + (m.completion_tokens || 0);
    const counter = (name, value, title) => el("div", { class: "counter", "data-counter": name, title: title || null },
      el("span", { class: "value", text: String(value) }), el("span", { class: "label", text: name }));
    $("counters").replaceChildren(...[
      counter("blocks", blocks), counter("steps", steps), counter("actions", actions.length),
      failed ? counter("failed", failed) : null, counter("thoughts", thoughts),
      counter("tokens", tokens.toLocaleString(), `${m.prompt_tokens || 0} prompt + ${m.completion_tokens || 0} completion, ${m.llm_calls || 0} calls`),
      counter("cost", `$${Number(m.cost_usd || 0).toFixed(m.cost_usd ? 4 : 2)}`),
    ].filter(Boolean));
    const failedCounter = $("counters").querySelector('[data-counter="failed"]');
    if (failedCounter) failedCounter.classList.add("bad");
  }

  function renderTimeline() {
    const list = $("timeline");
    list.replaceChildren(...cards.map(cardItem));
    renderCounters();
    if (!list.children.length) {
      list.append(el("li", { class: "empty-cards" }, ACTIVE.has(run.status)
        ? (run.status === "running" ? "Waiting for the first step…" : "Queued: waiting for a worker…")
        : "This run has no cards: it ended before its first step."));
    }
    placeMarkers();
  }

  function addCards(more) {
    const known = new Set(cards.map((c) => c.seq));
    const fresh = more.filter((c) => !known.has(c.seq));
    if (!fresh.length) return;
    cards = cards.concat(fresh).sort((a, b) => a.seq - b.seq);
    renderTimeline();
    if (!live() && !ACTIVE.has(run.status)) selectDefault();
  }

  function showImage(src, mode, url) {
    const image = $("browser-image");
    image.src = src;
    image.hidden = false;
    $("browser-placeholder").hidden = true;
    $("browser-mode").replaceChildren(mode === "Live" ? el("span", { class: "live-dot", text: "● Live" }) : mode);
    $("browser-url").textContent = url || "";
  }

  function showPlaceholder(message, mode) {
    $("browser-image").hidden = true;
    $("browser-image").removeAttribute("src");
    $("browser-placeholder").hidden = false;
    $("browser-placeholder").querySelector(".placeholder-icon").replaceChildren(icon("image"));
    $("placeholder-text").textContent = message;
    $("browser-mode").textContent = mode || "Screenshot";
    $("browser-url").textContent = "";
  }

  /** The screenshot of `card`, else of the nearest card before it that has one. */
  function screenshotFor(card) {
    const before = cards.filter((c) => c.seq <= card.seq && c.screenshot_url && !missingShots.has(c.seq));
    return before.length ? before[before.length - 1] : null;
  }
  // Cards whose screenshot could not be loaded (a run cut short may have had no frame left to
  // keep): the nearest earlier one is shown instead, never a broken image.
  const missingShots = new Set();
  let shownShot = null;
  $("browser-image").addEventListener("error", () => {
    if (shownShot === null) return;
    missingShots.add(shownShot);
    shownShot = null;
    const card = cards.find((c) => c.seq === selectedSeq);
    if (card) selectCard(card);
  });

  function selectCard(card, focus = false) {
    selectedSeq = card.seq;
    for (const item of $("timeline").querySelectorAll(".card")) {
      const on = Number(item.dataset.seq) === card.seq;
      item.classList.toggle("selected", on);
      item.tabIndex = on ? 0 : -1;
      if (on) item.setAttribute("aria-current", "true"); else item.removeAttribute("aria-current");
      if (on && focus) item.focus();
    }
    const index = cards.indexOf(card);
    const label = `#${card.seq} ${cardLabel(card)}` + (index === cards.length - 1 ? " · last card" : "");
    const shot = screenshotFor(card);
    shownShot = shot ? shot.seq : null;
    if (shot) {
      showImage(withKey(shot.screenshot_url), shot === card ? label : `${label} · screenshot of #${shot.seq}`, shot.url || card.url);
    } else {
      showPlaceholder(ACTIVE.has(run.status) ? "No screenshot yet." : "No screenshot up to this card.", label);
    }
    $("browser-image").alt = `The browser at card #${card.seq}`;
    $("back-to-live").hidden = !live();
    seekVideo(card.video_ms);
    renderActivity();
    if (currentTab() === "parameters") renderBlockConfig();
  }

  /** The default: the last card, selected (and its screenshot shown) once the run has ended. */
  function selectDefault() {
    if (selectedSeq !== null && cards.some((c) => c.seq === selectedSeq)) return;
    if (cards.length) { selectCard(cards[cards.length - 1]); return; }
    showPlaceholder(run.status === "canceled" && !run.started_at
      ? "Canceled before it started: no browser was opened."
      : "No screenshots: this run ended before its browser showed anything.");
    renderActivity();
  }

  function cardWindow(card) {
    const start = card.video_ms;
    const later = cards.filter((c) => c.seq > card.seq && c.video_ms !== null && c.video_ms !== undefined && c.video_ms > start);
    return [start, later.length ? later[0].video_ms : Infinity];
  }

  function requestRow(r) {
    return el("tr", { class: r.failed ? "failed" : null, "data-failed": r.failed ? "true" : "false" },
      el("td", { class: "mono at", text: clock(r.video_ms) }),
      el("td", { class: "mono", text: r.method || "" }),
      el("td", { class: "mono status", text: r.status > 0 ? String(r.status) : "—" }),
      el("td", { class: "url mono", title: r.url, text: r.url }, r.error && r.failed ? el("div", { class: "req-error", text: r.error }) : null),
      el("td", { class: "muted", text: r.type || "" }),
      el("td", { class: "mono num", text: r.size > 0 ? size(r.size) : "" }),
      el("td", { class: "mono num", text: r.duration_ms ? `${r.duration_ms} ms` : "" }));
  }

  function requestTable(requests, id) {
    return el("div", { class: "table-wrap" }, el("table", { class: "requests", id },
      el("thead", {}, el("tr", {}, ["At", "Method", "Status", "URL", "Type", "Size", "Took"].map((h) => el("th", { text: h })))),
      el("tbody", {}, requests.map(requestRow))));
  }

  function consoleList(lines, id) {
    return el("ol", { class: "console", id }, lines.map((l) => el("li", { class: `console-line ${l.type || "log"}` },
      el("span", { class: "mono at", text: clock(l.video_ms) }),
      el("span", { class: "level", text: l.type || "log" }),
      el("span", { class: "mono text", text: l.text || "" }))));
  }

  function renderActivity() {
    const card = cards.find((c) => c.seq === selectedSeq);
    if (!activity) {
      const note = ACTIVE.has(run.status) ? "Shown when the run ends." : "Loading…";
      $("card-requests").replaceChildren(el("p", { class: "note", text: note }));
      $("card-console").replaceChildren(el("p", { class: "note", text: note }));
      return;
    }
    if (!card || card.video_ms === null || card.video_ms === undefined) {
      $("activity-window").textContent = "";
      const note = card ? "This card has no time in the recording." : "Select a card.";
      $("card-requests").replaceChildren(el("p", { class: "note", text: note }));
      $("card-console").replaceChildren(el("p", { class: "note", text: note }));
      return;
    }
    const [from, to] = cardWindow(card);
    const within = (x) => x.video_ms !== null && x.video_ms !== undefined && x.video_ms >= from && x.video_ms < to;
    const requests = activity.requests.filter(within);
    const lines = activity.console.filter(within);
    $("activity-title").textContent = `Network and console of #${card.seq}`;
    $("activity-window").textContent = `${clock(from)} – ${to === Infinity ? "end" : clock(to)}`;
    const missingNote = (what) => activity.missing.find((m) => m.startsWith(what));
    $("card-requests").replaceChildren(requests.length ? requestTable(requests, "card-requests-table")
      : el("p", { class: "note", text: missingNote("network") || "No request in this card's time." }));
    $("card-console").replaceChildren(lines.length ? consoleList(lines, "card-console-lines")
      : el("p", { class: "note", text: missingNote("console") || "No console line in this card's time." }));
  }

  async function loadActivity() {
    if (activity || ACTIVE.has(run.status)) return;
    try {
      activity = await json(`${runPath}/activity`);
    } catch (error) {
      activity = { requests: [], console: [], missing: [`network: could not be read (${error.message})`, `console: could not be read (${error.message})`] };
    }
    renderActivity();
    renderLogs();
  }

  function live() { return socket !== null && socket.readyState <= 1; }

  $("back-to-live").addEventListener("click", () => {
    selectedSeq = null;
    for (const item of $("timeline").querySelectorAll(".card.selected")) item.classList.remove("selected");
    $("back-to-live").hidden = true;
    shownShot = null;
    if (frameUrl) showImage(frameUrl, "Live", ""); else showPlaceholder("Waiting for the browser…", "Live");
    renderActivity();
  });

  function startLive() {
    const path = `${Glassbox.API}${runPath}`;
    const after = cards.length ? cards[cards.length - 1].seq : 0;
    events = new EventSource(withKey(`${path}/events?after_seq=${after}`));
    events.addEventListener("card", (e) => {
      const card = JSON.parse(e.data);
      addCards([card]);
      if (card.kind === "block" && card.type === "run_workflow") loadChildren(); // a child started or ended
    });
    events.addEventListener("status", (e) => {
      const change = JSON.parse(e.data);
      if (run.status !== change.status) {
        Object.assign(run, change);
        renderHeader();
        if (run.status === "running" && selectedSeq === null && !live()) showPlaceholder("Waiting for the browser…", "Live");
      }
    });
    events.addEventListener("end", () => { events.close(); events = null; finished(); });
    events.onerror = () => {
      // The browser reconnects by itself (with Last-Event-ID); stop if the run is over.
      if (run && !ACTIVE.has(run.status) && events) { events.close(); events = null; }
    };
    const scheme = location.protocol === "https:" ? "wss:" : "ws:";
    socket = new WebSocket(withKey(`${scheme}//${location.host}${path}/live`));
    socket.binaryType = "blob";
    socket.onmessage = (e) => {
      if (!(e.data instanceof Blob)) return;
      const url = URL.createObjectURL(e.data);
      if (selectedSeq === null) { shownShot = null; showImage(url, "Live", ""); }
      if (frameUrl) URL.revokeObjectURL(frameUrl);
      frameUrl = url;
    };
    socket.onclose = () => { socket = null; };
  }

  let ended = false;
  async function finished() {
    if (ended) return;
    ended = true;
    if (socket) { socket.close(); socket = null; }
    if (events) { events.close(); events = null; }
    $("back-to-live").hidden = true;
    await loadRun();
    const page = await json(`${runPath}/timeline`);
    missingShots.clear(); // screenshots still being stored a moment ago are there now
    addCards(page.items);
    selectedSeq = null;
    selectDefault();
    renderDetails();
    loadActivity();
    loadChildren();
    codeLoaded = false;
    if (currentTab() === "code") loadCode();
  }

  // --- output, parameters, recording ----------------------------------------------------------

  function escapeHtml(s) {
    return s.replace(/[&<>"]/g, (c) => ({ "&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;" }[c]));
  }

  /** Pretty JSON with line numbers and token colours. */
  function jsonBlock(value) {
    const source = JSON.stringify(value, null, 2);
    const token = /("(?:\\.|[^"\\])*")(\s*:)?|(-?\d+(?:\.\d+)?(?:[eE][+-]?\d+)?)|\b(true|false|null)\b/g;
    const lines = source.split("\n").map((line, index) => {
      let html = "";
      let last = 0;
      for (const m of line.matchAll(token)) {
        html += escapeHtml(line.slice(last, m.index));
        if (m[1]) html += `<span class="${m[2] ? "j-key" : "j-str"}">${escapeHtml(m[1])}</span>${m[2] ? escapeHtml(m[2]) : ""}`;
        else if (m[3]) html += `<span class="j-num">${m[3]}</span>`;
        else html += `<span class="j-lit">${m[4]}</span>`;
        last = m.index + m[0].length;
      }
      html += escapeHtml(line.slice(last));
      return `<span class="ln">${index + 1}</span>${html}`;
    });
    const pre = el("pre", { class: "json" });
    pre.innerHTML = lines.join("\n");
    return pre;
  }

  function value(v) {
    if (v === null || v === undefined || v === "") return el("span", { class: "note", text: "none" });
    if (typeof v === "object") {
      const entries = Object.entries(v);
      if (!entries.length) return el("span", { class: "note", text: "none" });
      return el("dl", { class: "kv" }, entries.map(([k, x]) => el("div", {}, el("dt", { text: k }),
        el("dd", { class: "mono", text: typeof x === "object" && x !== null ? JSON.stringify(x) : String(x) }))));
    }
    return el("span", { class: "mono", text: String(v) });
  }

  function fileTable(items, id) {
    return el("div", { class: "table-wrap" }, el("table", { class: "files", id },
      el("thead", {}, el("tr", {}, ["Name", "Kind", "Type", "Size", ""].map((h) => el("th", { text: h })))),
      el("tbody", {}, items.map((a) => el("tr", { "data-artifact": a.id },
        el("td", {}, el("a", { href: withKey(a.url + "?download=true"), download: a.name, text: a.name })),
        el("td", { class: "muted", text: a.kind }),
        el("td", { class: "mono muted", text: a.content_type || "" }),
        el("td", { class: "mono num size", text: size(a.size) }),
        el("td", {}, el("a", { class: "button small", href: withKey(a.url + "?download=true"), download: a.name, text: "Download" })))))));
  }

  // --- the selected card's block, as the run's workflow defines it (Parameters tab) -----------

  function findBlock(blocks, label) {
    for (const block of blocks || []) {
      if (block.label === label) return block;
      const inner = findBlock(block.blocks, label);
      if (inner) return inner;
    }
    return null;
  }

  /** A step's or field's arguments as `name: value` pieces. */
  function args(spec) {
    if (spec === null || typeof spec !== "object" || Array.isArray(spec)) return [el("code", { class: "arg", text: compact(spec) })];
    return Object.entries(spec).map(([k, v]) => el("span", { class: "arg" }, el("span", { class: "k", text: `${k} ` }), el("code", { text: compact(v, 1) })));
  }

  function stepItem(step) {
    const [verb, ...rest] = Object.keys(step);
    return el("li", { "data-verb": verb }, el("span", { class: "verb", text: verb }), args(step[verb]),
      rest.map((k) => args({ [k]: step[k] })));
  }

  /** An extract field without the options it leaves at their defaults (first/all false, as text). */
  function fieldOptions(spec) {
    if (spec === null || typeof spec !== "object") return spec;
    return Object.fromEntries(Object.entries(spec).filter(([k, v]) => v !== false && !(k === "as" && v === "text")));
  }

  function blockView(block) {
    const shown = new Set(["label", "type", "steps", "fields", "goal", "blocks"]);
    const options = Object.fromEntries(Object.entries(block).filter(([k]) => !shown.has(k)));
    return el("div", { class: "block-config", "data-block": block.label },
      el("div", { class: "block-head" }, el("strong", { text: block.label }), el("span", { class: "tag", text: block.type || "block" })),
      block.goal ? el("p", { class: "goal", text: block.goal }) : null,
      Object.keys(options).length ? metaTable(options, "block-options") : null,
      block.steps ? el("ol", { class: "steps", id: "block-steps" }, block.steps.map(stepItem)) : null,
      block.fields ? el("table", { class: "meta", id: "block-fields" }, el("tbody", {}, Object.entries(block.fields).map(([name, spec]) =>
        el("tr", {}, el("th", { scope: "row", text: name }), el("td", {}, args(fieldOptions(spec))))))) : null,
      block.blocks ? el("p", { class: "muted", text: `Blocks: ${block.blocks.map((b) => b.label).join(", ")}` }) : null);
  }

  let blockRendered = null;
  async function renderBlockConfig() {
    const box = $("block-config");
    const card = cards.find((c) => c.seq === selectedSeq);
    const note = (text) => box.replaceChildren(el("p", { class: "note", text }));
    if (!card) { blockRendered = null; note("Select a card on the Overview to see its block's configuration."); return; }
    // A card outside any block (the runner's narration) shows the block before it.
    const owner = cards.filter((c) => c.seq <= card.seq && (c.block_label || (c.kind === "block" && c.label))).pop();
    const label = owner ? owner.block_label || owner.label : null;
    if (!label) { blockRendered = null; note(`Card #${card.seq} belongs to no block.`); return; }
    if (blockRendered === label) return;
    try {
      await reproduce();
    } catch (error) {
      note(`Could not load the run's workflow: ${error.message}`);
      return;
    }
    const block = findBlock(definition.blocks, label);
    blockRendered = label;
    box.replaceChildren(block ? blockView(block) : el("p", { class: "note", text: `The block ${label} is not in this run's workflow.` }),
      el("p", { class: "note", text: "As the run's workflow defines it: templates, not their values, so secrets never show." }));
  }

  function renderDetails() {
    const extracted = run.extracted_information;
    const hasJson = extracted && Object.keys(extracted).length;
    $("output-json").replaceChildren(hasJson ? jsonBlock(extracted) : el("p", { class: "note", text: "Nothing extracted." }));
    $("copy-json").hidden = !hasJson;
    const downloads = (run.artifacts || []).filter((a) => a.kind === "download");
    $("downloads").replaceChildren(downloads.length ? fileTable(downloads, "download-table")
      : el("p", { class: "note", text: "No downloaded files." }));
    const files = (run.artifacts || []).filter((a) => !["download", "screenshot", "llm_prompt", "llm_response"].includes(a.kind));
    const shots = (run.artifacts || []).filter((a) => a.kind === "screenshot").length;
    $("files").replaceChildren(files.length ? fileTable(files, "file-table")
      : el("p", { class: "note", text: ACTIVE.has(run.status) ? "Files are stored as the run goes; most arrive when it ends." : "No recorded files." }),
    shots ? el("p", { class: "note", text: `And ${shots} screenshot${shots === 1 ? "" : "s"}, shown on the Overview's cards.` }) : null);
    renderSavedPage();
    renderLogs();

    const params = run.parameters || {};
    $("inputs").replaceChildren(Object.keys(params).length
      ? el("dl", { class: "params" }, Object.entries(params).map(([k, v]) => [el("dt", { text: k }), el("dd", {}, value(v))]))
      : el("p", { class: "note", text: "No parameters." }));
    const headers = run.extra_http_headers;
    $("settings").replaceChildren(...[
      ["Webhook URL", run.webhook_url], ["Proxy", run.proxy], ["Extra HTTP headers", headers],
      ["Run with", run.run_with],
    ].flatMap(([k, v]) => [el("dt", { text: k }), el("dd", {}, value(v))]));
    $("limits").replaceChildren(...[
      ["Time limit", run.timeout_s ? `${run.timeout_s} s` : null],
      ["Source", run.source], ["Attempt", run.attempt],
      ["Workflow", run.workflow_id ? el("a", { href: `/workflows/${encodeURIComponent(run.workflow_id)}`, text: run.workflow_id }) : "inline (given with the run)"],
      ["Parent run", run.parent_run_id ? runLink(run.parent_run_id) : null],
      ["Schedule", run.schedule_id ? el("a", { href: `/runs?schedule_id=${encodeURIComponent(run.schedule_id)}`, class: "mono", text: run.schedule_id }) : null],
      ["Trigger", run.trigger_id ? el("a", { href: `/runs?trigger_id=${encodeURIComponent(run.trigger_id)}`, class: "mono", text: run.trigger_id }) : null],
      ["Tags", (run.tags || []).length ? el("span", { class: "tags" }, tagLinks(run.tags)) : null],
      ["Metadata", run.metadata && Object.keys(run.metadata).length ? metaTable(run.metadata, "metadata-params") : null],
    ].flatMap(([k, v]) => [el("dt", { text: k }), el("dd", {}, v instanceof Node ? v : value(v))]));

    renderRecording();
  }

  $("copy-json").addEventListener("click", (e) => copy(JSON.stringify(run.extracted_information, null, 2), e.currentTarget));

  function renderLogs() {
    if (!run) return;
    if (!activity) {
      const note = ACTIVE.has(run.status) ? "Available when the run ends." : "Loading…";
      $("har").replaceChildren(el("p", { class: "note", text: note }));
      $("console-log").replaceChildren(el("p", { class: "note", text: note }));
      return;
    }
    const failed = activity.requests.filter((r) => r.failed).length;
    $("har-summary").textContent = activity.requests.length
      ? `${activity.requests.length} requests${failed ? `, ${failed} failed` : ""}${activity.truncated ? " (first ones only)" : ""}` : "";
    const har = artifact("har");
    $("har").replaceChildren(activity.requests.length ? requestTable(activity.requests, "har-table")
      : el("p", { class: "note", text: activity.missing.find((m) => m.startsWith("network")) || "No request recorded." }),
    har ? el("p", { class: "note" }, "The full HAR: ", el("a", { href: withKey(har.url + "?download=true"), download: har.name, text: `${har.name} (${size(har.size)})` })) : null);
    $("console-log").replaceChildren(activity.console.length ? consoleList(activity.console, "console-table")
      : el("p", { class: "note", text: activity.missing.find((m) => m.startsWith("console")) || "The page logged nothing." }));
  }

  // The final HTML is the visited page's, hostile until proven otherwise: shown (on demand) only
  // inside a frame sandboxed without scripts (sandbox="", an opaque origin: no API key, no API
  // calls, no dialogs), or as text. Never opened from Glassbox's origin.
  let savedPageId = null;
  function renderSavedPage() {
    const page = artifact("html");
    let box = $("saved-page");
    if (!box) {
      box = el("div", { id: "saved-page" });
      $("downloads").after(el("h2", { text: "Final page" }), box);
    }
    if (!page) { savedPageId = null; box.replaceChildren(el("p", { class: "note", text: "No saved page." })); return; }
    if (savedPageId === page.id) return;
    savedPageId = page.id;
    const download = el("a", { href: withKey(page.url + "?download=true"), download: page.name, text: `Download ${page.name}` });
    const note = el("span", { class: "note", text: ` ${size(page.size)}; its scripts never run here.` });
    const show = (asText) => async () => {
      let html;
      try {
        html = await text(page.url.replace(/^\/api\/v1/, ""));
      } catch (error) {
        box.append(el("p", { class: "note", text: `Could not load the saved page: ${error.message}` }));
        return;
      }
      let shown;
      if (asText) {
        shown = el("pre", { id: "saved-page-text", class: "code" });
        shown.textContent = html;
      } else {
        shown = el("iframe", { id: "saved-page-frame", sandbox: "", referrerpolicy: "no-referrer", title: `Saved page ${page.name}`, class: "saved-page" });
        // Nothing leaves the browser either: no request to the recorded site or anywhere else.
        shown.srcdoc = `<meta http-equiv="Content-Security-Policy" content="default-src 'none'; img-src data:; style-src 'unsafe-inline'">${html}`;
      }
      box.replaceChildren(buttons, shown);
    };
    const buttons = el("p", { class: "saved-page-tools" },
      el("button", { type: "button", class: "small", id: "saved-page-show", text: "Show the page", onclick: show(false) }), " ",
      el("button", { type: "button", class: "small", id: "saved-page-source", text: "Show its HTML", onclick: show(true) }), " ",
      download, note);
    box.replaceChildren(buttons);
  }

  function renderRecording() {
    const video = artifact("video");
    const box = $("recording");
    const existing = $("video");
    if (video && existing && existing.dataset.artifact === video.id) return;
    if (!video) {
      box.replaceChildren(el("div", { class: "empty-state", id: "no-recording" }, icon("image", "placeholder-icon"),
        el("p", { text: ACTIVE.has(run.status) ? "The recording is available when the run ends." : "No recording available" })));
      return;
    }
    const player = el("video", { id: "video", controls: true, preload: "metadata", src: withKey(video.url), "data-artifact": video.id });
    player.addEventListener("loadedmetadata", placeMarkers);
    box.replaceChildren(player,
      el("div", { class: "markers", id: "video-markers", role: "group", "aria-label": "Cards on the recording's timeline" }),
      el("p", { class: "note" }, "Each mark is a card: click one to see that moment. ",
        el("a", { href: withKey(video.url + "?download=true"), download: video.name, text: `Download ${video.name} (${size(video.size)})` })));
  }

  function placeMarkers() {
    const video = $("video");
    const bar = $("video-markers");
    if (!video || !bar || !(video.duration > 0) || !isFinite(video.duration)) return;
    const total = video.duration * 1000;
    bar.replaceChildren(...cards.filter((c) => c.video_ms !== null && c.video_ms !== undefined).map((card) =>
      el("button", {
        type: "button", class: `marker ${card.kind === "block" ? "block-card" : card.kind} state-${cardState(card)}`,
        "data-seq": String(card.seq), title: `#${card.seq} ${cardLabel(card)} at ${clock(card.video_ms)}`,
        "aria-label": `#${card.seq} ${cardLabel(card)} at ${clock(card.video_ms)}`,
        style: `left: ${Math.min(100, (card.video_ms / total) * 100).toFixed(3)}%`,
        onclick: () => { selectCard(card); seekVideo(card.video_ms); },
      })));
  }

  function seekVideo(ms) {
    const video = $("video");
    if (!video || ms === null || ms === undefined) return;
    const seek = () => { video.currentTime = ms / 1000; };
    if (video.readyState >= 1) seek(); else video.addEventListener("loadedmetadata", seek, { once: true });
  }

  // --- code and trace (loaded when their tab opens) ------------------------------------------

  /** The Code tab's action cache bar: the run's cache key and the version its replays use. */
  async function loadCache() {
    const bar = $("cache-bar");
    const key = run.replay && run.replay.cache_key;
    if (!run.workflow_id || !key) { bar.hidden = true; return; }
    const base = `/workflows/${encodeURIComponent(run.workflow_id)}/cache`;
    let versions = [];
    try {
      versions = (await json(`${base}?cache_key=${encodeURIComponent(key)}`)).items;
    } catch (error) {
      bar.replaceChildren(el("span", { class: "note", text: `Could not load the action cache: ${error.message}` }));
      bar.hidden = false;
      return;
    }
    const select = el("select", { id: "cache-version", "aria-label": "Cache version" },
      ...versions.map((v) => el("option", { value: v.id, selected: v.current,
        text: `${v.created_at.slice(0, 19).replace("T", " ")} · ${v.note || ""}${v.run_id === run.id ? " · this run" : ""}${v.pinned ? " · pinned" : ""}${v.current ? " · current" : ""}` })));
    const use = el("button", { type: "button", id: "cache-use", class: "small", text: "Replay this version" });
    use.addEventListener("click", async () => {
      use.disabled = true;
      try { await send("POST", `${base}/${encodeURIComponent(select.value)}/pin`, {}); await loadCache(); }
      catch (error) { showError(`Could not pin the version: ${error.detail || error.message}`); use.disabled = false; }
    });
    const pinned = versions.find((v) => v.pinned);
    const unpin = el("button", { type: "button", id: "cache-unpin", class: "small", text: "Replay the newest", hidden: !pinned });
    unpin.addEventListener("click", async () => {
      try { await send("POST", `${base}/${encodeURIComponent(pinned.id)}/unpin`, {}); await loadCache(); }
      catch (error) { showError(`Could not unpin: ${error.detail || error.message}`); }
    });
    bar.replaceChildren(el("span", { class: "muted" }, "Action cache key ", el("code", { id: "cache-key", text: key })),
      el("span", { class: "spacer" }),
      versions.length ? select : el("span", { class: "muted", text: "no version yet" }),
      versions.length ? use : "", unpin);
    bar.hidden = false;
  }

  async function loadCode() {
    if (codeLoaded || !run) return;
    loadCache();
    const box = $("code");
    if (ACTIVE.has(run.status)) { box.replaceChildren(el("p", { class: "note", text: "The code is generated when the run ends." })); return; }
    try {
      const [plain, html] = await Promise.all([text(`${runPath}/code`), text(`${runPath}/code?format=html`)]);
      codeText = plain;
      box.innerHTML = html; // Pygments output: the script's text escaped, spans for colours
      codeLoaded = true;
    } catch (error) {
      box.replaceChildren(el("p", { class: "note", id: "no-code", text: error.status === 404 ? "No code was generated for this run." : `Could not load the code: ${error.message}` }));
    }
  }

  $("copy").addEventListener("click", async () => {
    await copy(codeText, null);
    $("copied").hidden = false;
    setTimeout(() => { $("copied").hidden = true; }, 1500);
  });

  $("download-code").addEventListener("click", () => {
    if (!codeText) return;
    const url = URL.createObjectURL(new Blob([codeText], { type: "text/x-python" }));
    const link = el("a", { href: url, download: `${runId}.py` });
    document.body.append(link);
    link.click();
    link.remove();
    setTimeout(() => URL.revokeObjectURL(url), 1000);
  });

  async function loadTrace() {
    if (traceLoaded || !run) return;
    const box = $("trace");
    const trace = artifact("trace");
    if (!trace) {
      box.replaceChildren(el("p", { class: "note", text: ACTIVE.has(run.status) ? "The trace is available when the run ends." : "No trace available" }));
      return;
    }
    const probe = await fetch("/trace-viewer/index.html", { method: "HEAD" }).catch(() => null);
    if (!probe || !probe.ok) {
      box.replaceChildren(el("p", { class: "note", id: "no-viewer", text: "The trace viewer is not available: the installed Playwright package does not ship it. Download the trace instead: " },
        el("a", { href: withKey(trace.url + "?download=true"), text: trace.name })));
      traceLoaded = true;
      return;
    }
    const traceUrl = new URL(withKey(trace.url), location.origin).href;
    const frame = el("iframe", { class: "trace", id: "trace-frame", title: "Trace viewer", src: `/trace-viewer/index.html?trace=${encodeURIComponent(traceUrl)}` });
    box.replaceChildren(
      el("p", { class: "note" }, "Playwright trace viewer · ", el("a", { href: withKey(trace.url + "?download=true"), text: "download " + trace.name })),
      frame);
    keepTabFocus(frame);
    traceLoaded = true;
  }

  /** The trace viewer focuses itself as it starts: a keyboard user moving along the tabs stays
      on the tab (until a moment after the viewer has loaded; a click inside it after that is
      theirs). */
  function keepTabFocus(frame, loaded = false) {
    const tab = $("tab-trace");
    if (!frame || !$("tabs").contains(document.activeElement)) return; // moving along the tabs
    let until = loaded ? Date.now() + 1500 : Infinity;
    const back = () => setTimeout(() => {
      if (Date.now() < until && document.activeElement === frame) tab.focus();
    }, 0);
    window.addEventListener("blur", back);
    if (!loaded) frame.addEventListener("load", () => { until = Date.now() + 1500; });
    setTimeout(() => window.removeEventListener("blur", back), 15000);
  }

  // --- start ------------------------------------------------------------------------------------

  async function loadRun() {
    run = await json(runPath);
    renderHeader();
  }

  async function start() {
    try {
      await loadRun();
    } catch (error) {
      $("title").textContent = "Run not found";
      showError(error.status === 404 ? `There is no run ${runId}.` : `Could not load the run: ${error.message}`);
      showPlaceholder("No run to show.");
      return;
    }
    post(`${runPath}/read`).catch(() => {});
    const [page] = await Promise.all([json(`${runPath}/timeline`), loadChildren()]);
    cards = page.items;
    renderTimeline();
    renderDetails();
    selectTab(location.hash.slice(1), false);
    if (ACTIVE.has(run.status)) {
      showPlaceholder(run.status === "running" ? "Waiting for the browser…" : "Queued: the browser opens when a worker takes the run.", "Live");
      renderActivity();
      startLive();
    } else {
      ended = true;
      selectDefault();
      loadActivity();
    }
  }

  setInterval(() => { if (run && ACTIVE.has(run.status)) $("duration").textContent = "Duration " + duration(run); }, 1000);
  start();
})();
