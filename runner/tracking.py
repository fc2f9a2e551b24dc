"""Where each action landed, reported by the page itself.

An init script listens (capture phase) for the events a Playwright action produces on its
element — a trusted `pointerdown` for clicks and checks, `focusin` for fill and press, the
`input`/`change` that `select_option` dispatches — and reports the element's box (in the top
page's viewport, through same-origin frames) and whether a click there opens another tab,
through a binding. That replaces a `wait_for` + `bounding_box` (+ an `evaluate` for links)
before every action: three more round trips to the browser per step, each a traced call with
DOM snapshots when the Playwright trace is on.

The recorder keeps the first report of each action: the box outlined in its screenshot and in
the video's annotation.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import Any

BINDING = "__glassboxActed"

TRACKER_SCRIPT = """
(() => {
  if (window.__glassboxActionTracker) return;
  Object.defineProperty(window, "__glassboxActionTracker", { value: true });
  const trusted = new Set(["pointerdown", "focusin", "keydown", "click"]);
  const report = (event) => {
    const send = window.__BINDING__;
    if (typeof send !== "function") return;
    let el = event.composedPath ? event.composedPath()[0] : event.target;
    if (el && !(el instanceof Element)) el = el.parentElement;
    if (!el) return;
    // Trusted events only (real input, as Playwright's), but for the input/change events
    // select_option dispatches on a <select>.
    if (!event.isTrusted && !(el instanceof HTMLSelectElement && !trusted.has(event.type))) return;
    const rect = el.getBoundingClientRect();
    let x = rect.x, y = rect.y, top = true;
    try {
      let w = window;
      while (w !== w.top) {
        const frame = w.frameElement;
        if (!frame) { top = false; break; }
        const r = frame.getBoundingClientRect();
        x += r.x + frame.clientLeft;
        y += r.y + frame.clientTop;
        w = w.parent;
      }
    } catch (e) { top = false; }
    let target = "";
    if (event.type === "pointerdown") {
      const link = el.closest("a[href],area[href],form");
      target = link ? (link.getAttribute("target") || "") : "";
    }
    try {
      const sent = send({ type: event.type, x, y, width: rect.width, height: rect.height, top,
                          target, t: Date.now() });
      if (sent && sent.catch) sent.catch(() => {});
    } catch (e) {}
  };
  for (const type of ["pointerdown", "focusin", "keydown", "input", "change", "click"]) {
    window.addEventListener(type, report, true);
  }
})();
""".replace("__BINDING__", BINDING)


@dataclass
class Acted:
    """The first report of an action."""

    box: tuple[float, float, float, float] | None  # x, y, width, height in viewport CSS px
    opens_tab: bool


def parse_report(info: Any) -> Acted | None:
    if not isinstance(info, dict):
        return None
    try:
        box = (float(info["x"]), float(info["y"]), float(info["width"]), float(info["height"]))
    except (KeyError, TypeError, ValueError):
        return None
    if not info.get("top") or box[2] <= 0 or box[3] <= 0:
        box_or_none = None
    else:
        box_or_none = box
    target = str(info.get("target") or "").lower()
    return Acted(box_or_none, bool(target) and target not in ("_self", "_parent", "_top"))


class ActionTracker:
    """Numbers the actions and keeps the first report of each."""

    def __init__(self) -> None:
        self.seq = 0
        self.expecting = False
        self._acted: dict[int, Acted] = {}
        self.last_event: dict[int, float] = {}  # wall clock of the action's latest event
        self._arrived: dict[int, asyncio.Event] = {}

    def begin(self, *, expect: bool) -> int:
        """A new action starts; `expect`: it acts on an element, so a report will come."""
        self.seq += 1
        self.expecting = expect
        self._acted.pop(self.seq - 50, None)
        self._arrived.pop(self.seq - 50, None)
        self.last_event.pop(self.seq - 50, None)
        return self.seq

    def report(self, info: Any) -> Acted | None:
        """Called by the binding; returns the report if it is the action's first."""
        if not self.expecting:
            return None
        if isinstance(info, dict) and isinstance(info.get("t"), int | float):
            self.last_event[self.seq] = float(info["t"]) / 1000
        if self.seq in self._acted:
            return None
        acted = parse_report(info)
        if acted is None:
            return None
        self._acted[self.seq] = acted
        event = self._arrived.get(self.seq)
        if event is not None:
            event.set()
        return acted

    def get(self, seq: int) -> Acted | None:
        return self._acted.get(seq)

    async def wait(self, seq: int, timeout: float) -> Acted | None:
        """The action's report, waiting up to `timeout` s for it to arrive."""
        if seq in self._acted:
            return self._acted[seq]
        event = self._arrived.setdefault(seq, asyncio.Event())
        try:
            await asyncio.wait_for(event.wait(), timeout)
        except TimeoutError:
            return None
        return self._acted.get(seq)
