/* /workflows/new and /workflows/{id}/edit: the definition as text, checked by the API on save;
   a refusal is shown under the editor with its field, and its line is marked and selected. */
"use strict";

(() => {
  const { json, send } = Glassbox;
  const parts = location.pathname.split("/");
  const workflowId = parts[2] && parts[2] !== "new" ? decodeURIComponent(parts[2]) : null;
  const form = document.getElementById("editor-form");
  const source = document.getElementById("source");
  const gutter = document.getElementById("gutter");
  const sourceError = document.getElementById("source-error");
  const errorBox = document.getElementById("error");
  let badLine = null;

  const TEMPLATE = `title: Find the cheapest lamp
description: Searches the shop and reports the cheapest result.
url: http://127.0.0.1:8080/shop/
parameters:
  query:
    type: string
    default: lamp
    description: What to search for
blocks:
  - label: search
    type: action
    steps:
      - goto: "{{ url }}search.html"
      - fill: {selector: "#q", value: "{{ query }}"}
      - click: {role: button, name: Search}
      - wait_for: {selector: ".result", state: visible}
  - label: products
    type: extract
    fields:
      cheapest: {selector: ".result .name", first: true}
`;

  function renderGutter() {
    const count = source.value.split("\n").length;
    const lines = [];
    for (let i = 1; i <= count; i++) lines.push(i === badLine ? `<mark>${i}</mark>` : String(i));
    gutter.innerHTML = lines.join("\n"); // numbers only: nothing from the user
    gutter.scrollTop = source.scrollTop;
  }

  function selectLine(line) {
    const lines = source.value.split("\n");
    let start = 0;
    for (let i = 0; i < line - 1 && i < lines.length; i++) start += lines[i].length + 1;
    const end = start + (lines[line - 1] || "").length;
    source.focus();
    source.setSelectionRange(start, end);
    const lineHeight = parseFloat(getComputedStyle(source).lineHeight) || 18;
    source.scrollTop = Math.max(0, (line - 4) * lineHeight);
  }

  function showError(error) {
    const f = (error.fields || [])[0];
    badLine = f && f.line ? f.line : null;
    const where = f && f.field ? f.field.replace(/^definition\.?/, "") || "workflow" : "";
    sourceError.textContent = f
      ? `${badLine ? `Line ${badLine}: ` : ""}${where ? where + ": " : ""}${f.message}`
      : error.detail || error.message;
    sourceError.hidden = false;
    source.setAttribute("aria-invalid", "true");
    renderGutter();
    if (badLine) selectLine(badLine);
  }

  async function save(event) {
    event.preventDefault();
    sourceError.hidden = true;
    source.removeAttribute("aria-invalid");
    badLine = null;
    renderGutter();
    const button = document.getElementById("save");
    button.disabled = true;
    try {
      const saved = workflowId
        ? await send("PUT", `/workflows/${encodeURIComponent(workflowId)}`, { source: source.value })
        : await send("POST", "/workflows", { source: source.value });
      location.assign(`/workflows/${encodeURIComponent(saved.id)}`);
    } catch (error) {
      showError(error);
      button.disabled = false;
    }
  }

  async function load() {
    if (workflowId) {
      document.getElementById("heading").textContent = "Edit workflow";
      document.getElementById("cancel").href = `/workflows/${encodeURIComponent(workflowId)}`;
      try {
        const workflow = await json(`/workflows/${encodeURIComponent(workflowId)}`);
        document.title = `Edit ${workflow.title} · Glassbox`;
        document.getElementById("heading").textContent = `Edit “${workflow.title}”`;
        source.value = workflow.source;
      } catch (error) {
        errorBox.textContent = error.status === 404 ? "Workflow not found." : `Could not load the workflow: ${error.message}`;
        errorBox.hidden = false;
        form.hidden = true;
        return;
      }
    } else {
      source.value = TEMPLATE;
    }
    renderGutter();
  }

  source.addEventListener("input", () => { badLine = null; renderGutter(); });
  source.addEventListener("scroll", () => { gutter.scrollTop = source.scrollTop; });
  source.addEventListener("keydown", (event) => {
    if (event.key === "Tab" && !event.shiftKey && !event.ctrlKey && !event.metaKey) {
      // Two spaces, as YAML wants; Esc then Tab leaves the editor (keyboard users).
      if (source.dataset.escaped === "1") { source.dataset.escaped = ""; return; }
      event.preventDefault();
      source.setRangeText("  ", source.selectionStart, source.selectionEnd, "end");
      renderGutter();
    } else if (event.key === "Escape") source.dataset.escaped = "1";
    else source.dataset.escaped = "";
  });
  form.addEventListener("submit", save);
  load();
})();
