// "Compare models": the one chosen image with a region box (the server proposes its most detailed
// region; cropbox.js moves it), the models to try (the server's proposal for the options chosen),
// then each model's result on the region side by side at one zoom, pixels as they are, with the
// region's time and the estimate for the whole image, and a button that upscales the whole image with
// that model (its job card then follows it as for Upscale). The server runs a comparison as a job: it
// answers with the candidates (200), or with the job (202), which is polled until they are in.

import { call, sleep } from "./api.js";
import { cropBox } from "./cropbox.js";
import { choosing, oneImage } from "./files.js";
import { options } from "./settings.js";
import { formatSeconds, plural } from "./words.js";

const form = document.getElementById("upscale-form");
const fileInput = document.getElementById("file");
const opener = document.getElementById("compare-open");
const panel = document.getElementById("compare-panel");
const heading = document.getElementById("compare-title");
const image = document.getElementById("crop-image");
const modelsBox = document.getElementById("compare-models");
const run = document.getElementById("compare-run");
const closer = document.getElementById("compare-close");
const status = document.getElementById("compare-status");
const view = document.getElementById("candidates-view");
const list = document.getElementById("candidates");
const zoom = document.getElementById("candidates-zoom");
const zoomValue = document.getElementById("candidates-zoom-value");
const POLL_MS = 500;
const SHOWN_SIDE = 480; // CSS pixels the chosen image is shown at, at most (a small one enlarged, pixels kept)
const SHOWN_WIDTH = 240; // CSS pixels wide a candidate is shown at first, about (a whole zoom step)
const GAP = 16; // CSS pixels between panels (style.css .candidates)
const MAX_ZOOM = 8;

const box = cropBox({ stage: document.getElementById("crop-stage"), image, box: document.getElementById("crop-box"),
                      words: document.getElementById("crop-words") });
let entry = null; // the chosen image being compared: {file, width, height}
let imageUrl = null;
let proposals = 0; // a newer proposal makes the answers of older ones stale
let comparisons = 0; // likewise for comparisons (new options make the one running stale too)
let running = false; // a comparison is under way (`busy`)

function tell(text, isError = false) {
  status.textContent = text;
  status.classList.toggle("error", isError);
}

// The image and the options chosen in the form, with `fields` (crop, models).
function upload(fields) {
  const body = new FormData();
  body.append("file", entry.file, entry.file.name);
  Object.entries({ ...options(), ...fields }).forEach(([key, value]) => body.append(key, value));
  return body;
}

async function json(response) {
  try { return await response.json(); } catch { return {}; }
}

// What went wrong, in words: the server's reason, or that it is busy or away.
function problem(response, data) {
  if (response.status === 503) {
    return `The server is busy; try again in ${formatSeconds(Number(response.headers.get("Retry-After")) || 5)}.`;
  }
  return data.error || response.statusText;
}

// The models the server would try, as checkboxes, all checked.
function showModels(models) {
  const rows = models.map((m) => {
    const label = document.createElement("label");
    label.className = "pill";
    label.title = m.note || "";
    const box = Object.assign(document.createElement("input"), { type: "checkbox", value: m.model, checked: true });
    label.append(box, ` ${m.title}`);
    return label;
  });
  modelsBox.replaceChildren(modelsBox.querySelector("legend"), ...rows);
}

const modelsChosen = () => [...modelsBox.querySelectorAll("input:checked")].map((input) => input.value);

// The server's proposal for the options now: its region (unless the person's is kept) and its models.
async function propose(keepRegion) {
  const mine = ++proposals;
  let response;
  let data;
  try {
    response = await call("/api/compare/proposal", { method: "POST", body: upload({}) });
    data = await json(response);
  } catch (error) {
    if (mine === proposals) tell(`No region could be proposed: ${error.message}.`, true);
    return;
  }
  if (mine !== proposals || !entry) return;
  if (!response.ok) {
    tell(problem(response, data), true);
    return;
  }
  box.reset(data.image_width, data.image_height, data.max_crop_pixels, keepRegion ? box.region : data.crop);
  showModels(data.models);
  run.disabled = false;
  tell(keepRegion ? `Options changed: ${plural(data.models.length, "model")} to try; press Compare.` :
    "The box shows the most detailed region: move it, or press Compare.");
}

// While a comparison runs, Compare says it is off (aria-disabled: a disabled button would drop the
// keyboard's focus) and the candidates' list is busy; the status line says what happens.
function busy(on) {
  running = on;
  run.setAttribute("aria-disabled", String(on));
  list.setAttribute("aria-busy", String(on));
}

// The job of a comparison that takes longer than one request, polled until it ends: its result.
async function finished(job, mine) {
  while (mine === comparisons) {
    await sleep(POLL_MS);
    let response;
    try {
      response = await call(job.status_url);
    } catch {
      continue; // the banner says the server is away; carry on when it is back
    }
    job = await json(response);
    if (!response.ok) throw new Error(problem(response, job));
    if (job.status === "done") return job.result;
    if (["failed", "cancelled"].includes(job.status)) throw new Error(job.error || job.status);
    const { done, total } = job.progress || {};
    if (job.status === "running" && total) tell(`Trying the models on the region: ${done} of ${total} done\u2026`);
  }
  return null;
}

async function compare() {
  if (running || run.disabled) return;
  const models = modelsChosen();
  if (!models.length) {
    tell("Choose at least one model to try.", true);
    return;
  }
  const mine = ++comparisons;
  const { x, y, width, height } = box.region;
  busy(true);
  view.hidden = true;
  tell(`Trying ${plural(models.length, "model")} on the region\u2026`);
  try {
    const response = await call("/api/compare", {
      method: "POST", body: upload({ crop: `${x},${y},${width},${height}`, models: models.join(",") }) });
    const data = await json(response);
    if (!response.ok) throw new Error(problem(response, data));
    const result = response.status === 202 ? await finished(data, mine) : data;
    if (mine === comparisons && result) showCandidates(result);
  } catch (error) {
    if (mine === comparisons) tell(`The comparison failed: ${error.message}`, true);
  } finally {
    if (mine === comparisons) busy(false);
  }
}

// Seconds a region took, to a tenth when short (the whole image's estimate says whole seconds).
const regionSeconds = (s) => (s < 10 ? `${Math.max(0.1, s).toFixed(1)} s` : formatSeconds(s));

// Every candidate at one zoom: the size of a candidate times the zoom, in CSS pixels.
function applyZoom() {
  list.style.setProperty("--zoom", zoom.value);
  zoomValue.textContent = `${zoom.value}\u00d7`;
}

// The original region at the candidates' size, each pixel a block (no smoothing), for reference.
function originalItem(crop, width, height) {
  const canvas = Object.assign(document.createElement("canvas"), { width, height });
  const context = canvas.getContext("2d");
  context.imageSmoothingEnabled = false;
  context.drawImage(image, crop.x, crop.y, crop.width, crop.height, 0, 0, width, height);
  canvas.setAttribute("role", "img");
  canvas.setAttribute("aria-label", "The original region, enlarged without smoothing");
  return item(canvas, width, "Original", `${crop.width} \u00d7 ${crop.height} pixels of the image`, "", null);
}

function candidateItem(candidate, width, height) {
  const picture = Object.assign(document.createElement("img"), {
    src: candidate.image_url, width, height, alt: `${candidate.title}: the region upscaled` });
  const times = `This region: ${regionSeconds(candidate.crop_seconds)}; ` +
    `the whole image: about ${formatSeconds(candidate.full_seconds)}`;
  const button = Object.assign(document.createElement("button"), {
    type: "button", className: "primary", textContent: `Upscale with ${candidate.title}` });
  button.addEventListener("click", () => {
    if (entry.checking) { // its estimate for new options is on its way: Upscale would wait, then use the form's model
      tell("The image is being checked for the options chosen; press it again in a moment.", true);
      return;
    }
    close();
    upscaleWith(candidate.model);
  });
  return item(picture, width, candidate.title, times, candidate.note, button);
}

// One panel: the picture (`width` pixels wide before the zoom), its title, its times and note, its button.
function item(picture, width, title, times, note, button) {
  const li = document.createElement("li");
  li.className = "candidate";
  li.style.setProperty("--w", String(width));
  const figure = document.createElement("figure");
  const caption = document.createElement("figcaption");
  caption.append(...[["strong", title], ["span", times], ["span", note]].filter(([, text]) => text)
    .map(([tag, text]) => Object.assign(document.createElement(tag), { textContent: text })));
  figure.append(picture, caption);
  li.append(figure);
  if (button) li.append(button);
  return li;
}

// The first zoom: all `count` panels of `width` pixels in one row of the list if that leaves each
// about SHOWN_WIDTH or more, else about SHOWN_WIDTH each (rows wrap), never wider than the list.
function firstZoom(count, width) {
  const oneRow = Math.floor((list.clientWidth - GAP * (count - 1)) / count / width);
  const readable = Math.min(Math.round(SHOWN_WIDTH / width), Math.floor(list.clientWidth / width));
  return Math.min(MAX_ZOOM, Math.max(1, oneRow, readable));
}

function showCandidates(result) {
  const { crop, output_width: width, output_height: height, candidates } = result;
  list.replaceChildren(originalItem(crop, width, height), ...candidates.map((c) => candidateItem(c, width, height)));
  view.hidden = false;
  zoom.value = String(firstZoom(candidates.length + 1, width));
  applyZoom();
  tell(`${plural(candidates.length, "candidate")} side by side, ${width} \u00d7 ${height} each; ` +
    "each one's button upscales the whole image with it.");
}

let upscaleWith = () => {};

function openPanel() {
  entry = oneImage();
  if (!entry) return;
  if (imageUrl) URL.revokeObjectURL(imageUrl);
  imageUrl = URL.createObjectURL(entry.file);
  image.src = imageUrl;
  image.alt = `${entry.file.name}, with the region box over it`;
  const fit = Math.max(1, Math.floor(Math.min(SHOWN_SIDE / entry.width, SHOWN_SIDE / entry.height)));
  image.style.width = `${entry.width * fit}px`;
  image.classList.toggle("pixelated", fit > 1);
  const { width, height } = entry;
  box.reset(width, height, 0, { x: width / 4, y: height / 4, width: width / 2, height: height / 2 });
  modelsBox.replaceChildren(modelsBox.querySelector("legend"));
  view.hidden = true;
  list.replaceChildren();
  comparisons++;
  busy(false);
  run.disabled = true; // until the models to try are in
  panel.hidden = false;
  tell("Looking for the most detailed region\u2026");
  heading.focus();
  propose(false);
}

// Close the panel; `returnFocus`: to the button that opened it.
function close(returnFocus = false) {
  if (panel.hidden) return;
  panel.hidden = true;
  proposals++;
  comparisons++;
  entry = null;
  if (imageUrl) URL.revokeObjectURL(imageUrl);
  imageUrl = null;
  if (returnFocus) opener.focus();
}

// `send(model)` upscales the chosen image with `model`, as Upscale does with the options chosen.
export function watchCompare(send) {
  upscaleWith = send;
  choosing.addEventListener("change", () => {
    const now = oneImage();
    opener.disabled = !now;
    if (entry && now?.file !== entry.file) close();
  });
  opener.addEventListener("click", openPanel);
  closer.addEventListener("click", () => close(true));
  panel.addEventListener("keydown", (event) => {
    if (event.key === "Escape") close(true);
  });
  run.addEventListener("click", compare);
  zoom.addEventListener("input", applyZoom);
  form.addEventListener("change", (event) => {
    if (!entry || event.target === fileInput) return;
    comparisons++; // candidates of other options are no guide to these
    busy(false);
    run.disabled = true; // until the models for these options are in
    view.hidden = true;
    propose(true);
  });
}
