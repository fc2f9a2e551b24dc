"""Action annotations drawn into the video frames: the element outlined and the action's title,
fading out. Drawn on the recorder's side, so the page and the action are never slowed down —
Playwright's `screencast.show_actions` pauses every action for the annotation's duration."""

from __future__ import annotations

import io
import threading
import time
from dataclasses import dataclass
from functools import lru_cache

from PIL import Image, ImageDraw, ImageFont

RED = (229, 57, 53)


@dataclass(frozen=True)
class Annotation:
    title: str
    box: tuple[float, float, float, float] | None  # in viewport CSS pixels
    viewport: tuple[int, int]
    start: float  # time.monotonic()
    until: float


@lru_cache(maxsize=4)
def _font(size: int) -> ImageFont.FreeTypeFont | ImageFont.ImageFont:
    for name in ("DejaVuSans-Bold.ttf", "DejaVuSans.ttf"):
        try:
            return ImageFont.truetype(name, size)
        except OSError:
            continue
    return ImageFont.load_default(size)


def draw(jpeg: bytes, note: Annotation, quality: int = 80) -> bytes:
    image = Image.open(io.BytesIO(jpeg)).convert("RGB")
    scale = image.width / note.viewport[0] if note.viewport[0] else 1.0
    canvas = ImageDraw.Draw(image, "RGBA")
    if note.box is not None:
        x, y, w, h = (v * scale for v in note.box)
        canvas.rectangle((x - 3, y - 3, x + w + 3, y + h + 3), outline=RED, width=3)
        canvas.rectangle((x - 3, y - 3, x + w + 3, y + h + 3), fill=(*RED, 40))
    font = _font(max(12, int(18 * scale)))
    left, top, right, bottom = canvas.textbbox((0, 0), note.title, font=font)
    pad = int(8 * scale)
    width, height = right - left + 2 * pad, bottom - top + 2 * pad
    x0 = image.width - width - pad
    canvas.rounded_rectangle(
        (x0, pad, x0 + width, pad + height), radius=pad, fill=(20, 20, 20, 200)
    )
    canvas.text((x0 + pad - left, 2 * pad - top), note.title, font=font, fill=(255, 255, 255))
    out = io.BytesIO()
    image.save(out, format="JPEG", quality=quality)
    return out.getvalue()


class Annotator:
    """Holds the current annotation; the video's ticker asks it to decorate each frame."""

    def __init__(self, duration_s: float = 0.6, quality: int = 80) -> None:
        self.duration_s = duration_s
        self.quality = quality
        self._note: Annotation | None = None
        self._lock = threading.Lock()
        self._cache: tuple[int, Annotation, bytes] | None = None

    def show(
        self,
        title: str,
        box: tuple[float, float, float, float] | None,
        viewport: tuple[int, int],
    ) -> None:
        now = time.monotonic()
        with self._lock:
            self._note = Annotation(title, box, viewport, now, now + self.duration_s)

    def update_box(self, box: tuple[float, float, float, float]) -> None:
        """Outlines `box` in the annotation on show (the element's box arrived after it)."""
        with self._lock:
            note = self._note
            if note is not None and time.monotonic() < note.until:
                self._note = Annotation(note.title, box, note.viewport, note.start, note.until)

    def __call__(self, jpeg: bytes, at: float) -> bytes:
        """The frame shown at monotonic time `at`, annotated if an annotation is on."""
        with self._lock:
            note = self._note
            cached = self._cache
        if note is None or not (note.start <= at < note.until):
            return jpeg
        if cached is not None and cached[0] == id(jpeg) and cached[1] is note:
            return cached[2]
        decorated = draw(jpeg, note, self.quality)
        with self._lock:
            self._cache = (id(jpeg), note, decorated)
        return decorated
