// The options a person picks (scale, content, noise, model, format, quality): read from the form, and
// the model and noise lists as the server lists them (contract C3, degrading while fields are missing).

import { fetchModels } from "./api.js";

const form = document.getElementById("upscale-form");
const modelSelect = document.getElementById("model");
const modelNote = document.getElementById("model-note");
const noiseSelect = document.getElementById("noise");
const format = document.getElementById("format");
const quality = document.getElementById("quality");
const qualityValue = document.getElementById("quality-value");

let models = [];

export function options() {
  const data = new FormData(form);
  return {
    scale: data.get("scale"),
    anime: document.getElementById("anime").checked ? "true" : "false",
    noise: data.get("noise") || "none",
    model: data.get("model") || "auto",
    format: data.get("format") || "png",
    quality: data.get("quality") || "92",
  };
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

export async function loadModels() {
  const body = await fetchModels();
  if (!body) return;
  models = body.models || [];
  if (body.limits) form.dataset.maxOutputPixels = body.limits.max_output_pixels;
  const current = modelSelect.value;
  const auto = new Option("Automatic (best for the scale, content and noise)", "auto");
  const groups = new Map();
  for (const m of models) {
    const family = m.family || "Models";
    if (!groups.has(family)) {
      const group = document.createElement("optgroup");
      group.label = family;
      groups.set(family, group);
    }
    const native = m.native_scale || m.scale;
    const note = m.note ? ` \u2013 ${m.note}` : "";
    const option = new Option(`${m.title} (native ${native}\u00d7)${note}`, m.name);
    if (m.available === false) {
      option.disabled = true;
      option.textContent += " (not installed)";
    }
    groups.get(family).append(option);
  }
  modelSelect.replaceChildren(auto, ...groups.values());
  modelSelect.value = [...modelSelect.options].some((o) => o.value === current && !o.disabled) ? current : "auto";
  if (Array.isArray(body.noise_levels) && body.noise_levels.length) {
    const chosen = noiseSelect.value;
    noiseSelect.replaceChildren(...body.noise_levels.map((n) => new Option(n[0].toUpperCase() + n.slice(1), n)));
    noiseSelect.value = body.noise_levels.includes(chosen) ? chosen : body.noise_levels[0];
  }
  describeModel();
}

// Changes to an option call `onChange` (estimates follow the options).
export function watchSettings(onChange) {
  modelSelect.addEventListener("change", describeModel);
  format.addEventListener("change", () => { quality.disabled = format.value === "png"; });
  quality.addEventListener("input", () => { qualityValue.textContent = quality.value; });
  form.addEventListener("change", (event) => {
    if (event.target.id !== "file") onChange();
  });
}
