// The chosen files before they are sent: choose, drop or paste; each file's output size, time and
// known problems (asked of the server), with the fix that really works; the Upscale button's state.

import { fetchEstimate } from "./api.js";
import { options } from "./settings.js";
import { article, formatSeconds, plural, say } from "./words.js";

const form = document.getElementById("upscale-form");
const input = document.getElementById("file");
const dropzone = document.getElementById("dropzone");
const selected = document.getElementById("selected");
const submit = document.getElementById("submit");
const SCALES = [2, 4, 8];

let files = []; // {file, li, width, height, errors}
let sending = false;
let estimateRound = 0; // a newer round makes the answers of older ones stale

const imageSize = (file) => new Promise((resolve) => {
  const url = URL.createObjectURL(file);
  const img = new Image();
  img.onload = () => resolve({ url, width: img.naturalWidth, height: img.naturalHeight });
  img.onerror = () => resolve({ url: null, width: 0, height: 0 });
  img.src = url;
});

// The fix that really works for a file the server already refuses, found by asking the server
// about the other choices (never "choose a smaller scale" when no scale would help).
async function findFix(entry, opts) {
  const maxInput = Number(form.dataset.maxInputPixels);
  if (maxInput && entry.width * entry.height > maxInput) {
    return `Shrink or crop it below ${(maxInput / 1e6).toFixed(1)} MP before uploading.`;
  }
  const scales = [];
  for (const scale of SCALES.filter((s) => String(s) !== String(opts.scale))) {
    const body = await fetchEstimate(entry.width, entry.height, { ...opts, scale });
    if (!body.errors.length) scales.push(scale);
  }
  if (scales.length) return `Choose ${article(scales[0])} ${scales.map((s) => `${s}\u00d7`).join(" or ")} scale instead.`;
  if (opts.format !== "png") {
    const body = await fetchEstimate(entry.width, entry.height, { ...opts, format: "png" });
    if (!body.errors.length) return "Choose PNG as the output format instead.";
  }
  return "No scale or format fits this image: crop or shrink it first.";
}

export async function refreshEstimates() {
  const round = ++estimateRound;
  const opts = options();
  for (const entry of files) {
    const note = entry.li.querySelector(".estimate");
    const fix = entry.li.querySelector(".fix");
    entry.errors = [];
    fix.textContent = "";
    if (!entry.width) {
      note.textContent = "the browser cannot preview this file; the server will check it";
      continue;
    }
    try {
      const body = await fetchEstimate(entry.width, entry.height, opts);
      if (round !== estimateRound) return;
      entry.errors = body.errors || [];
      const size = `${entry.width}\u00d7${entry.height} \u2192 ${body.output_width}\u00d7${body.output_height}`;
      note.textContent = entry.errors.length ? `${size}: ${entry.errors.join("; ")}` :
        `${size}, about ${formatSeconds(body.seconds)}`;
      note.classList.toggle("warn", entry.errors.length > 0);
      if (entry.errors.length) {
        const text = await findFix(entry, opts);
        if (round !== estimateRound) return;
        fix.textContent = text;
      }
    } catch (error) {
      if (round !== estimateRound) return;
      note.textContent = `estimate unavailable: ${error.message}`;
    }
  }
  updateSubmit();
}

function updateSubmit() {
  const failing = files.filter((e) => e.errors && e.errors.length);
  submit.disabled = sending || files.length === 0 || failing.length > 0;
  if (!files.length) return;
  if (failing.length) {
    say(`${plural(failing.length, "file")} cannot be upscaled as chosen: see the fix next to ${failing.length === 1 ? "it" : "each"}, or remove ${failing.length === 1 ? "it" : "them"}.`, true);
  } else {
    say(`${plural(files.length, "file")} ready`);
  }
}

async function choose(list) {
  files = [];
  selected.replaceChildren();
  for (const file of list) {
    const li = document.createElement("li");
    const thumb = document.createElement("img");
    thumb.alt = "";
    const text = document.createElement("div");
    const name = document.createElement("div");
    name.textContent = file.name;
    const note = document.createElement("div");
    note.className = "estimate";
    const fix = document.createElement("div");
    fix.className = "fix";
    const remove = document.createElement("button");
    remove.type = "button";
    remove.className = "remove";
    remove.textContent = "Remove";
    remove.setAttribute("aria-label", `Remove ${file.name}`);
    text.append(name, note, fix);
    li.append(thumb, text, remove);
    selected.append(li);
    const size = await imageSize(file);
    if (size.url) thumb.src = size.url;
    const entry = { file, li, width: size.width, height: size.height, errors: [] };
    remove.addEventListener("click", () => {
      files = files.filter((e) => e !== entry);
      li.remove();
      updateSubmit();
      if (!files.length) say("");
    });
    files.push(entry);
  }
  updateSubmit();
  await refreshEstimates();
}

// The chosen files, handed over once for sending (the list empties); none while the button is off.
export function takeFiles() {
  if (sending || !files.length || submit.disabled) return [];
  sending = true; // no double submit: the chosen files are handed over once
  submit.disabled = true;
  const chosen = files;
  files = [];
  selected.replaceChildren();
  input.value = "";
  return chosen.map((entry) => entry.file);
}

export function doneSending() {
  sending = false;
  updateSubmit();
}

export function watchChoosing() {
  input.addEventListener("change", () => choose([...input.files]));
  ["dragenter", "dragover"].forEach((type) => dropzone.addEventListener(type, (event) => {
    event.preventDefault();
    dropzone.classList.add("dragover");
  }));
  ["dragleave", "drop"].forEach((type) => dropzone.addEventListener(type, () => dropzone.classList.remove("dragover")));
  dropzone.addEventListener("drop", (event) => {
    event.preventDefault();
    choose([...event.dataTransfer.files]);
  });
  document.addEventListener("paste", (event) => {
    const pasted = [...(event.clipboardData?.files || [])].filter((f) => f.type.startsWith("image/"));
    if (!pasted.length) return;
    event.preventDefault();
    const named = pasted.map((f, i) => (f.name && f.name !== "image.png" ? f :
      new File([f], `pasted-${new Date().toISOString().slice(0, 19).replace(/[:T]/g, "-")}${i ? `-${i}` : ""}.png`, { type: f.type })));
    choose(named);
  });
}
