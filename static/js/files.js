// The chosen files before they are sent: choose, drop or paste; what the browser can check itself
// (empty, not a type the server takes, too many bytes for its kind, too many pixels); each image's
// output size, time and known problems as the server's estimate says, with the fix that really
// works (a video or an animated image is checked by the server when it arrives; its frame size and
// count, where the browser reads them, give its estimate); and the Upscale button, which sends the
// files that can go (a click while they are being checked sends once they are) and leaves the others
// listed with their fix.

import { fetchEstimate } from "./api.js";
import { acceptedTypes, checkBytes, checkPixels, videoLimits } from "./checks.js";
import { probeVideoOrAnimation } from "./probe.js";
import { options, serverLimits } from "./settings.js";
import { article, formatSeconds, plural, say } from "./words.js";

const form = document.getElementById("upscale-form");
const input = document.getElementById("file");
const dropzone = document.getElementById("dropzone");
const selected = document.getElementById("selected");
const submit = document.getElementById("submit");
const noiseSelect = document.getElementById("noise");

let files = []; // {file, kind, li, width, height, errors, checking, seconds, local}
// Fires "change" whenever the chosen files or what is known of them change (Compare models follows it).
export const choosing = new EventTarget();
let sending = false;
let estimateRound = 0; // a newer round makes the answers of older ones stale
let lastAsked = ""; // the options the files' estimates were last asked with
let sendWhenReady = false; // Upscale was clicked while the files were being checked

const imageSize = (file) => new Promise((resolve) => {
  const url = URL.createObjectURL(file);
  const img = new Image();
  img.onload = () => resolve({ url, width: img.naturalWidth, height: img.naturalHeight });
  img.onerror = () => { URL.revokeObjectURL(url); resolve({ url: null, width: 0, height: 0 }); };
  img.src = url;
});

const limitsNow = () => {
  const limits = serverLimits();
  const video = videoLimits(form);
  return {
    maxBytes: Number(limits.max_upload_bytes || form.dataset.maxUploadBytes) || 0,
    maxPixels: Number(limits.max_input_pixels || form.dataset.maxInputPixels) || 0,
    maxVideoBytes: Number(video.max_bytes) || 0,
    maxVideoPixels: Number(video.max_input_pixels) || 0,
    maxVideoSeconds: Number(video.max_seconds) || 0,
    types: acceptedTypes(limits, form),
  };
};
const MOVING_WORDS = { video: "video", animation: "animated image" };
const A_MOVING = { video: "a video", animation: "an animated image" };

// The scales the form offers (the server renders them), as numbers in their order.
const formScales = () => [...form.querySelectorAll('input[name="scale"]')].map((r) => r.value)
  .filter((value) => value !== "other");

// Whether the server would take this file with these options (an estimate with no error).
async function works(entry, opts) {
  try {
    return !(await fetchEstimate(entry.width, entry.height, opts)).errors.length;
  } catch {
    return false;
  }
}

// The fix that really works for a file the server refuses as chosen, found by asking the server
// about the other choices (never "choose a smaller scale" when no scale would help).
async function findFix(entry, opts) {
  const scales = [];
  const { width, height, ...bySize } = opts; // a quick scale replaces a size asked in pixels
  for (const scale of formScales().filter((s) => s !== String(opts.scale))) {
    if (await works(entry, { ...bySize, scale })) scales.push(scale);
  }
  if (scales.length) return `Choose ${article(scales[0])} ${scales.map((s) => `${s}\u00d7`).join(" or ")} scale instead.`;
  for (const option of noiseSelect.options) {
    if (option.value !== opts.noise && await works(entry, { ...opts, noise: option.value })) {
      return `Choose noise reduction \u201c${option.value[0].toUpperCase()}${option.value.slice(1)}\u201d instead.`;
    }
  }
  if (opts.model !== "auto" && await works(entry, { ...opts, model: "auto" })) return "Choose the Automatic model instead.";
  if (opts.format !== "png" && await works(entry, { ...opts, format: "png" })) return "Choose PNG as the output format instead.";
  return "No scale or format fits this image: crop or shrink it first.";
}

// The server's route in its words ("Will use ..., then Lanczos ...") and what the chosen options
// would ignore, as the estimate says them.
function showPlan(element, body) {
  const lines = [];
  if (body.plan && body.plan.text) lines.push(Object.assign(document.createElement("div"), { textContent: body.plan.text }));
  for (const warning of body.warnings || []) {
    lines.push(Object.assign(document.createElement("div"), { className: "caution", textContent: `Note: ${warning}` }));
  }
  element.replaceChildren(...lines);
}

function showProblem(entry, problem, fix) {
  const note = entry.li.querySelector(".estimate");
  note.textContent = problem;
  note.classList.add("warn");
  entry.li.querySelector(".fix").textContent = fix;
}

// A video or an animated image is checked by the server when it arrives (its length, frames and
// sizes); before that, whether the options can apply to it (a scale factor, not a size in pixels)
// and, where the browser read its frame size and count, the model and the time the server estimates.
function describeVideoOrAnimation(entry, opts, maxSeconds, round) {
  const note = entry.li.querySelector(".estimate");
  const size = entry.width ? `, ${entry.width}\u00d7${entry.height}` : "";
  const length = maxSeconds ? ` (up to ${formatSeconds(maxSeconds)})` : "";
  entry.li.querySelector(".plan").replaceChildren();
  entry.li.querySelector(".fix").textContent = "";
  note.classList.remove("warn");
  if (opts.scale == null) {
    entry.errors = [`${A_MOVING[entry.kind]} is upscaled by a factor, not to a size in pixels`];
    showProblem(entry, entry.errors[0], "Choose a scale, or Other size by Factor.");
    return;
  }
  entry.errors = [];
  const frames = entry.frames ? `, ${plural(entry.frames, "frame")}` : "";
  note.textContent = `${MOVING_WORDS[entry.kind]}${size}${frames}, ${opts.scale}\u00d7: the server checks its length${length} and frames when it arrives`;
  if (entry.width && entry.frames) estimateVideoOrAnimation(entry, opts, round);
}

// A video or animation's time: the server's estimate for one frame of its size, times its frames.
async function estimateVideoOrAnimation(entry, opts, round) {
  let body;
  try {
    body = await fetchEstimate(entry.width, entry.height, { ...opts, format: "png" });
  } catch {
    return; // the server says it all when the file arrives
  }
  if (round !== estimateRound) return;
  const seconds = (body.seconds_parts?.upscale ?? body.seconds) * entry.frames;
  entry.seconds = seconds;
  entry.li.querySelector(".estimate").textContent = `${MOVING_WORDS[entry.kind]}, ${entry.width}\u00d7${entry.height} ` +
    `\u2192 ${body.output_width}\u00d7${body.output_height}, ${plural(entry.frames, "frame")}: about ` +
    `${formatSeconds(seconds)} (the server checks its length and frames when it arrives)`;
  showPlan(entry.li.querySelector(".plan"), { plan: body.plan });
}

// A size the person is still typing, or one no server would take, as the page says it (never a
// form field's name): "" when the size is a number the server can judge.
function sizeProblem(opts) {
  const side = opts.width != null ? "width" : opts.height != null ? "height" : null;
  if (side) {
    const value = String(opts[side]).trim();
    if (!/^\d+$/.test(value) || Number(value) < 1) return `type the result's ${side} as a whole number of pixels`;
  } else if (String(opts.scale ?? "").trim() === "" || !Number.isFinite(Number(opts.scale))) {
    return "type the factor as a number, e.g. 2.5";
  }
  return "";
}

// The options are being changed (a size typed key by key): the files' estimates are on their way,
// so Upscale waits for them (a click now sends once they are in) instead of trusting the old ones.
export function holdEstimates() {
  for (const entry of files.filter((e) => !e.local && e.width && e.kind === "image")) {
    entry.checking = true;
    entry.errors = [];
  }
  lastAsked = "";
  updateSubmit();
}

export async function refreshEstimates({ force = false } = {}) {
  const opts = options();
  const asking = JSON.stringify(opts);
  if (!force && asking === lastAsked) return; // the same options (a change event after typing): asked already
  lastAsked = asking;
  const round = ++estimateRound;
  const { maxVideoSeconds } = limitsNow();
  for (const entry of files.filter((e) => !e.local && e.kind !== "image")) describeVideoOrAnimation(entry, opts, maxVideoSeconds, round);
  const asked = files.filter((e) => !e.local && e.width && e.kind === "image");
  const problem = sizeProblem(opts);
  for (const entry of asked) entry.checking = !problem;
  if (problem) {
    for (const entry of asked) {
      entry.errors = [problem];
      entry.li.querySelector(".plan").replaceChildren();
      showProblem(entry, `${entry.width}\u00d7${entry.height}: ${problem}`, "");
    }
  }
  updateSubmit();
  if (problem) return;
  for (const entry of asked) {
    const note = entry.li.querySelector(".estimate");
    const fix = entry.li.querySelector(".fix");
    const plan = entry.li.querySelector(".plan");
    const size = `${entry.width}\u00d7${entry.height}`;
    entry.errors = [];
    note.classList.remove("warn");
    fix.textContent = "";
    try {
      const body = await fetchEstimate(entry.width, entry.height, opts);
      if (round !== estimateRound) return;
      entry.errors = body.errors || [];
      entry.seconds = body.seconds;
      const sizes = `${size} \u2192 ${body.output_width}\u00d7${body.output_height}`;
      note.textContent = entry.errors.length ? `${sizes}: ${entry.errors.join("; ")}` :
        `${sizes}, about ${formatSeconds(body.seconds)}`;
      note.classList.toggle("warn", entry.errors.length > 0);
      showPlan(plan, body); // replaced only now: the options below do not jump while it is asked
      entry.checking = false; // sendable or not, it is known now: the fix below may take a while
      updateSubmit();
      if (entry.errors.length) {
        const text = await findFix(entry, opts);
        if (round !== estimateRound) return;
        fix.textContent = text;
      }
    } catch (error) {
      if (round !== estimateRound) return;
      plan.replaceChildren(); // the plan said before is for other options
      if (error.network) {
        note.textContent = `${size}: estimate unavailable (${error.message})`;
      } else {
        // The server refuses these options outright (e.g. a noise level no model makes at this scale).
        entry.errors = [error.message];
        entry.checking = false;
        showProblem(entry, `${size}: ${error.message}`, "");
        updateSubmit();
        const text = await findFix(entry, opts);
        if (round !== estimateRound) return;
        fix.textContent = text;
      }
    }
    entry.checking = false;
    updateSubmit();
  }
  updateSubmit();
}

const sendable = (e) => !(e.errors && e.errors.length) && !e.local && !e.checking;
const failingNow = (e) => (e.errors && e.errors.length) || e.local;

// Upscale is off while nothing can be sent; while files are being checked it waits (aria-disabled:
// a click then sends once the checks are in); files that cannot be upscaled stay behind, named,
// and never hold back the others.
function updateSubmit() {
  choosing.dispatchEvent(new Event("change"));
  const failing = files.filter(failingNow);
  const checking = files.filter((e) => e.checking);
  const ready = files.filter(sendable);
  submit.disabled = sending || files.length === 0 || (failing.length === files.length);
  submit.setAttribute("aria-disabled", String(submit.disabled || checking.length > 0));
  if (!submit.disabled && checking.length === 0 && sendWhenReady) {
    sendWhenReady = false;
    form.requestSubmit(submit);
    return;
  }
  if (submit.disabled) sendWhenReady = false;
  if (!files.length) return;
  const names = failing.map((e) => e.file.name);
  const them = failing.length === 1 ? "it" : "each";
  if (failing.length && failing.length === files.length) {
    say(`${plural(failing.length, "file")} cannot be upscaled as chosen: see the fix next to ${them}, or remove ${failing.length === 1 ? "it" : "them"}.`, true);
  } else if (checking.length) {
    say(`Checking ${plural(checking.length, "file")}\u2026${sendWhenReady ? " Sending once checked." : ""}`);
  } else if (failing.length) {
    say(`${listed(names)} cannot be upscaled as chosen (see the fix next to ${them}); ` +
        `Upscale sends the other ${ready.length === 1 ? "file" : plural(ready.length, "file")}.`, true);
  } else {
    say(`${plural(files.length, "file")} ready`);
  }
}

const listed = (names) => (names.length < 2 ? names.join("") :
  `${names.slice(0, -1).join(", ")} and ${names[names.length - 1]}`);

function fileRow(file) {
  const li = document.createElement("li");
  const thumb = document.createElement("img");
  thumb.alt = "";
  const text = document.createElement("div");
  const name = document.createElement("div");
  name.textContent = file.name;
  const note = document.createElement("div");
  note.className = "estimate";
  note.textContent = "checking\u2026";
  const plan = document.createElement("div");
  plan.className = "plan";
  const fix = document.createElement("div");
  fix.className = "fix";
  const remove = document.createElement("button");
  remove.type = "button";
  remove.className = "remove";
  remove.textContent = "Remove";
  remove.setAttribute("aria-label", `Remove ${file.name}`);
  text.append(name, note, plan, fix);
  li.append(thumb, text, remove);
  return li;
}

async function choose(list) {
  files = [];
  selected.replaceChildren();
  estimateRound++; // answers about the files chosen before are stale
  const limits = limitsNow();
  const entries = list.map((file) => ({ file, li: fileRow(file), width: 0, height: 0, errors: [], checking: true }));
  files = entries;
  for (const entry of entries) {
    selected.append(entry.li);
    entry.li.querySelector(".remove").addEventListener("click", () => {
      files = files.filter((e) => e !== entry);
      entry.li.remove();
      updateSubmit();
      if (!files.length) say("");
    });
  }
  updateSubmit();
  for (const entry of entries) {
    const checked = await checkBytes(entry.file, limits);
    const bad = checked.problem ? checked : null;
    entry.kind = checked.kind;
    // The page's CSP plays no blob: media: a video's size, frames and thumbnail are read from its file.
    if (!bad && entry.kind !== "video") {
      const size = await imageSize(entry.file);
      if (size.url) entry.li.querySelector("img").src = size.url;
      Object.assign(entry, { width: size.width, height: size.height });
    }
    if (!bad && entry.kind !== "image") {
      const facts = await probeVideoOrAnimation(entry.file, entry.kind);
      if (facts.thumbnail && !entry.width) entry.li.querySelector("img").src = facts.thumbnail;
      entry.frames = facts.frames;
      if (!entry.width && facts.width) Object.assign(entry, { width: facts.width, height: facts.height });
    }
    const videoOrAnimation = entry.kind !== "image";
    const problem = bad || checkPixels(entry.width, entry.height, videoOrAnimation ? limits.maxVideoPixels : limits.maxPixels,
                                       videoOrAnimation ? " a frame" : "");
    entry.checking = false;
    if (problem) {
      entry.local = problem;
      showProblem(entry, problem.problem, problem.fix);
    } else if (!entry.width && !videoOrAnimation) {
      entry.li.querySelector(".estimate").textContent = "the browser cannot preview this file; the server will check it";
    }
  }
  if (files !== entries) return; // chosen again meanwhile
  await refreshEstimates({ force: true });
}

// The chosen files that can be sent, with their estimated seconds, handed over once for sending
// (they leave the list; those that cannot be upscaled as chosen stay, with their fix). None while
// the button is off; while files are being checked, none yet: they go once the checks are in.
export function takeFiles() {
  if (sending || !files.length || submit.disabled) return [];
  if (files.some((e) => e.checking)) {
    sendWhenReady = true;
    updateSubmit();
    return [];
  }
  sending = true; // no double submit: the chosen files are handed over once
  submit.disabled = true;
  const chosen = files.filter(sendable);
  files = files.filter((e) => !sendable(e));
  for (const entry of chosen) entry.li.remove();
  if (!files.length) input.value = "";
  return chosen.map((entry) => ({ file: entry.file, seconds: entry.seconds, kind: entry.kind }));
}

// The one image chosen, when exactly one still image is and the browser read its size: {file, width,
// height}; else null. What the server thinks of it comes when it is compared or sent.
export function oneImage() {
  const [entry] = files;
  return files.length === 1 && entry.kind === "image" && entry.width > 0 && !entry.local ? entry : null;
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
