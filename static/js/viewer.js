// The before/after comparison of a finished job: a split moved by drag, click or slider; zoom by
// Ctrl+wheel (a trackpad's pinch), a touch pinch, the slider or keys, and by the plain wheel only once
// a click (not a drag of the split) has engaged the viewer (so the wheel and vertical swipes scroll
// the page); pan with Shift, the middle button, Pan mode or the arrow keys. At 1x the result fits the
// card, small ones too. The Before and After labels sit either side of the split wherever zoom and
// pan put it, and a side out of view has no label.

const MAX_ZOOM = 8;
const FIT_HEIGHT = 0.75; // of the window's height, at most
const LABEL_GAP = 8; // pixels between a label and the split line, or the viewer's edge
const CLICK_SLOP = 4; // pixels a pointer may move and still be a click, not a drag

export function setupCompare(card, job) {
  const result = job.result;
  const view = card.querySelector(".compare");
  const stage = card.querySelector(".compare-stage");
  const before = card.querySelector(".before");
  const after = card.querySelector(".after");
  const line = card.querySelector(".compare-line");
  const labelBefore = card.querySelector(".label-before");
  const labelAfter = card.querySelector(".label-after");
  const split = card.querySelector(".split");
  const zoomInput = card.querySelector(".zoom");
  const zoomValue = card.querySelector(".zoom-value");
  const panMode = card.querySelector(".pan-mode");
  const pixelView = card.querySelector(".pixel-view");
  const name = job.original_name;
  after.src = result.output_path;
  before.src = job.before_url || result.original_path;
  after.alt = `${name} upscaled, ${result.output_width}\u00d7${result.output_height}`;
  before.alt = `${name} original, ${result.original_width}\u00d7${result.original_height}`;
  card.querySelector(".viewer").setAttribute("aria-label", `Before and after: ${name}`);
  const describe = () => view.setAttribute("aria-label",
    `${name}: the original left of the split (at ${split.value}%), the upscaled result right of it; ` +
    "+ and - zoom, the arrow keys pan when zoomed");

  let zoom = 1;
  let tx = 0;
  let ty = 0;
  let baseW = 0;
  let baseH = 0;

  let engaged = false; // a click on the viewer makes the plain wheel zoom, until the pointer leaves

  // At 1x the whole result fits the card and the screen: large ones shrink, small ones grow.
  function fit() {
    const maxW = view.parentElement.clientWidth;
    const maxH = Math.max(200, window.innerHeight * FIT_HEIGHT);
    const ratio = Math.min(maxW / result.output_width, maxH / result.output_height);
    baseW = Math.max(1, Math.round(result.output_width * ratio));
    baseH = Math.max(1, Math.round(result.output_height * ratio));
    view.style.width = `${baseW}px`;
    view.style.height = `${baseH}px`;
    stage.style.width = `${baseW}px`;
    stage.style.height = `${baseH}px`;
    apply();
  }
  function clamp() {
    tx = Math.min(0, Math.max(baseW - baseW * zoom, tx));
    ty = Math.min(0, Math.max(baseH - baseH * zoom, ty));
  }
  function apply() {
    clamp();
    stage.style.transform = `translate(${tx}px, ${ty}px) scale(${zoom})`;
    stage.style.setProperty("--split", `${split.value}%`);
    const at = tx + (split.value / 100) * baseW * zoom;
    line.style.left = `${at}px`;
    placeLabels(at);
    zoomInput.value = zoom;
    zoomValue.textContent = `${+zoom.toFixed(2)}\u00d7`;
    view.classList.toggle("zoomed", zoom > 1);
    describe();
  }
  // "Before" ends just left of the split, "After" starts just right of it (the split kept within
  // the view); a side with no room in view for its label shows none.
  function placeLabels(at) {
    const roomBefore = Math.min(at, baseW);
    const roomAfter = baseW - Math.max(at, 0);
    const [wb, wa] = [labelBefore.offsetWidth, labelAfter.offsetWidth];
    labelBefore.style.visibility = roomBefore >= wb + 2 * LABEL_GAP ? "" : "hidden";
    labelAfter.style.visibility = roomAfter >= wa + 2 * LABEL_GAP ? "" : "hidden";
    labelBefore.style.left = `${roomBefore - LABEL_GAP - wb}px`;
    labelAfter.style.left = `${baseW - roomAfter + LABEL_GAP}px`;
  }
  function zoomAt(next, px, py) {
    next = Math.min(MAX_ZOOM, Math.max(1, next));
    tx = px - ((px - tx) * next) / zoom;
    ty = py - ((py - ty) * next) / zoom;
    zoom = next;
    apply();
  }
  function splitTo(clientX) {
    const box = view.getBoundingClientRect();
    const fraction = (clientX - box.left - tx) / (baseW * zoom);
    split.value = Math.round(Math.min(1, Math.max(0, fraction)) * 100);
    apply();
  }

  split.addEventListener("input", apply);
  zoomInput.addEventListener("input", () => zoomAt(Number(zoomInput.value), baseW / 2, baseH / 2));
  pixelView.addEventListener("change", () => view.classList.toggle("pixelated", pixelView.checked));
  card.querySelector(".fit").addEventListener("click", () => { zoom = 1; tx = 0; ty = 0; fit(); });
  window.addEventListener("resize", fit);

  // Pointers: one pointer moves the split (or pans with Shift, the middle button or Pan mode);
  // two pointers pinch-zoom around their midpoint.
  const pointers = new Map();
  let gesture = null;
  view.addEventListener("pointerdown", (event) => {
    pointers.set(event.pointerId, { x: event.clientX, y: event.clientY });
    view.focus({ preventScroll: true });
    if (pointers.size === 2) {
      const [a, b] = [...pointers.values()];
      gesture = { kind: "pinch", distance: Math.hypot(a.x - b.x, a.y - b.y), zoom };
      return;
    }
    // A finger that touches down may be starting a scroll (the browser keeps vertical swipes,
    // touch-action: pan-y): it moves the split only once it moves sideways, and the browser then
    // cancels it for a vertical swipe. A mouse or pen moves the split at once.
    const touch = event.pointerType === "touch";
    if (!touch) {
      view.setPointerCapture(event.pointerId);
      event.preventDefault();
    }
    const pan = panMode.checked || event.shiftKey || event.button === 1 || (touch && zoom > 1);
    gesture = pan ? { kind: "pan", x: event.clientX, y: event.clientY, tx, ty } :
      { kind: "split", x: event.clientX, y: event.clientY, moved: false };
    if (!pan && !touch) splitTo(event.clientX);
  });
  view.addEventListener("pointerleave", () => { if (!pointers.size) engaged = false; });
  view.addEventListener("blur", () => { engaged = false; });
  view.addEventListener("pointermove", (event) => {
    if (!pointers.has(event.pointerId) || !gesture) return;
    pointers.set(event.pointerId, { x: event.clientX, y: event.clientY });
    if (gesture.kind === "split") {
      gesture.moved ||= Math.abs(event.clientX - gesture.x) + Math.abs(event.clientY - gesture.y) > CLICK_SLOP;
      splitTo(event.clientX);
    }
    if (gesture.kind === "pan") {
      tx = gesture.tx + event.clientX - gesture.x;
      ty = gesture.ty + event.clientY - gesture.y;
      apply();
    }
    if (gesture.kind === "pinch" && pointers.size === 2) {
      const [a, b] = [...pointers.values()];
      const box = view.getBoundingClientRect();
      const ratio = Math.hypot(a.x - b.x, a.y - b.y) / (gesture.distance || 1);
      zoomAt(gesture.zoom * ratio, (a.x + b.x) / 2 - box.left, (a.y + b.y) / 2 - box.top);
    }
  });
  const release = (event) => {
    pointers.delete(event.pointerId);
    if (pointers.size === 0) gesture = null;
  };
  view.addEventListener("pointerup", (event) => {
    // A tap (a finger down and up without moving) jumps the split, as a click does.
    if (event.pointerType === "touch" && gesture?.kind === "split" && !gesture.moved) splitTo(event.clientX);
    // A click engages the plain wheel for zooming; a drag of the split leaves the wheel to the page.
    if (event.pointerType !== "touch" && gesture) engaged = !(gesture.kind === "split" && gesture.moved);
    release(event);
  });
  view.addEventListener("pointercancel", release);
  view.addEventListener("dragstart", (event) => event.preventDefault());
  view.addEventListener("wheel", (event) => {
    if (!event.ctrlKey && !engaged) return; // the page scrolls
    event.preventDefault();
    const box = view.getBoundingClientRect();
    zoomAt(zoom * Math.exp(-event.deltaY * 0.002), event.clientX - box.left, event.clientY - box.top);
  }, { passive: false });
  view.addEventListener("keydown", (event) => {
    const step = 40;
    const moves = { ArrowLeft: [step, 0], ArrowRight: [-step, 0], ArrowUp: [0, step], ArrowDown: [0, -step] };
    if (moves[event.key] && zoom > 1) {
      tx += moves[event.key][0];
      ty += moves[event.key][1];
      apply();
    } else if (event.key === "+" || event.key === "=") {
      zoomAt(zoom * 1.5, baseW / 2, baseH / 2);
    } else if (event.key === "-") {
      zoomAt(zoom / 1.5, baseW / 2, baseH / 2);
    } else {
      return;
    }
    event.preventDefault();
  });
  fit();
}
