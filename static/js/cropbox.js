// The region box of "Compare models": a box over the chosen image, in the image's own pixels, that
// the pointer moves (drag it), resizes (drag its corner) or draws anew (drag across the image), and
// the keyboard moves (arrow keys) and resizes (Shift with the arrow keys). It is a slider whose value
// says the region in words, so a screen reader hears where it is after each key; it never leaves the
// image and never holds more pixels than the server compares.

const MIN_SIDE = 8; // pixels a side of the region keeps (less when the image is smaller)
const KEY_STEPS = 50; // a key moves the box by this share of the image's shorter side (at least 1 px)

export function regionWords({ x, y, width, height }) {
  return `${width} by ${height} pixels, ${x} from the left and ${y} from the top`;
}

export function cropBox({ stage, image, box, words }) {
  let size = { width: 1, height: 1 };
  let maxPixels = Infinity;
  let region = { x: 0, y: 0, width: 1, height: 1 };
  let drag = null; // {mode: "move" | "resize" | "draw", from: {x, y}, start: region}

  const minSide = (side) => Math.min(MIN_SIDE, side);

  // The region inside the image, each side at least MIN_SIDE, at most maxPixels in all (shrunk in
  // proportion, its top left corner kept).
  function fitted({ x, y, width, height }) {
    width = Math.round(Math.min(size.width, Math.max(minSide(size.width), width)));
    height = Math.round(Math.min(size.height, Math.max(minSide(size.height), height)));
    if (width * height > maxPixels) {
      const shrink = Math.sqrt(maxPixels / (width * height));
      width = Math.max(minSide(size.width), Math.floor(width * shrink));
      height = Math.max(minSide(size.height), Math.floor(maxPixels / width));
    }
    x = Math.round(Math.min(size.width - width, Math.max(0, x)));
    y = Math.round(Math.min(size.height - height, Math.max(0, y)));
    return { x, y, width, height };
  }

  function show() {
    const percent = (value, whole) => `${(100 * value) / whole}%`;
    box.style.left = percent(region.x, size.width);
    box.style.top = percent(region.y, size.height);
    box.style.width = percent(region.width, size.width);
    box.style.height = percent(region.height, size.height);
    const text = regionWords(region);
    box.setAttribute("aria-valuemin", "0");
    box.setAttribute("aria-valuemax", String(size.width - region.width));
    box.setAttribute("aria-valuenow", String(region.x));
    box.setAttribute("aria-valuetext", text);
    words.textContent = `Region: ${text} of the ${size.width} \u00d7 ${size.height} image.`;
  }

  function set(next) {
    region = fitted(next);
    show();
  }

  // The pointer's place in image pixels, kept on the image.
  function at(event) {
    const rect = image.getBoundingClientRect();
    const inside = (value, whole) => Math.min(whole, Math.max(0, value));
    return { x: inside(((event.clientX - rect.left) * size.width) / rect.width, size.width),
             y: inside(((event.clientY - rect.top) * size.height) / rect.height, size.height) };
  }

  stage.addEventListener("pointerdown", (event) => {
    if (event.button !== 0) return;
    event.preventDefault();
    const mode = event.target.classList.contains("crop-handle") ? "resize" : event.target === box ? "move" : "draw";
    drag = { mode, from: at(event), start: { ...region } };
    stage.setPointerCapture(event.pointerId);
    box.focus({ preventScroll: true });
    if (mode === "draw") set({ x: drag.from.x, y: drag.from.y, width: 0, height: 0 });
  });
  stage.addEventListener("pointermove", (event) => {
    if (!drag) return;
    const now = at(event);
    const { start, from } = drag;
    if (drag.mode === "move") {
      set({ ...start, x: start.x + now.x - from.x, y: start.y + now.y - from.y });
    } else if (drag.mode === "resize") {
      set({ ...start, width: now.x - start.x, height: now.y - start.y });
    } else {
      set({ x: Math.min(from.x, now.x), y: Math.min(from.y, now.y), width: Math.abs(now.x - from.x),
            height: Math.abs(now.y - from.y) });
    }
  });
  const end = () => { drag = null; };
  stage.addEventListener("pointerup", end);
  stage.addEventListener("pointercancel", end);

  box.addEventListener("keydown", (event) => {
    const step = Math.max(1, Math.round(Math.min(size.width, size.height) / KEY_STEPS));
    const moves = { ArrowLeft: [-step, 0], ArrowRight: [step, 0], ArrowUp: [0, -step], ArrowDown: [0, step] };
    const move = moves[event.key];
    if (!move) return;
    event.preventDefault();
    const [dx, dy] = move;
    if (event.shiftKey) set({ ...region, width: region.width + dx, height: region.height + dy });
    else set({ ...region, x: region.x + dx, y: region.y + dy });
  });

  return {
    // A new image (its size in pixels) and the most pixels a region may hold; the region as given.
    reset(width, height, limit, next) {
      size = { width, height };
      maxPixels = limit || Infinity;
      set(next);
    },
    set,
    get region() { return { ...region }; },
  };
}
