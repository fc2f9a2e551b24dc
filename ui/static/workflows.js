/* /workflows: saved workflows, each with its parameters and its last run. */
"use strict";

(() => {
  const { json, el, badge, ago } = Glassbox;
  const list = document.getElementById("workflows");
  const empty = document.getElementById("empty");
  const errorBox = document.getElementById("error");

  function parameterChips(parameters) {
    const names = Object.entries(parameters || {});
    if (!names.length) return el("span", { class: "muted", text: "no parameters" });
    return el("span", { class: "param-chips" }, names.map(([name, spec]) =>
      el("code", { class: "param-chip", title: `${spec.type || "string"}${spec.secret ? ", secret" : ""}${spec.description ? " — " + spec.description : ""}` },
        name, spec.secret ? " 🔒" : "")));
  }

  function item(workflow) {
    const href = `/workflows/${encodeURIComponent(workflow.id)}`;
    const last = workflow.last_run;
    return el("li", { class: "workflow-item", "data-workflow-id": workflow.id },
      el("div", { class: "wf-main" },
        el("a", { class: "wf-title", href, text: workflow.title }),
        workflow.description ? el("p", { class: "wf-desc", text: workflow.description }) : null,
        el("div", { class: "wf-params" }, parameterChips(workflow.parameters)),
      ),
      el("div", { class: "wf-last" },
        last
          ? el("a", { href: `/runs/${encodeURIComponent(last.id)}`, class: "last-run", title: "Last run" }, badge(last.status), " ", ago(last.created_at))
          : el("span", { class: "muted", text: "never run" }),
      ),
      el("div", { class: "wf-actions" },
        el("a", { class: "button primary", href: href + "#run", text: "Run" }),
        el("a", { class: "button", href: href + "/edit", text: "Edit" }),
      ),
    );
  }

  async function load() {
    try {
      const page = await json("/workflows");
      errorBox.hidden = true;
      list.replaceChildren(...page.items.map(item));
      empty.hidden = page.items.length > 0;
    } catch (error) {
      errorBox.textContent = `Could not load the workflows: ${error.message}`;
      errorBox.hidden = false;
    }
  }

  load();
})();
