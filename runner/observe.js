// Glassbox: the agent's observation of a page. Evaluated once per observe() in the main frame;
// it walks the document, open shadow roots and same-origin iframes (their documents are
// reachable from here), marks each interactive element with data-glassbox-n / data-glassbox-step
// (and each iframe it descended into with data-glassbox-frame) and returns a JSON string.
// Keep it self-contained: one function expression taking one argument.
(args) => {
  // Elements given click listeners with addEventListener (recorded by CLICK_LISTENER_SCRIPT,
  // which Glassbox installs in every page before the page's own scripts run).
  const hasClickListener = (el) => {
    const view = el.ownerDocument && el.ownerDocument.defaultView;
    const targets = view && view.__glassboxClickTargets;
    return !!(targets && targets.has(el));
  };
  const N_ATTR = "data-glassbox-n";
  const STEP_ATTR = "data-glassbox-step";
  const FRAME_ATTR = "data-glassbox-frame";
  const REGISTRY = "__glassboxMarked";
  const maxElements = args.maxElements;
  const textLimit = args.textLimit;
  const step = args.step;

  // Clear the marks of the previous observation (the step token makes stale ones harmless
  // anyway; this keeps the DOM tidy).
  const previous = window[REGISTRY];
  if (Array.isArray(previous)) {
    for (const el of previous) {
      try {
        el.removeAttribute(N_ATTR);
        el.removeAttribute(STEP_ATTR);
        el.removeAttribute(FRAME_ATTR);
      } catch (e) {
        // element from a document that is gone
      }
    }
  }
  const marked = [];
  try {
    Object.defineProperty(window, REGISTRY, {
      value: marked,
      configurable: true,
      enumerable: false,
      writable: true,
    });
  } catch (e) {
    window[REGISTRY] = marked;
  }

  const ROLES = new Set([
    "button", "link", "checkbox", "radio", "tab", "menuitem", "menuitemcheckbox",
    "menuitemradio", "option", "switch", "combobox", "textbox", "searchbox", "slider",
    "spinbutton", "treeitem",
  ]);
  const NATIVE = new Set(["a", "button", "input", "select", "textarea", "summary"]);
  const SKIP = new Set([
    "script", "style", "noscript", "template", "head", "meta", "link", "title", "option",
    "optgroup", "datalist",
  ]);
  const BUTTON_INPUTS = new Set(["submit", "button", "reset", "image"]);
  const NO_VALUE_INPUTS = new Set(["password", "checkbox", "radio", "hidden"]);

  const collapse = (s) => (s || "").replace(/\s+/g, " ").trim();
  const clip = (s) => {
    s = collapse(s);
    return s.length > textLimit ? s.slice(0, textLimit - 1).trimEnd() + "\u2026" : s;
  };

  function isNative(el, tag) {
    if (tag === "a") return el.hasAttribute("href");
    if (tag === "input") return (el.type || "").toLowerCase() !== "hidden";
    return NATIVE.has(tag);
  }

  function roleOf(el) {
    const role = el.getAttribute("role");
    if (!role) return "";
    for (const r of role.toLowerCase().split(/\s+/)) if (ROLES.has(r)) return r;
    return "";
  }

  function editableRoot(el) {
    if (!el.isContentEditable) return false;
    const attr = el.getAttribute("contenteditable");
    if (attr === null || attr.toLowerCase() === "false") return false;
    const parent = el.parentElement;
    return !(parent && parent.isContentEditable);
  }

  // Text of some nodes (a label, aria-labelledby targets) without the control it labels.
  function textWithout(node, control) {
    let out = "";
    const walk = (n) => {
      if (n === control) return;
      if (n.nodeType === Node.TEXT_NODE) {
        out += n.data + " ";
        return;
      }
      if (n.nodeType !== Node.ELEMENT_NODE) return;
      const t = n.localName;
      if (t === "select" || t === "textarea" || t === "input" || SKIP.has(t)) return;
      for (const c of n.childNodes) walk(c);
    };
    walk(node);
    return collapse(out);
  }

  function labelledBy(el) {
    const ids = el.getAttribute("aria-labelledby");
    if (!ids) return "";
    const root = el.getRootNode();
    const parts = [];
    for (const id of ids.split(/\s+/)) {
      const target = root.getElementById ? root.getElementById(id) : null;
      if (target) parts.push(textWithout(target, el));
    }
    return collapse(parts.join(" "));
  }

  function labelText(el) {
    let labels = null;
    try {
      labels = el.labels;
    } catch (e) {
      labels = null;
    }
    if (!labels || !labels.length) return "";
    return collapse(Array.from(labels, (l) => textWithout(l, el)).join(" "));
  }

  function descendantAlt(el) {
    const img = el.querySelector("img[alt], [role=img][aria-label], svg title");
    if (!img) return "";
    if (img.localName === "title") return img.textContent || "";
    return img.getAttribute("alt") || img.getAttribute("aria-label") || "";
  }

  function describe(el, tag, type, view) {
    const attrs = {};
    const role = el.getAttribute("role");
    if (role) attrs.role = role;
    if (tag === "input") attrs.type = type;
    else if (el.hasAttribute("type")) attrs.type = el.getAttribute("type");
    for (const name of ["id", "name", "placeholder", "aria-label"]) {
      const v = el.getAttribute(name);
      if (v !== null && collapse(v) !== "") attrs[name] = collapse(v);
    }
    if (tag === "a" && el.hasAttribute("href")) {
      // SVG links have an SVGAnimatedString href.
      attrs.href = (typeof el.href === "string" && el.href) || el.getAttribute("href");
    }

    const ariaLabel = collapse(el.getAttribute("aria-label"));
    const named = ariaLabel || labelledBy(el) || labelText(el);
    let text = "";
    const isButtonInput = tag === "input" && BUTTON_INPUTS.has(type);
    const isEntry = (tag === "input" && !isButtonInput) || tag === "textarea" || tag === "select";
    if (isEntry) {
      text = named || collapse(el.getAttribute("title"));
      if (tag === "select") {
        const options = Array.from(el.options || []);
        const chosen = options.filter((o) => o.selected).map((o) => collapse(o.label || o.text));
        if (chosen.length) attrs.value = clip(chosen.join(", "));
        if (options.length) {
          const shown = options.slice(0, 20).map((o) => collapse(o.label || o.text));
          let joined = shown.join("|");
          if (options.length > shown.length) joined += `|\u2026 (${options.length} options)`;
          attrs.options = joined;
        }
        if (el.multiple) attrs.multiple = "true";
      } else if (!NO_VALUE_INPUTS.has(type) && type !== "file") {
        const value = el.value;
        if (value) attrs.value = clip(value);
      } else if (type === "file" && el.files && el.files.length) {
        attrs.value = clip(Array.from(el.files, (f) => f.name).join(", "));
      }
      if ((type === "checkbox" || type === "radio") && el.checked) attrs.checked = "true";
      if (el.readOnly) attrs.readonly = "true";
      if (el.required) attrs.required = "true";
    } else {
      text = named;
      if (!text && isButtonInput) text = el.value || el.getAttribute("alt") || "";
      if (!text) text = elementText(el, view);
      if (!collapse(text)) {
        text =
          descendantAlt(el) || el.getAttribute("alt") || el.getAttribute("title") || "";
      }
    }
    const ariaChecked = el.getAttribute("aria-checked");
    if (ariaChecked === "true" || ariaChecked === "mixed") attrs.checked = ariaChecked;
    if (el.getAttribute("aria-selected") === "true") attrs.selected = "true";
    const expanded = el.getAttribute("aria-expanded");
    if (expanded === "true" || expanded === "false") attrs.expanded = expanded;
    if (el.disabled === true || el.getAttribute("aria-disabled") === "true") {
      attrs.disabled = "true";
    }
    return { attrs, text: clip(text) };
  }

  function visibleBox(el, view) {
    if (typeof el.checkVisibility === "function") {
      if (!el.checkVisibility({ opacityProperty: true, visibilityProperty: true })) return null;
    } else {
      const style = view.getComputedStyle(el);
      if (style.visibility === "hidden" || style.visibility === "collapse") return null;
      if (parseFloat(style.opacity) === 0) return null;
    }
    const r = el.getBoundingClientRect();
    if (!(r.width > 0 && r.height > 0)) return null;
    if (r.width <= 1 && r.height <= 1) return null; // visually-hidden (sr-only) pattern
    // Entirely before the document's start: can never be scrolled to.
    if (r.right + view.scrollX <= 0 || r.bottom + view.scrollY <= 0) return null;
    return r;
  }

  const elements = [];
  let truncated = false;
  const textParts = [];

  // Children in the flat tree: a shadow host renders its shadow root, a slot its assigned nodes
  // (or its fallback content). Unslotted light children of a shadow host are not rendered.
  function flatChildren(el) {
    if (el.shadowRoot) return el.shadowRoot.childNodes;
    if (el.localName === "slot" && typeof el.assignedNodes === "function") {
      const assigned = el.assignedNodes({ flatten: true });
      if (assigned.length) return assigned;
    }
    return el.childNodes;
  }

  const LEAVES = new Set(["select", "textarea", "input", "img", "video", "audio", "canvas"]);

  // The rendered text of one element (an interactive element's label), flat tree, clipped.
  function elementText(el, view) {
    let out = "";
    const walkText = (node, visible) => {
      if (out.length > textLimit * 2) return;
      if (node.nodeType === Node.TEXT_NODE) {
        if (visible) out += node.data;
        return;
      }
      if (node.nodeType !== Node.ELEMENT_NODE) return;
      const tag = node.localName;
      if (SKIP.has(tag) || LEAVES.has(tag)) return;
      const style = view.getComputedStyle(node);
      if (style.display === "none") return;
      const shown = style.visibility === "visible";
      const separate = style.display !== "inline" && style.display !== "contents";
      if (tag === "br" || separate) out += " ";
      for (const child of flatChildren(node)) walkText(child, shown);
      if (separate) out += " ";
    };
    walkText(el, true);
    return collapse(out);
  }

  // One walk over the rendered flat tree of the document, its open shadow roots and its
  // same-origin iframes collects both the page's visible text (in reading order) and the
  // interactive elements. `ctx`: view (the node's window), ox/oy (offset of that window's
  // viewport in the top viewport), path (frame path), frames (iframe counter of this
  // document), inCandidate (an ancestor is listed), parentPointer (the parent's cursor is
  // pointer), hiddenText (an ancestor is transparent, clipped away or off the page).
  function visitNode(node, ctx) {
    if (node.nodeType === Node.TEXT_NODE) {
      if (!ctx.hiddenText && ctx.textVisible) textParts.push(node.data.replace(/\s+/g, " "));
      return;
    }
    if (node.nodeType === Node.ELEMENT_NODE) visitElement(node, ctx);
  }

  function visitElement(el, ctx) {
    const tag = el.localName;
    if (SKIP.has(tag)) return;
    const view = ctx.view;
    const style = view.getComputedStyle(el);
    const display = style.display;
    if (display === "none") return;
    const pointer = style.cursor === "pointer";
    const block = display !== "contents" && !display.startsWith("inline");
    const spaced = display.startsWith("inline-") || LEAVES.has(tag);
    if (tag === "br") textParts.push("\n");
    else if (block) textParts.push(display === "table-cell" ? " " : "\n");
    else if (spaced) textParts.push(" ");

    if (tag === "iframe" || tag === "frame") {
      textParts.push("\n");
      if (!ctx.hiddenText) enterFrame(el, ctx);
      textParts.push("\n");
      return;
    }

    let candidate = false;
    if (!truncated && !ctx.hiddenText) {
      const type = tag === "input" ? (el.type || "text").toLowerCase() : "";
      candidate =
        isNative(el, tag) ||
        roleOf(el) !== "" ||
        editableRoot(el) ||
        el.hasAttribute("onclick") ||
        typeof el.onclick === "function" ||
        hasClickListener(el) ||
        (el.hasAttribute("tabindex") && parseInt(el.getAttribute("tabindex"), 10) >= 0) ||
        (pointer && !ctx.parentPointer && !ctx.inCandidate);
      if (tag === "input" && type === "hidden") candidate = false;
      if (tag === "body" || tag === "html") candidate = editableRoot(el);
      if (candidate) {
        const r = visibleBox(el, view);
        if (r === null) {
          candidate = false;
        } else if (elements.length >= maxElements) {
          truncated = true;
          candidate = false;
        } else {
          const index = elements.length + 1;
          const { attrs, text } = describe(el, tag, type, view);
          el.setAttribute(N_ATTR, String(index));
          el.setAttribute(STEP_ATTR, step);
          marked.push(el);
          elements.push({
            index,
            tag,
            attrs,
            text,
            framePath: ctx.path,
            box: [r.x + ctx.ox, r.y + ctx.oy, r.width, r.height],
          });
        }
      }
    }

    if (!LEAVES.has(tag)) {
      let hiddenText = ctx.hiddenText || style.opacity === "0";
      if (!hiddenText && (style.overflow !== "visible" || style.position === "absolute" ||
                          style.position === "fixed")) {
        const r = el.getBoundingClientRect();
        const clipped = style.overflow !== "visible" && (r.width <= 1 || r.height <= 1);
        const offPage = r.right + view.scrollX <= 0 || r.bottom + view.scrollY <= 0;
        hiddenText = clipped || offPage;
      }
      const childCtx = {
        ...ctx,
        inCandidate: ctx.inCandidate || candidate,
        parentPointer: pointer,
        hiddenText,
        textVisible: style.visibility === "visible",
      };
      let children = flatChildren(el);
      if (tag === "details" && !el.open) {
        // A closed <details> renders only its summary.
        children = Array.from(el.children).filter((c) => c.localName === "summary").slice(0, 1);
      }
      for (const child of children) visitNode(child, childCtx);
    }
    if (block) textParts.push("\n");
    else if (spaced) textParts.push(" ");
  }

  function enterFrame(frameEl, ctx) {
    let doc = null;
    try {
      doc = frameEl.contentDocument; // null (or throws) when cross-origin or sandboxed
    } catch (e) {
      doc = null;
    }
    if (!doc || !doc.documentElement) return;
    const view = ctx.view;
    const r = visibleBox(frameEl, view);
    const innerView = doc.defaultView;
    if (r === null || !innerView) return;
    const fs = view.getComputedStyle(frameEl);
    const dx = r.x + frameEl.clientLeft + (parseFloat(fs.paddingLeft) || 0);
    const dy = r.y + frameEl.clientTop + (parseFloat(fs.paddingTop) || 0);
    const number = ctx.frames.next++;
    frameEl.setAttribute(FRAME_ATTR, String(number));
    frameEl.setAttribute(STEP_ATTR, step);
    marked.push(frameEl);
    visitElement(doc.documentElement, {
      view: innerView,
      ox: ctx.ox + dx,
      oy: ctx.oy + dy,
      path: ctx.path.concat([number]),
      frames: { next: 0 },
      inCandidate: false,
      parentPointer: false,
      hiddenText: false,
      textVisible: true,
    });
  }

  visitElement(document.documentElement, {
    view: window,
    ox: 0,
    oy: 0,
    path: [],
    frames: { next: 0 },
    inCandidate: false,
    parentPointer: false,
    hiddenText: false,
    textVisible: true,
  });

  // Visible text: whitespace collapsed within lines, blank lines dropped.
  const text = textParts
    .join("")
    .split("\n")
    .map((line) => line.replace(/\s+/g, " ").trim())
    .filter((line) => line !== "")
    .join("\n");
  // One JSON string: Playwright serializes a string far faster than a tree of small objects
  // (500 elements: ~10 ms instead of ~300 ms).
  return JSON.stringify({
    title: collapse(document.title),
    text: text.slice(0, args.textCap),
    textLength: text.length,
    elements,
    truncated,
  });
}
