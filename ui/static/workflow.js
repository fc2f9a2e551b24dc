/* /workflows/{id}: a saved workflow, the launch form built from its parameters, its runs, its
   schedules and its triggers (URLs that start it: a JSON call, or a run per uploaded file). */
"use strict";

(() => {
  const { json, send, el, badge, ago, duration, ACTIVE } = Glassbox;
  const workflowId = decodeURIComponent(location.pathname.split("/")[2] || "");
  const form = document.getElementById("launch");
  const fields = document.getElementById("fields");
  const launchError = document.getElementById("launch-error");
  const errorBox = document.getElementById("error");
  let workflow = null;
  let timer = null;

  function inputFor(name, spec, value) {
    const id = `param-${name}`;
    const common = { id, name: `parameters.${name}`, "data-parameter": name, "aria-describedby": `${id}-help` };
    const type = spec.type || "string";
    let input;
    if (type === "boolean") {
      input = el("input", Object.assign({ type: "checkbox", checked: value === true || value === "true" }, common));
    } else if (type === "file") {
      input = el("input", Object.assign({ type: "file", accept: (spec.accept || []).join(",") || null }, common));
    } else {
      const html = spec.secret ? "password" : (type === "number" || type === "integer") ? "number" : "text";
      input = el("input", Object.assign({
        type: html,
        step: type === "integer" ? "1" : type === "number" ? "any" : null,
        autocomplete: spec.secret ? "new-password" : "off",
        value: value === null || value === undefined ? "" : String(value),
        placeholder: spec.default !== undefined && spec.default !== null && !spec.secret ? String(spec.default) : null,
      }, common));
    }
    const required = spec.required === true || (spec.required !== false && (spec.default === undefined || spec.default === null));
    if (required && type !== "boolean") input.required = true;
    return el("div", { class: "field" + (type === "boolean" ? " check" : "") },
      el("label", { for: id },
        el("span", { class: "name", text: name }),
        el("span", { class: "type", text: spec.secret ? `${type}, secret` : type }),
        required ? el("span", { class: "req", text: "required" }) : null),
      input,
      el("p", { class: "help", id: `${id}-help`, text: spec.description || "" }),
      el("p", { class: "field-error", "data-error-for": `parameters.${name}`, hidden: true }),
    );
  }

  function prefill() {
    // Duplicate: /workflows/{id}?from=RUN_ID pre-fills the form with that run's parameters.
    const from = new URLSearchParams(location.search).get("from");
    if (!from) return Promise.resolve({});
    return json(`/runs/${encodeURIComponent(from)}`).then((run) => run.parameters || {}).catch(() => ({}));
  }

  function clearErrors() {
    launchError.hidden = true;
    for (const node of form.querySelectorAll(".field-error")) { node.hidden = true; node.textContent = ""; }
    for (const node of form.querySelectorAll("[aria-invalid]")) node.removeAttribute("aria-invalid");
  }

  function showErrors(error) {
    const unplaced = Glassbox.placeErrors(form, error);
    if (!(error.fields || []).length) unplaced.push(error.detail || error.message);
    if (unplaced.length) { launchError.textContent = unplaced.join("\n"); launchError.hidden = false; }
    const first = form.querySelector("[aria-invalid=true]");
    if (first) first.focus();
  }

  async function fileId(input) {
    const file = input.files && input.files[0];
    if (!file) return undefined;
    const data = new FormData();
    data.append("file", file, file.name);
    const uploaded = await json("/uploads", { method: "POST", body: data });
    return uploaded.id;
  }

  /** The launch form's parameter values (files and secrets left out when `keepable`). */
  async function formParameters(keepable) {
    const parameters = {};
    for (const input of form.querySelectorAll("[data-parameter]")) {
      const name = input.dataset.parameter;
      const spec = workflow.parameters[name] || {};
      if (keepable && (spec.secret || input.type === "file")) continue;
      if (input.type === "checkbox") parameters[name] = input.checked;
      else if (input.type === "file") { const id = await fileId(input); if (id !== undefined) parameters[name] = id; }
      else if (input.value !== "") {
        parameters[name] = (spec.type === "number" || spec.type === "integer") && input.value.trim() !== "" && !isNaN(Number(input.value))
          ? Number(input.value) : input.value;
      }
    }
    return parameters;
  }

  async function launch(event) {
    event.preventDefault();
    clearErrors();
    const parameters = await formParameters(false);
    const body = { workflow_id: workflowId, parameters };
    const title = document.getElementById("opt-title").value.trim();
    const timeout = document.getElementById("opt-timeout").value;
    const webhook = document.getElementById("opt-webhook").value.trim();
    if (title) body.title = title;
    if (timeout) body.timeout_s = Number(timeout);
    if (webhook) body.webhook_url = webhook;
    const start = document.getElementById("start");
    start.disabled = true;
    try {
      const run = await send("POST", "/runs", body);
      location.assign(`/runs/${encodeURIComponent(run.id)}`);
    } catch (error) {
      showErrors(error);
      start.disabled = false;
    }
  }

  function runRow(run) {
    return el("tr", { "data-run-id": run.id },
      el("td", {}, el("a", { href: `/runs/${encodeURIComponent(run.id)}`, text: run.title })),
      el("td", {}, badge(run.status)),
      el("td", {}, ago(run.started_at || run.created_at)),
      el("td", { class: "mono", text: duration(run) }),
    );
  }

  async function loadRuns() {
    clearTimeout(timer);
    try {
      const page = await json(`/runs?workflow_id=${encodeURIComponent(workflowId)}&limit=10`);
      document.querySelector("#wf-runs tbody").replaceChildren(...page.items.map(runRow));
      document.getElementById("no-runs").hidden = page.items.length > 0;
      document.getElementById("wf-runs").hidden = !page.items.length; // no empty table head
      if (page.items.some((r) => ACTIVE.has(r.status))) timer = setTimeout(loadRuns, 2000);
      else timer = setTimeout(loadRuns, 10000);
    } catch (_) {
      timer = setTimeout(loadRuns, 10000);
    }
  }

  // --- schedules ---------------------------------------------------------------------------

  function describe(schedule) {
    if (schedule.kind === "interval") return `every ${Glassbox.seconds(schedule.interval_s).replace(".0 s", " s")}`;
    if (schedule.kind === "cron") return `cron ${schedule.cron} (${schedule.timezone})`;
    return `once at ${Glassbox.date(schedule.at)}`;
  }

  function scheduleItem(schedule) {
    const toggle = el("button", { type: "button", class: "small toggle", text: schedule.enabled ? "Disable" : "Enable",
      onclick: async (e) => {
        e.currentTarget.disabled = true;
        try { await send("PATCH", `/schedules/${encodeURIComponent(schedule.id)}`, { enabled: !schedule.enabled }); }
        catch (error) { showScheduleError(error); }
        loadSchedules();
      } });
    const remove = el("button", { type: "button", class: "small danger remove", text: "Delete",
      onclick: async (e) => {
        if (!window.confirm("Delete this schedule? Its runs stay.")) return;
        e.currentTarget.disabled = true;
        try { await Glassbox.request(`/schedules/${encodeURIComponent(schedule.id)}`, { method: "DELETE" }); }
        catch (error) { showScheduleError(error); }
        loadSchedules();
      } });
    const last = schedule.last_run
      ? el("a", { class: "last-run", href: `/runs/${encodeURIComponent(schedule.last_run.id)}` }, "last ", badge(schedule.last_run.status || "deleted"))
      : null;
    return el("li", { class: "schedule-item" + (schedule.enabled ? "" : " disabled"), "data-schedule-id": schedule.id },
      el("div", { class: "what" },
        el("strong", { class: "when", text: describe(schedule) }),
        el("div", { class: "next muted" },
          schedule.enabled && schedule.next_fire_at
            ? ["next ", el("time", { datetime: schedule.next_fire_at, title: Glassbox.date(schedule.next_fire_at), text: Glassbox.date(schedule.next_fire_at) })]
            : (schedule.enabled ? "done" : "disabled"),
          last ? [" · ", last] : null,
          schedule.last_error ? el("div", { class: "short-error", text: schedule.last_error }) : null)),
      el("div", { class: "actions" }, toggle, remove));
  }

  function showScheduleError(error) {
    const box = document.getElementById("schedule-error");
    box.textContent = (error.fields || []).length
      ? error.fields.map((f) => `${f.field}: ${f.message}`).join("\n")
      : (error.detail || error.message);
    box.hidden = false;
  }

  async function loadSchedules() {
    try {
      const page = await json(`/workflows/${encodeURIComponent(workflowId)}/schedules`);
      document.getElementById("schedule-list").replaceChildren(...page.items.map(scheduleItem));
      document.getElementById("no-schedules").hidden = page.items.length > 0;
    } catch (error) { showScheduleError(error); }
  }

  async function addSchedule(event) {
    event.preventDefault();
    const box = document.getElementById("schedule-error");
    box.hidden = true;
    const kind = document.getElementById("schedule-kind").value;
    const raw = document.getElementById("schedule-value").value.trim();
    const body = {
      catch_up: document.getElementById("schedule-catch-up").value,
      parameters: await formParameters(true),
    };
    const zone = document.getElementById("schedule-timezone").value.trim();
    if (zone) body.timezone = zone;
    if (kind === "interval_s") body.interval_s = raw === "" ? null : (isNaN(Number(raw)) ? raw : Number(raw));
    else body[kind] = raw;
    const button = document.getElementById("add-schedule");
    button.disabled = true;
    try {
      await send("POST", `/workflows/${encodeURIComponent(workflowId)}/schedules`, body);
      document.getElementById("schedule-value").value = "";
    } catch (error) { showScheduleError(error); }
    button.disabled = false;
    loadSchedules();
  }

  function setupScheduleForm() {
    const kind = document.getElementById("schedule-kind");
    const value = document.getElementById("schedule-value");
    const placeholders = { interval_s: "3600", cron: "0 9 * * 1-5", at: "2026-12-24T18:00" };
    kind.addEventListener("change", () => { value.placeholder = placeholders[kind.value]; });
    try { document.getElementById("schedule-timezone").value = Intl.DateTimeFormat().resolvedOptions().timeZone || ""; } catch (_) { /* UTC */ }
    document.getElementById("schedule-form").addEventListener("submit", addSchedule);
  }

  // --- triggers: URLs that start the workflow (a JSON call, or one run per uploaded file) ------

  function fileParameters() {
    return Object.entries(workflow.parameters || {}).filter(([, spec]) => spec.type === "file").map(([name]) => name);
  }

  function triggerItem(trigger) {
    const remove = el("button", { type: "button", class: "small danger remove", text: "Delete",
      onclick: async (e) => {
        if (!window.confirm("Delete this trigger? Its URL stops working; its runs stay.")) return;
        e.currentTarget.disabled = true;
        try { await Glassbox.request(`/triggers/${encodeURIComponent(trigger.id)}`, { method: "DELETE" }); }
        catch (error) { showTriggerError(error); }
        loadTriggers();
      } });
    const what = trigger.kind === "upload" ? `a run per uploaded file → ${trigger.file_parameter}` : "a run per call";
    return el("li", { class: "schedule-item", "data-trigger-id": trigger.id, "data-kind": trigger.kind },
      el("div", { class: "what" },
        el("strong", { text: trigger.name || (trigger.kind === "upload" ? "Upload trigger" : "Trigger") }),
        el("span", { class: "muted", text: ` · ${what}` }),
        el("div", { class: "next muted" },
          el("code", { class: "hook-url", text: `POST ${trigger.url}` }), ` · token ${trigger.token_prefix}… · `,
          trigger.fire_count ? el("a", { href: `/runs?trigger_id=${encodeURIComponent(trigger.id)}`, text: `${trigger.fire_count} run${trigger.fire_count === 1 ? "" : "s"}` }) : "never called")),
      el("div", { class: "actions" }, remove));
  }

  function showTriggerError(error) {
    const box = document.getElementById("trigger-error");
    box.textContent = (error.fields || []).length
      ? error.fields.map((f) => `${f.field}: ${f.message}`).join("\n")
      : (error.detail || error.message);
    box.hidden = false;
  }

  async function loadTriggers() {
    try {
      const page = await json(`/workflows/${encodeURIComponent(workflowId)}/triggers`);
      document.getElementById("trigger-list").replaceChildren(...page.items.map(triggerItem));
      document.getElementById("no-triggers").hidden = page.items.length > 0;
    } catch (error) { showTriggerError(error); }
  }

  /** The new trigger's token, shown this once, with a call that uses it. */
  function showToken(made) {
    const url = `${location.origin}${made.url}`;
    const call = made.kind === "upload"
      ? `curl -X POST ${url} \\\n  -H 'X-Glassbox-Token: ${made.token}' \\\n  -F file=@first.pdf -F file=@second.pdf`
      : `curl -X POST ${url} \\\n  -H 'X-Glassbox-Token: ${made.token}' \\\n  -H 'Content-Type: application/json' -d '{}'`;
    const copy = el("button", { type: "button", class: "small", text: "Copy token", onclick: async (e) => {
      try { await navigator.clipboard.writeText(made.token); e.currentTarget.textContent = "Copied"; } catch (_) { /* shown anyway */ }
    } });
    const box = document.getElementById("new-token");
    box.replaceChildren(
      el("p", {}, el("strong", { text: "Token, shown once: " }), el("code", { id: "trigger-token", text: made.token }), " ", copy),
      el("pre", { class: "code", id: "trigger-call", text: call }));
    box.hidden = false;
  }

  async function addTrigger(event) {
    event.preventDefault();
    document.getElementById("trigger-error").hidden = true;
    const kind = document.getElementById("trigger-kind").value;
    const body = { kind };
    const name = document.getElementById("trigger-name").value.trim();
    if (name) body.name = name;
    if (kind === "upload" && fileParameters().length > 1) body.file_parameter = document.getElementById("trigger-file").value;
    const button = document.getElementById("add-trigger");
    button.disabled = true;
    try {
      showToken(await send("POST", `/workflows/${encodeURIComponent(workflowId)}/triggers`, body));
      document.getElementById("trigger-name").value = "";
    } catch (error) { showTriggerError(error); }
    button.disabled = false;
    loadTriggers();
  }

  function setupTriggerForm() {
    const kind = document.getElementById("trigger-kind");
    const file = document.getElementById("trigger-file");
    const names = fileParameters();
    const upload = kind.querySelector('option[value="upload"]');
    upload.disabled = !names.length;
    if (!names.length) upload.textContent += " (needs a type: file parameter)";
    file.replaceChildren(...names.map((n) => el("option", { value: n, text: `to ${n}` })));
    const help = {
      webhook: "A URL to POST JSON to, with its own token (shown once); each call starts a run.",
      upload: "A URL to POST files to (multipart, parts named file), with its own token (shown once); each file starts a run.",
    };
    const sync = () => {
      file.hidden = kind.value !== "upload" || names.length < 2;
      document.getElementById("trigger-help").textContent = help[kind.value];
    };
    kind.addEventListener("change", sync);
    sync();
    document.getElementById("trigger-form").addEventListener("submit", addTrigger);
  }

  async function load() {
    try {
      workflow = await json(`/workflows/${encodeURIComponent(workflowId)}`);
    } catch (error) {
      errorBox.textContent = error.status === 404 ? "Workflow not found." : `Could not load the workflow: ${error.message}`;
      errorBox.hidden = false;
      form.hidden = true;
      return;
    }
    document.title = `${workflow.title} · Glassbox`;
    document.getElementById("title").textContent = workflow.title;
    const description = document.getElementById("description");
    description.textContent = workflow.description || "";
    description.hidden = !workflow.description;
    document.getElementById("edit").href = `/workflows/${encodeURIComponent(workflowId)}/edit`;
    document.getElementById("all-runs").href = `/runs?workflow_id=${encodeURIComponent(workflowId)}`;
    document.getElementById("definition").textContent = workflow.source;
    const values = await prefill();
    const entries = Object.entries(workflow.parameters || {});
    fields.replaceChildren(...entries.map(([name, spec]) => inputFor(name, spec, spec.secret ? null : name in values ? values[name] : spec.default)));
    if (!entries.length) fields.replaceChildren(el("p", { class: "muted", text: "This workflow takes no parameters." }));
    form.addEventListener("submit", launch);
    setupScheduleForm();
    loadSchedules();
    setupTriggerForm();
    loadTriggers();
    if (location.hash === "#run") { const first = form.querySelector("input"); if (first) first.focus(); }
    loadRuns();
  }

  load();
})();
