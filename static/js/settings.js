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
const modelsMissing = document.getElementById("models-missing");
const SETTINGS_KEY = "remaster.settings";
const LOSSLESS = ["png", "bmp", "tiff"]; // formats without a quality setting

let models = [];
let routes = []; // {scale, anime, noise, model, error?} from /api/models, when the server lists them
let limits = {};
// The size typed for each kind: a factor never turns into a width (2.5 pixels) when the kind changes.
const sizeValues = { factor: "2.5", width: "", height: "" };
let sizeKindShown = "factor";
const TYPING_PAUSE_MS = 300; // a typed size is estimated once the typing pauses this long

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

// The models the server's route runs for (scale, content, noise), or null when it cannot say.
function routeChain(scale, isAnime, noise) {
  const row = routes.find((r) => String(r.scale) === String(scale) && r.anime === isAnime && r.noise === noise);
  return row && Array.isArray(row.chain) && row.chain.length ? row.chain.join(" + ") : null;
}

// The level before `noise` in the list whose route runs the very same models here (so choosing it
// changes nothing), or null.
function sameAsEarlier(scale, isAnime, noise) {
  const chain = routeChain(scale, isAnime, noise);
  const levels = [...noiseSelect.options].map((o) => o.value);
  return chain && levels.slice(0, levels.indexOf(noise)).find((l) => routeChain(scale, isAnime, l) === chain) || null;
}

// A model's title as the server lists it (its name until the list is in).
export const titleOf = (name) => models.find((m) => m.name === name)?.title || name;

// What the automatic choice does with this noise level here: why it cannot, or that it runs the same
// models as another level (and which checkpoints, not installed, would change that).
function autoNoiseNote(scale, isAnime, noise) {
  const problem = routeError(scale, isAnime, noise);
  if (problem) return problem;
  const same = sameAsEarlier(scale, isAnime, noise);
  if (!same) return "";
  const names = routeChain(scale, isAnime, noise).split(" + ");
  const plain = names.every((name) => models.find((m) => m.name === name)?.noise == null);
  const chain = `${names.map(titleOf).join(" then ")}${plain ? ", which reduces no noise" : ""}`;
  const missing = models.filter((m) => m.available === false && String(m.scale) === String(scale) && m.anime === isAnime);
  const add = missing.length ? ` Not installed here: ${missing.map((m) => m.title).join(", ")} (see below the model list).` : "";
  return `At ${scale}\u00d7 for ${isAnime ? "anime" : "photos"}, "${capital(noise)}" makes the same result as ` +
    `"${capital(same)}": both run ${chain}.${add}`;
}

// Noise levels the automatic choice cannot do at this scale and content say so in their option, as
// do those that make the same result as another level; a level a hand-picked model ignores is said
// under the list.
function describeNoise() {
  const { scale, noise } = options();
  const isAnime = anime.checked;
  const auto = modelSelect.value === "auto";
  for (const option of noiseSelect.options) {
    const problem = auto && routeError(scale, isAnime, option.value);
    const same = auto && !problem && sameAsEarlier(scale, isAnime, option.value);
    option.textContent = capital(option.value) +
      (problem ? ` (not at ${scale}\u00d7 for ${isAnime ? "anime" : "photos"})` : same ? ` (same as ${capital(same)} here)` : "");
  }
  const m = models.find((x) => x.name === modelSelect.value);
  if (!auto && m && m.noise == null && noise !== "none") {
    noiseNote.textContent = `${m.title} has no noise reduction: "${capital(noise)}" is ignored with it.`;
  } else {
    noiseNote.textContent = auto ? autoNoiseNote(scale, isAnime, noise) : "";
  }
  // A preset the server cannot make is offered disabled, with the reason as its description.
  for (const button of presets.querySelectorAll("button")) {
    const problem = routeError(button.dataset.scale, button.dataset.anime === "true", button.dataset.noise);
    button.disabled = Boolean(problem);
    button.title = problem;
  }
}

// The other size's field follows its kind: a factor within the server's scale limits, or pixels;
// each kind keeps its own value (the factor's 2.5 is no width).
function showSize() {
  const other = form.querySelector('input[name="scale"][value="other"]').checked;
  otherSize.hidden = !other;
  if (sizeKind.value !== sizeKindShown) {
    sizeValues[sizeKindShown] = sizeValue.value;
    sizeKindShown = sizeKind.value;
    sizeValue.value = sizeValues[sizeKindShown] ?? "";
  }
  const factor = sizeKind.value === "factor";
  sizeValue.placeholder = factor ? "2.5" : sizeKind.value === "width" ? "e.g. 1920" : "e.g. 1080";
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

// The switches (Best quality, faces) are not remembered: each costs time, and a box ticked on an
// earlier visit would slow every job without a word.
function save() {
  const { tta: _t, faces: _f, ...chosen } = options();
  sizeValues[sizeKind.value] = sizeValue.value;
  const remembered = { ...chosen, size_kind: sizeKind.value, size_value: sizeValue.value, size_values: sizeValues };
  try { localStorage.setItem(SETTINGS_KEY, JSON.stringify(remembered)); } catch { /* private mode: no memory */ }
}

function saved() {
  try { return JSON.parse(localStorage.getItem(SETTINGS_KEY)) || {}; } catch { return {}; }
}

// Put remembered or preset values into the form; values the form does not offer are left as they are.
function apply(values) {
  if (values.size_kind != null) {
    Object.assign(sizeValues, values.size_values || {});
    sizeKind.value = values.size_kind;
    sizeKindShown = sizeKind.value;
    sizeValue.value = values.size_value;
  }
  const quick = values.scale != null &&
    form.querySelector(`input[name="scale"][value="${CSS.escape(String(values.scale))}"]`);
  if (quick) quick.checked = true;
  else if (values.scale != null || values.width != null || values.height != null) {
    form.querySelector('input[name="scale"][value="other"]').checked = true;
  }
  if (values.keep_gps != null) keepGps.checked = values.keep_gps === "true";
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

// The switches the server offers, each a checkbox named by its form field; one it cannot run here
// is shown off, described by what to add to run it.
function showSwitches(offered) {
  const chosen = switches();
  const rows = offered.filter((o) => o.name && o.label).flatMap((o) => {
    const label = document.createElement("label");
    label.className = "pill";
    label.title = o.note || "";
    const off = o.available === false;
    const box = Object.assign(document.createElement("input"), { type: "checkbox", name: o.name, id: `option-${o.name}`,
      value: "true", checked: !off && chosen[o.name] === "true", disabled: off });
    label.append(box, ` ${o.label}`);
    if (!off) return [label];
    const why = Object.assign(document.createElement("span"),
      { className: "hint switch-note", id: `option-${o.name}-note`, textContent: o.unavailable_reason || "" });
    box.setAttribute("aria-describedby", why.id);
    return [label, why];
  });
  extras.replaceChildren(extras.querySelector("legend"), ...rows);
  extras.hidden = !rows.length;
}

// The listed models that are not installed here, each with how to add it (an administrator's step).
function showMissing() {
  const missing = models.filter((m) => m.available === false && m.how_to_add);
  modelsMissing.replaceChildren(...missing.map((m) =>
    Object.assign(document.createElement("span"), { textContent: `${m.title} is not installed: ${m.how_to_add}.` })));
  modelsMissing.hidden = !missing.length;
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
  showMissing();
  modelSelect.value = [...modelSelect.options].some((o) => o.value === current && !o.disabled) ? current : "auto";
  if (Array.isArray(body.noise_levels) && body.noise_levels.length) {
    const chosen = saved().noise || noiseSelect.value;
    noiseSelect.replaceChildren(...body.noise_levels.map((n) => new Option(capital(n), n)));
    noiseSelect.value = body.noise_levels.includes(chosen) ? chosen : body.noise_levels[0];
  }
  describeModel();
  describeNoise();
}

// Changes to an option are remembered and call `onChange` (estimates follow the options); a size
// being typed calls `onTyping` at each key and `onChange` once the typing pauses.
export function watchSettings(onChange, onTyping) {
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
  let typing = null;
  sizeValue.addEventListener("input", () => {
    onTyping();
    clearTimeout(typing);
    typing = setTimeout(() => { save(); onChange(); }, TYPING_PAUSE_MS);
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
