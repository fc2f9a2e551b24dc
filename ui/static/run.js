/* /runs/{id}: one run. Live through Server-Sent Events (cards, status) and a WebSocket (frames). */
"use strict";

(() => {
  const { json, text, post, el, badge, date, duration, clock, withKey, ACTIVE } = Glassbox;
  const runId = decodeURIComponent(location.pathname.split("/").filter(Boolean)[1] || "");
  const $ = (id) => document.getElementById(id);
  const TABS = ["overview", "output", "parameters", "recording", "code", "trace"];
  let run = null;
  let cards = [];
  let selectedSeq = null;
  let events = null;
  let socket = null;
  let frameUrl = null;
  let codeLoaded = false;
  let traceLoaded = false;

  function showError(message) {
    $("error").textContent = message;
    $("error").hidden = false;
  }

  function artifact(kind) {
    const found = (run && run.artifacts || []).filter((a) => a.kind === kind);
    return found.length ? found[found.length - 1] : null;
  }

  // --- tabs ------------------------------------------------------------------------------------

  function selectTab(name, push = true) {
    if (!TABS.includes(name)) name = "overview";
    for (const tab of TABS) {
      $("tab-" + tab).setAttribute("aria-selected", String(tab === name));
      $("panel-" + tab).hidden = tab !== name;
    }
    if (push) history.replaceState(null, "", name === "overview" ? location.pathname + location.search : "#" + name);
    if (name === "code") loadCode();
    if (name === "trace") loadTrace();
  }

  for (const tab of TABS) $("tab-" + tab).addEventListener("click", () => selectTab(tab));

  // --- header ----------------------------------------------------------------------------------

  function renderHeader() {
    document.title = `${run.title || run.id} · Glassbox`;
    $("title").textContent = run.title || run.id;
    $("status").replaceChildren(badge(run.status));
    $("run-id").textContent = run.id;
    $("created").textContent = "Created " + date(run.created_at);
    $("duration").textContent = "Duration " + duration(run);
    const active = ACTIVE.has(run.status);
    $("cancel").hidden = !active;
    $("cancel").disabled = !!run.cancel_requested;
    $("rerun").hidden = active;
    const outcome = $("outcome");
    outcome.replaceChildren();
    if (run.failure_reason) {
      outcome.append(el("div", { class: "outcome failure", id: "failure" },
        el("strong", { text: "Failure reason" }), el("pre", { text: run.failure_reason })));
    } else if (run.extracted_information && Object.keys(run.extracted_information).length) {
      outcome.append(el("div", { class: "outcome extracted", id: "extracted" },
        el("strong", { text: "Extracted information" }),
        el("pre", { text: JSON.stringify(run.extracted_information, null, 2) })));
    }
    // The evidence, apart from the status: a record that could not be completed says so.
    const record = run.record;
    if (record && record.complete === false) {
      outcome.append(el("div", { class: "outcome incomplete", id: "record-incomplete", role: "alert" },
        el("strong", { text: "Incomplete record: some artifacts could not be kept" }),
        el("ul", {}, ...(record.missing || []).map((line) => el("li", { text: line })))));
    }
  }

  $("cancel").addEventListener("click", async () => {
    $("cancel").disabled = true;
    try {
      run = Object.assign(run, await post(`/runs/${encodeURIComponent(runId)}/cancel`));
      renderHeader();
    } catch (error) {
      showError(`Could not cancel: ${error.message}`);
      $("cancel").disabled = false;
    }
  });

  $("rerun").addEventListener("click", async () => {
    $("rerun").disabled = true;
    try {
      const created = await post(`/runs/${encodeURIComponent(runId)}/rerun`);
      location.assign(`/runs/${encodeURIComponent(created.id)}`);
    } catch (error) {
      showError(`Could not rerun: ${error.message}`);
      $("rerun").disabled = false;
    }
  });

  // --- API & Webhooks: the snippets that recreate the run, the webhook deliveries ---------------

  const SNIPPETS = [["curl", "curl"], ["python", "Python"], ["powershell", "PowerShell"]];
  let snippets = null;

  function showSnippet(kind) {
    for (const button of $("snippet-tabs").querySelectorAll("button")) {
      button.setAttribute("aria-pressed", String(button.dataset.kind === kind));
    }
    $("snippet").textContent = snippets[kind] || "";
  }

  async function loadWebhook() {
    const box = $("webhook");
    if (!run.webhook_url) {
      box.replaceChildren(el("p", { class: "note", text: "This run has no webhook_url." }));
      return;
    }
    const answer = await json(`/runs/${encodeURIComponent(runId)}/webhook-deliveries`);
    const rows = answer.items.map((d) => el("tr", {},
      el("td", { text: String(d.attempt) + (d.manual ? " (sent again)" : "") }),
      el("td", { text: date(d.at) }),
      el("td", { text: d.status_code === null ? "—" : String(d.status_code) }),
      el("td", { text: d.error || "" }),
      el("td", { text: d.duration_ms === null ? "" : `${d.duration_ms} ms` })));
    const resend = el("button", { type: "button", id: "resend", text: "Send again" });
    resend.hidden = ACTIVE.has(run.status);
    resend.addEventListener("click", async () => {
      resend.disabled = true;
      try {
        await post(`/runs/${encodeURIComponent(runId)}/webhook-deliveries`);
        await loadWebhook();
      } catch (error) {
        showError(`Could not send the webhook: ${error.message}`);
        resend.disabled = false;
      }
    });
    box.replaceChildren(
      el("p", {}, el("code", { text: run.webhook_url }), ` · state: ${answer.state || "—"} `, resend),
      rows.length
        ? el("table", { class: "deliveries", id: "deliveries" },
          el("thead", {}, el("tr", {}, ["Attempt", "At", "Status", "Error", "Took"].map((h) => el("th", { text: h })))),
          el("tbody", {}, rows))
        : el("p", { class: "note", text: "No delivery yet." }));
  }

  $("api-button").addEventListener("click", async () => {
    const panel = $("api-panel");
    panel.hidden = !panel.hidden;
    $("api-button").setAttribute("aria-expanded", String(!panel.hidden));
    if (panel.hidden) return;
    try {
      if (!snippets) {
        snippets = await json(`/runs/${encodeURIComponent(runId)}/reproduce`);
        $("snippet-tabs").replaceChildren(...SNIPPETS.map(([kind, label]) =>
          el("button", { type: "button", dataset: { kind }, text: label, onclick: () => showSnippet(kind) })));
        showSnippet("curl");
      }
      await loadWebhook();
    } catch (error) {
      showError(`Could not load the API snippets: ${error.message}`);
    }
  });

  // --- overview: timeline and browser panel ----------------------------------------------------

  function cardBody(card) {
    if (card.kind === "thought") return [card.text || ""];
    if (card.kind === "block") {
      const what = `${card.label || card.block_label || ""} (${card.type || "block"}) ${card.event || ""}`;
      return [what, card.error ? el("span", { class: "result bad", text: " — " + card.error }) : null];
    }
    if (card.kind === "action") {
      const bad = card.status && card.status !== "completed";
      return [
        el("span", { class: "verb", text: card.verb || "action" }), " ",
        card.target ? el("code", { class: "target", text: card.target }) : null,
        card.value !== null && card.value !== undefined && card.verb !== "extract" ? el("span", { class: "value", text: ` = ${card.value}` }) : null,
        el("div", { class: "result" + (bad || card.error ? " bad" : "") },
          card.error ? card.error : (card.result ? `→ ${card.result}` : "")),
      ];
    }
    const rest = Object.assign({}, card);
    for (const key of ["id", "seq", "kind", "created_at", "video_ms", "block_label", "status", "duration_ms", "screenshot_artifact_id", "screenshot_url"]) delete rest[key];
    return [JSON.stringify(rest)];
  }

  function cardItem(card) {
    const kindClass = card.kind === "block" ? "block-card" : card.kind;
    return el("li", {
      class: `card ${kindClass}` + (card.seq === selectedSeq ? " selected" : ""),
      "data-seq": String(card.seq), "data-kind": card.kind,
      tabindex: card.kind === "action" ? "0" : null,
      onclick: card.kind === "action" ? () => selectCard(card) : null,
      onkeydown: card.kind === "action" ? (e) => { if (e.key === "Enter") selectCard(card); } : null,
    },
    el("div", { class: "line1" },
      el("span", { class: "kind", text: card.kind }),
      card.block_label ? el("span", { class: "block", text: card.block_label }) : null,
      card.duration_ms !== null && card.duration_ms !== undefined ? el("span", { class: "block", text: `${card.duration_ms} ms` }) : null,
      el("span", { class: "at video-ms", title: "Position in the recording", text: clock(card.video_ms) })),
    el("div", { class: "body" }, cardBody(card)));
  }

  function renderTimeline() {
    const list = $("timeline");
    list.replaceChildren(...cards.map(cardItem));
    const actions = cards.filter((c) => c.kind === "action");
    const failed = actions.filter((c) => c.status && c.status !== "completed").length;
    const thoughts = cards.filter((c) => c.kind === "thought").length;
    const blocks = new Set(cards.filter((c) => c.kind === "block").map((c) => c.block_label)).size;
    $("counters").replaceChildren(
      el("span", { text: `${blocks} blocks` }), el("span", { text: `${actions.length} actions` }),
      el("span", { text: `${failed} failed` }), el("span", { text: `${thoughts} thoughts` }));
    if (!list.children.length) list.append(el("li", { class: "note", text: ACTIVE.has(run.status) ? "Waiting for the first step…" : "No cards." }));
  }

  function addCards(more) {
    const known = new Set(cards.map((c) => c.seq));
    const fresh = more.filter((c) => !known.has(c.seq));
    if (!fresh.length) return;
    cards = cards.concat(fresh).sort((a, b) => a.seq - b.seq);
    renderTimeline();
    if (!live()) showLatestScreenshot();
  }

  function showImage(src, mode, url) {
    const image = $("browser-image");
    image.src = src;
    image.hidden = false;
    $("browser-placeholder").hidden = true;
    $("browser-mode").replaceChildren(mode === "Live" ? el("span", { class: "live-dot", text: "● Live" }) : mode);
    $("browser-url").textContent = url || "";
  }

  function selectCard(card) {
    selectedSeq = card.seq;
    for (const item of document.querySelectorAll(".card.selected")) item.classList.remove("selected");
    const item = document.querySelector(`.card[data-seq="${card.seq}"]`);
    if (item) item.classList.add("selected");
    if (card.screenshot_url) showImage(withKey(card.screenshot_url), `Screenshot · step ${card.step || card.seq}`, card.url);
    seekVideo(card.video_ms);
  }

  function showLatestScreenshot() {
    if (selectedSeq !== null) return;
    const last = cards.filter((c) => c.kind === "action" && c.screenshot_url).pop();
    if (last) showImage(withKey(last.screenshot_url), `Screenshot · step ${last.step || last.seq}`, last.url);
  }

  function live() { return socket !== null && socket.readyState <= 1; }

  function startLive() {
    const path = `${Glassbox.API}/runs/${encodeURIComponent(runId)}`;
    const after = cards.length ? cards[cards.length - 1].seq : 0;
    events = new EventSource(withKey(`${path}/events?after_seq=${after}`));
    events.addEventListener("card", (e) => addCards([JSON.parse(e.data)]));
    events.addEventListener("status", (e) => {
      const change = JSON.parse(e.data);
      if (run.status !== change.status) {
        Object.assign(run, change);
        renderHeader();
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
      if (selectedSeq === null) showImage(url, "Live", "");
      if (frameUrl) URL.revokeObjectURL(frameUrl);
      frameUrl = url;
    };
    socket.onclose = () => { socket = null; };
  }

  async function finished() {
    if (socket) { socket.close(); socket = null; }
    await loadRun();
    const page = await json(`/runs/${encodeURIComponent(runId)}/timeline`);
    addCards(page.items);
    if (selectedSeq === null) {
      $("browser-mode").textContent = "Screenshot";
      showLatestScreenshot();
    }
    renderDetails();
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
    if (typeof v === "object") return el("pre", { class: "code", text: JSON.stringify(v, null, 2) });
    return el("span", { class: "mono", text: String(v) });
  }

  function renderDetails() {
    const extracted = run.extracted_information;
    $("output-json").replaceChildren(extracted && Object.keys(extracted).length
      ? jsonBlock(extracted) : el("p", { class: "note", text: "Nothing extracted." }));
    const downloads = (run.artifacts || []).filter((a) => a.kind === "download");
    $("downloads").replaceChildren(downloads.length
      ? el("ul", { class: "downloads" }, downloads.map((a) => el("li", {},
        el("a", { href: withKey(a.url + "?download=true"), download: a.name, text: a.name }),
        el("span", { class: "note", text: ` ${a.size} bytes` }))))
      : el("p", { class: "note", text: "No downloaded files." }));
    renderSavedPage();

    const params = run.parameters || {};
    $("inputs").replaceChildren(Object.keys(params).length
      ? el("dl", { class: "params" }, Object.entries(params).map(([k, v]) => [el("dt", { text: k }), el("dd", {}, value(v))]))
      : el("p", { class: "note", text: "No parameters." }));
    $("settings").replaceChildren(...[
      ["Webhook URL", run.webhook_url], ["Proxy", run.proxy], ["Extra HTTP headers", run.extra_http_headers],
      ["Run with", run.run_with], ["Timeout", run.timeout_s ? `${run.timeout_s} s` : null],
      ["Source", run.source], ["Attempt", run.attempt],
      ["Parent run", run.parent_run_id ? el("a", { href: `/runs/${run.parent_run_id}`, text: run.parent_run_id }) : null],
    ].flatMap(([k, v]) => [el("dt", { text: k }), el("dd", {}, v instanceof Node ? v : value(v))]));

    renderRecording();
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
      $("downloads").after(el("h2", { text: "Saved page" }), box);
    }
    if (!page) { savedPageId = null; box.replaceChildren(el("p", { class: "note", text: "No saved page." })); return; }
    if (savedPageId === page.id) return;
    savedPageId = page.id;
    const download = el("a", { href: withKey(page.url + "?download=true"), download: page.name, text: `Download ${page.name}` });
    const note = el("span", { class: "note", text: ` ${page.size} bytes; its scripts never run here.` });
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
        shown = el("iframe", { id: "saved-page-frame", sandbox: "", referrerpolicy: "no-referrer", title: `Saved page ${page.name}`,
          style: "width: 100%; height: 60vh; border: 1px solid var(--line); border-radius: 6px; background: #fff;" });
        // Nothing leaves the browser either: no request to the recorded site or anywhere else.
        shown.srcdoc = `<meta http-equiv="Content-Security-Policy" content="default-src 'none'; img-src data:; style-src 'unsafe-inline'">${html}`;
      }
      box.replaceChildren(buttons, shown);
    };
    const buttons = el("p", {},
      el("button", { type: "button", id: "saved-page-show", text: "Show the page", onclick: show(false) }), " ",
      el("button", { type: "button", id: "saved-page-source", text: "Show its HTML", onclick: show(true) }), " ",
      download, note);
    box.replaceChildren(buttons);
  }

  function renderRecording() {
    const video = artifact("video");
    const box = $("recording");
    const existing = $("video");
    if (video && existing && existing.dataset.artifact === video.id) return;
    box.replaceChildren(video
      ? el("video", { id: "video", controls: true, preload: "metadata", src: withKey(video.url), "data-artifact": video.id })
      : el("p", { class: "note", id: "no-recording", text: ACTIVE.has(run.status) ? "The recording is available when the run ends." : "No recording available" }));
  }

  function seekVideo(ms) {
    const video = $("video");
    if (!video || ms === null || ms === undefined) return;
    const seek = () => { video.currentTime = ms / 1000; };
    if (video.readyState >= 1) seek(); else video.addEventListener("loadedmetadata", seek, { once: true });
  }

  // --- code and trace (loaded when their tab opens) ------------------------------------------

  async function loadCode() {
    if (codeLoaded || !run) return;
    if (ACTIVE.has(run.status)) { $("code").textContent = "The code is generated when the run ends."; return; }
    try {
      $("code").textContent = await text(`/runs/${encodeURIComponent(runId)}/code`);
      codeLoaded = true;
    } catch (error) {
      $("code").textContent = error.status === 404 ? "No code was generated for this run." : `Could not load the code: ${error.message}`;
    }
  }

  $("copy").addEventListener("click", async () => {
    const code = $("code").textContent;
    try {
      await navigator.clipboard.writeText(code);
    } catch (_) {
      const range = document.createRange();
      range.selectNodeContents($("code"));
      getSelection().removeAllRanges();
      getSelection().addRange(range);
      document.execCommand("copy");
    }
    $("copied").hidden = false;
    setTimeout(() => { $("copied").hidden = true; }, 1500);
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
    box.replaceChildren(
      el("p", { class: "note" }, "Playwright trace viewer · ", el("a", { href: withKey(trace.url + "?download=true"), text: "download " + trace.name })),
      el("iframe", { class: "trace", id: "trace-frame", title: "Trace viewer", src: `/trace-viewer/index.html?trace=${encodeURIComponent(traceUrl)}` }));
    traceLoaded = true;
  }

  // --- start ------------------------------------------------------------------------------------

  async function loadRun() {
    run = await json(`/runs/${encodeURIComponent(runId)}`);
    renderHeader();
  }

  async function start() {
    try {
      await loadRun();
    } catch (error) {
      $("title").textContent = "Run not found";
      showError(error.status === 404 ? `There is no run ${runId}.` : `Could not load the run: ${error.message}`);
      return;
    }
    post(`/runs/${encodeURIComponent(runId)}/read`).catch(() => {});
    const page = await json(`/runs/${encodeURIComponent(runId)}/timeline`);
    cards = page.items;
    renderTimeline();
    renderDetails();
    if (ACTIVE.has(run.status)) {
      $("browser-placeholder").textContent = "Waiting for the browser…";
      startLive();
    } else {
      showLatestScreenshot();
    }
    selectTab(location.hash.slice(1), false);
  }

  setInterval(() => { if (run && ACTIVE.has(run.status)) $("duration").textContent = "Duration " + duration(run); }, 1000);
  start();
})();
