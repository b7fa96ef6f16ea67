// The options a person picks (scale or other size, content, noise, model, format, quality, keep GPS,
// and the switches the server offers: TTA, faces): read from the form, remembered across reloads,
// set at once by a preset; the model and noise lists and the switches as the server lists them
// (contract C3, degrading while fields are missing), with the choices its routes say cannot work
// marked with the reason.

import { fetchModels } from "./api.js";

const form = document.getElementById("upscale-form");
const anime = document.getElementById("anime");
const modelSelect = document.getElementById("model");
const modelNote = document.getElementById("model-note");
const noiseSelect = document.getElementById("noise");
const noiseNote = document.getElementById("noise-note");
const format = document.getElementById("format");
const quality = document.getElementById("quality");
const qualityField = document.getElementById("quality-field");
const qualityValue = document.getElementById("quality-value");
const presets = document.getElementById("presets");
const otherSize = document.getElementById("other-size");
const sizeKind = document.getElementById("size-kind");
const sizeValue = document.getElementById("size-value");
const sizeNote = document.getElementById("size-note");
const keepGps = document.getElementById("keep-gps");
const extras = document.getElementById("extra-options"); // the server's switches ("options" in C3)
const SETTINGS_KEY = "remaster.settings";
const LOSSLESS = ["png", "bmp", "tiff"]; // formats without a quality setting

let models = [];
let routes = []; // {scale, anime, noise, model, error?} from /api/models, when the server lists them
let limits = {};

// The result's size as the server takes it: exactly one of `scale`, `width` or `height` ("Other
// size" gives a factor or a side in pixels, the aspect kept).
function size(data) {
  if (data.get("scale") !== "other") return { scale: data.get("scale") };
  const value = sizeValue.value.trim();
  return sizeKind.value === "factor" ? { scale: value } : { [sizeKind.value]: value };
}

// Each switch the server offers, as a form field: "true" or "false".
function switches() {
  const boxes = extras.querySelectorAll('input[type="checkbox"]');
  return Object.fromEntries([...boxes].map((box) => [box.name, box.checked ? "true" : "false"]));
}

export function options() {
  const data = new FormData(form);
  return {
    ...switches(),
    ...size(data),
    keep_gps: keepGps.checked ? "true" : "false",
    anime: anime.checked ? "true" : "false",
    noise: data.get("noise") || "none",
    model: data.get("model") || "auto",
    format: data.get("format") || "png",
    quality: data.get("quality") || "92",
  };
}

// The server's limits (bytes, pixels, types), as /api/models says them once loaded.
export const serverLimits = () => limits;

const capital = (word) => word[0].toUpperCase() + word.slice(1);

// Why the server's routes say (scale, content, noise) cannot be made, or "" when it can or is unknown.
function routeError(scale, isAnime, noise) {
  const row = routes.find((r) => String(r.scale) === String(scale) && r.anime === isAnime && r.noise === noise);
  return row && row.error ? row.error : "";
}

function describeModel() {
  const m = models.find((x) => x.name === modelSelect.value);
  if (!m) {
    modelNote.textContent = "Picks the model for the scale, content and noise reduction you chose.";
    return;
  }
  const noise = m.noise == null ? "" : ` Noise reduction: ${m.noise}.`;
  modelNote.textContent = `${m.note || m.title}${noise}`;
}

// Noise levels the automatic choice cannot do at this scale and content say so in their option; a
// level a hand-picked model ignores is said under the list.
function describeNoise() {
  const { scale, noise } = options();
  const isAnime = anime.checked;
  const auto = modelSelect.value === "auto";
  for (const option of noiseSelect.options) {
    const problem = auto && routeError(scale, isAnime, option.value);
    option.textContent = capital(option.value) + (problem ? ` (not at ${scale}\u00d7 for ${isAnime ? "anime" : "photos"})` : "");
  }
  const m = models.find((x) => x.name === modelSelect.value);
  if (!auto && m && m.noise == null && noise !== "none") {
    noiseNote.textContent = `${m.title} has no noise reduction: "${capital(noise)}" is ignored with it.`;
  } else {
    noiseNote.textContent = auto && routeError(scale, isAnime, noise) ? routeError(scale, isAnime, noise) : "";
  }
  // A preset the server cannot make is offered disabled, with the reason as its description.
  for (const button of presets.querySelectorAll("button")) {
    const problem = routeError(button.dataset.scale, button.dataset.anime === "true", button.dataset.noise);
    button.disabled = Boolean(problem);
    button.title = problem;
  }
}

// The other size's field follows its kind: a factor within the server's scale limits, or pixels.
function showSize() {
  const other = form.querySelector('input[name="scale"][value="other"]').checked;
  otherSize.hidden = !other;
  const factor = sizeKind.value === "factor";
  sizeValue.min = factor ? String(limits.min_scale || 1) : "1";
  sizeValue.max = factor ? String(limits.max_scale || 8) : "";
  sizeValue.step = factor ? "any" : "1";
  sizeNote.textContent = factor ? `A factor from ${sizeValue.min} to ${sizeValue.max}, e.g. 2.5.` :
    `The result's ${sizeKind.value} in pixels; the aspect ratio is kept.`;
}

function showQuality() {
  qualityField.hidden = LOSSLESS.includes(format.value);
  qualityValue.textContent = quality.value;
}

function save() {
  const remembered = { ...options(), size_kind: sizeKind.value, size_value: sizeValue.value };
  try { localStorage.setItem(SETTINGS_KEY, JSON.stringify(remembered)); } catch { /* private mode: no memory */ }
}

function saved() {
  try { return JSON.parse(localStorage.getItem(SETTINGS_KEY)) || {}; } catch { return {}; }
}

// Put remembered or preset values into the form; values the form does not offer are left as they are.
function apply(values) {
  if (values.size_kind != null) {
    sizeKind.value = values.size_kind;
    sizeValue.value = values.size_value;
  }
  const quick = values.scale != null &&
    form.querySelector(`input[name="scale"][value="${CSS.escape(String(values.scale))}"]`);
  if (quick) quick.checked = true;
  else if (values.scale != null || values.width != null || values.height != null) {
    form.querySelector('input[name="scale"][value="other"]').checked = true;
  }
  if (values.keep_gps != null) keepGps.checked = values.keep_gps === "true";
  for (const box of extras.querySelectorAll('input[type="checkbox"]')) {
    if (values[box.name] != null) box.checked = values[box.name] === "true";
  }
  if (values.anime != null) anime.checked = values.anime === true || values.anime === "true";
  for (const [select, value] of [[noiseSelect, values.noise], [modelSelect, values.model], [format, values.format]]) {
    if (value != null && [...select.options].some((o) => o.value === value && !o.disabled)) select.value = value;
  }
  if (values.quality != null) quality.value = values.quality;
  showSize();
  showQuality();
  describeModel();
  describeNoise();
}

// The switches the server can run here, each a checkbox named by its form field; those it cannot
// run are not offered.
function showSwitches(offered) {
  const chosen = { ...saved(), ...switches() };
  const boxes = offered.filter((o) => o.available !== false && o.name && o.label).map((o) => {
    const label = document.createElement("label");
    label.className = "pill";
    label.title = o.note || "";
    const box = Object.assign(document.createElement("input"),
      { type: "checkbox", name: o.name, id: `option-${o.name}`, value: "true", checked: chosen[o.name] === "true" });
    label.append(box, ` ${o.label}`);
    return label;
  });
  extras.replaceChildren(extras.querySelector("legend"), ...boxes);
  extras.hidden = !boxes.length;
}

export async function loadModels() {
  const body = await fetchModels();
  if (!body) return;
  models = body.models || [];
  routes = Array.isArray(body.routes) ? body.routes : [];
  if (Array.isArray(body.options)) showSwitches(body.options);
  limits = body.limits || {};
  showSize();
  if (body.limits) form.dataset.maxOutputPixels = body.limits.max_output_pixels;
  const current = saved().model || modelSelect.value;
  const auto = new Option("Automatic", "auto");
  const groups = new Map();
  for (const m of models) {
    const family = m.family || "Models";
    if (!groups.has(family)) {
      const group = document.createElement("optgroup");
      group.label = family;
      groups.set(family, group);
    }
    const native = m.native_scale || m.scale;
    const option = new Option(`${m.title} (native ${native}\u00d7)`, m.name);
    if (m.available === false) {
      option.disabled = true;
      option.textContent += " (not installed)";
    }
    groups.get(family).append(option);
  }
  modelSelect.replaceChildren(auto, ...groups.values());
  modelSelect.value = [...modelSelect.options].some((o) => o.value === current && !o.disabled) ? current : "auto";
  if (Array.isArray(body.noise_levels) && body.noise_levels.length) {
    const chosen = saved().noise || noiseSelect.value;
    noiseSelect.replaceChildren(...body.noise_levels.map((n) => new Option(capital(n), n)));
    noiseSelect.value = body.noise_levels.includes(chosen) ? chosen : body.noise_levels[0];
  }
  describeModel();
  describeNoise();
}

// Changes to an option are remembered and call `onChange` (estimates follow the options).
export function watchSettings(onChange) {
  apply(saved());
  modelSelect.addEventListener("change", describeModel);
  format.addEventListener("change", showQuality);
  // Enter in the size field takes the size (its estimate follows) instead of sending the files
  // with the estimate of the size before.
  sizeValue.addEventListener("keydown", (event) => {
    if (event.key !== "Enter") return;
    event.preventDefault();
    sizeValue.dispatchEvent(new Event("change", { bubbles: true }));
  });
  quality.addEventListener("input", () => { qualityValue.textContent = quality.value; });
  form.addEventListener("change", (event) => {
    if (event.target.id === "file") return;
    showSize();
    describeNoise();
    save();
    onChange();
  });
  presets.addEventListener("click", (event) => {
    const button = event.target.closest("button");
    if (!button) return;
    apply({ scale: button.dataset.scale, anime: button.dataset.anime, noise: button.dataset.noise, model: "auto" });
    save();
    onChange();
  });
}
