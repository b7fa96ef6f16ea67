// Job cards: one per job in the results list, following the job on the server (poll) from queued
// to done, with its progress, cancel, preview, and at the end the comparison, facts and download.
// A video or an animated image (video.js) shows its progress in frames, a playing preview, and two
// players in step instead of the image's slider.

import { call, sleep } from "./api.js";
import { forget, remember } from "./memory.js";
import { isMovingJob, showVideoPreview, showVideoResult } from "./video.js";
import { titleOf } from "./settings.js";
import { setupCompare } from "./viewer.js";
import { announce, formatBytes, formatSeconds, plural } from "./words.js";

const jobsList = document.getElementById("jobs");
const empty = document.getElementById("empty");
const template = document.getElementById("job-template");
const POLL_MS = 500;
export const FINISHED = ["done", "failed", "cancelled"];

export const cards = new Map(); // job id -> {id, card, job, name, cancelling, stopPlayers}
// Fires "change" when a card's job changes state or a card leaves the list (the batch line follows).
export const changes = new EventTarget();
const changed = () => changes.dispatchEvent(new Event("change"));

// The switches a job asked for, as done: Best quality (TTA), faces restored (or none found).
function switchesDone(job, p) {
  const done = [];
  if (p.tta ?? job.tta) done.push("Best quality (the 8 flips and turns averaged)");
  if (job.faces) done.push(p.faces === false ? "Restore faces (no face found)" : "faces restored");
  return done;
}

// How a result was made, in plain words: the model, any resizing after it, where it ran, and the
// switches it ran with.
function madeWith(job, p, result) {
  const model = `${p.model_title || p.model || result.model} (native ${p.native_scale || result.native_scale}\u00d7)`;
  const resized = p.resample ? `, then resized (${p.resample})` : "";
  const device = String(p.device || "");
  const where = device.startsWith("cuda") ? "on the graphics card" : device.startsWith("cpu") ? "on the processor" :
    device ? `on ${device}` : "";
  const reduced = ["bf16", "fp16", "int8"].includes(p.precision) ? "reduced precision for speed" :
    p.precision === "fp32" ? "full precision" : "";
  const extra = switchesDone(job, p).map((words) => `; ${words}`).join("");
  return `${model}${resized}${where ? `, ${where}` : ""}${reduced ? ` (${reduced})` : ""}${extra}`;
}

// How long it took, and (only when there were several) in how many pieces the image was worked.
function took(p) {
  if (p.seconds == null) return "";
  return `${formatSeconds(p.seconds)}${p.tiles > 1 ? `, worked in ${p.tiles} pieces` : ""}`;
}

const FORMAT_NAMES = { png: "PNG", jpg: "JPEG", jpeg: "JPEG", webp: "WebP", bmp: "BMP", tiff: "TIFF", gif: "GIF",
                       mp4: "MP4", webm: "WebM", mkv: "MKV" };

// How a video or an animation was made: the model, the scale, the frames.
function madeMoving(job, result) {
  const p = result.provenance || {};
  const frames = p.frames ?? job.media?.frames;
  return [`${titleOf(p.model || job.model)} at ${p.scale ?? job.scale}\u00d7`, frames ? plural(frames, "frame") : "",
    ...switchesDone(job, p)].filter(Boolean).join(", ");
}

// The file the Download link saves: name, format and size as the server reports them: fields of the
// result where the server gives them (download_name, output_format, output_bytes), else the headers
// of the download itself (Content-Disposition, Content-Length).
async function downloadFacts(result) {
  const facts = { name: result.download_name, format: result.output_format, bytes: result.output_bytes };
  if (!facts.name || facts.bytes == null) {
    try {
      const response = await call(result.download_path, { method: "HEAD" });
      if (response.ok) {
        const disposition = response.headers.get("Content-Disposition") || "";
        const star = disposition.match(/filename\*=UTF-8''([^;]+)/i);
        const plain = disposition.match(/filename="?([^";]+)"?/i);
        facts.name ||= star ? decodeURIComponent(star[1]) : plain?.[1];
        facts.bytes ??= Number(response.headers.get("Content-Length")) || null;
      }
    } catch { /* keep what the result says */ }
  }
  facts.format ||= facts.name?.split(".").pop();
  return facts;
}

async function nameDownload(download, result, name) {
  const size = `${result.output_width}\u00d7${result.output_height}`;
  const facts = await downloadFacts(result);
  const format = FORMAT_NAMES[String(facts.format || "").toLowerCase()] || facts.format;
  const details = [format, size, facts.bytes ? formatBytes(facts.bytes) : ""].filter(Boolean).join(", ");
  download.textContent = `Download ${facts.name || name} (${details})`;
  if (facts.name) download.setAttribute("download", facts.name);
}

function showResult(entry, job) {
  const { card } = entry;
  const result = job.result;
  const name = entry.name || job.original_name;  // the name the person chose (the server may rename it)
  card.querySelector(".job-result").hidden = false;
  card.querySelector(".job-progress").hidden = true;
  card.querySelector(".job-preview").hidden = true;
  card.querySelector(".job-detail").hidden = true;
  const moving = isMovingJob(job);
  card.querySelector(".preview-motion").replaceChildren(); // the preview player stops with the result
  card.querySelector(".viewer").hidden = moving;
  const players = card.querySelector(".motion-result");
  players.hidden = !moving;
  if (moving) {
    entry.stopPlayers?.();
    entry.stopPlayers = showVideoResult(players, { ...job, original_name: name });
  } else {
    setupCompare(card, { ...job, original_name: name });
  }
  card.querySelector(".fact-original").textContent = `${result.original_width} \u00d7 ${result.original_height}`;
  card.querySelector(".fact-output").textContent = `${result.output_width} \u00d7 ${result.output_height}`;
  const p = result.provenance || {};
  card.querySelector(".fact-how").textContent = moving ? madeMoving(job, result) : madeWith(job, p, result);
  card.querySelector(".fact-time").textContent = moving ? formatSeconds(job.elapsed_seconds ?? 0) : took(p);
  const download = card.querySelector(".download");
  download.href = result.download_path;
  download.textContent = "Download";
  nameDownload(download, result, name);
  const copy = card.querySelector(".copy");
  if (navigator.clipboard && window.ClipboardItem && !moving) {
    copy.hidden = false;
    copy.setAttribute("aria-label", `Copy image of ${name}`);
    copy.textContent = "Copy image";
    copy.onclick = () => copyResult(copy, result.output_path);
  }
}

// The clipboard takes PNG only, so other formats are redrawn as PNG first.
async function copyResult(button, url) {
  try {
    const blob = await (await call(url)).blob();
    let png = blob;
    if (blob.type !== "image/png") {
      const bitmap = await createImageBitmap(blob);
      const canvas = document.createElement("canvas");
      canvas.width = bitmap.width;
      canvas.height = bitmap.height;
      canvas.getContext("2d").drawImage(bitmap, 0, 0);
      png = await new Promise((resolve) => canvas.toBlob(resolve, "image/png"));
    }
    await navigator.clipboard.write([new ClipboardItem({ "image/png": png })]);
    button.textContent = "Copied";
  } catch (error) {
    button.textContent = `Copy failed: ${error.message}`;
  }
}

function stateWords(job) {
  if (job.cancel_requested && !FINISHED.includes(job.status)) return "Cancelling...";
  switch (job.status) {
    case "queued": return "Waiting in the queue";
    case "running": return "Working";
    case "done": return "Done";
    case "failed": return `Failed: ${job.error || "unknown reason"}`;
    case "cancelled": return "Cancelled";
    default: return job.status;
  }
}

export function render(entry, job) {
  const { card } = entry;
  const previous = entry.job;
  entry.job = job;
  card.className = `job card ${job.status}${job.cancel_requested && !FINISHED.includes(job.status) ? " cancelling" : ""}`;
  const words = entry.cancelling && !FINISHED.includes(job.status) ? "Cancelling..." : stateWords(job);
  card.querySelector(".job-state").textContent = words;
  if (!previous || previous.status !== job.status) announce(`${entry.name}: ${words}`);
  const bar = card.querySelector("progress");
  const progress = job.progress || {};
  const fraction = progress.fraction != null ? progress.fraction :
    (progress.total ? progress.done / progress.total : 0);
  if (job.status === "done") bar.value = 1;
  else if (job.status === "running" && (fraction > 0 || progress.total)) bar.value = fraction;
  else if (job.status === "queued") bar.value = 0;
  // A video counts its progress in frames (progress.unit), and says them.
  const frames = progress.unit === "frames" && progress.total && job.status === "running" ?
    `frame ${progress.done} of ${progress.total}` : "";
  bar.setAttribute("aria-valuetext", `${Math.round(bar.value * 100)}%${frames ? `, ${frames}` : ""}`);
  const detail = card.querySelector(".job-detail");
  const parts = [];
  if (job.stage_text) parts.push(job.stage_text);
  else if (job.status === "running" && progress.total && !frames) parts.push(`step ${progress.done} of ${progress.total}`);
  if (frames) parts.push(frames);
  if (job.elapsed_seconds != null && !FINISHED.includes(job.status)) parts.push(`${formatSeconds(job.elapsed_seconds)} so far`);
  if (job.status === "queued" && job.queue_position != null) parts.push(`number ${job.queue_position} in the queue`);
  if (job.eta_seconds != null && ["queued", "running"].includes(job.status)) {
    parts.push(`about ${formatSeconds(job.eta_seconds)} left`);
  }
  if (job.restart_note) parts.push(job.restart_note); // the server's words, when it says them
  else if (job.restarted) parts.push("restarted after the server restarted");
  detail.textContent = parts.join(" \u00b7 ");
  const cancel = card.querySelector(".cancel");
  if (FINISHED.includes(job.status) || job.cancel_requested || entry.cancelling) cancel.disabled = true;
  if (job.cancel_requested || entry.cancelling) cancel.textContent = "Cancelling...";
  cancel.hidden = FINISHED.includes(job.status);
  card.querySelector(".forget").hidden = !FINISHED.includes(job.status);
  if (job.preview_url && job.status !== "done") showPreview(entry, job);
  changed(); // the batch line follows each poll (counts, time left)
}

// The quick preview: an image, or for a video or an animation the first frames upscaled, playing.
function showPreview(entry, job) {
  const { card } = entry;
  const preview = card.querySelector(".preview");
  const motion = card.querySelector(".preview-motion");
  const moving = isMovingJob(job);
  preview.hidden = moving;
  motion.hidden = !moving;
  if (moving) {
    showVideoPreview(motion, job);
    motion.querySelector("video")?.setAttribute("aria-label", `Quick preview of ${entry.name}: the first frames upscaled`);
  } else {
    if (preview.getAttribute("src") !== job.preview_url) preview.src = job.preview_url;
    preview.alt = `Quick preview of ${entry.name}`;
  }
  card.querySelector(".job-preview").hidden = false;
}

async function follow(entry) {
  let job = entry.job;
  render(entry, job);
  let wait = POLL_MS;
  while (!FINISHED.includes(job.status)) {
    await sleep(wait);
    let response;
    try {
      response = await call(job.status_url);
    } catch {
      wait = Math.min(wait * 2, 5000); // unreachable: keep the card, back off, carry on when back
      continue;
    }
    wait = POLL_MS;
    if (response.status === 404) {
      expire(entry);
      return;
    }
    if (!response.ok) continue;
    job = await response.json();
    render(entry, job);
  }
  remember(job, entry.name);
  if (job.status === "done") showResult(entry, job);
  changed();
}

// A job whose files expired drops out of the list and out of the memory.
function expire(entry) {
  entry.stopPlayers?.();
  forget(entry.id);
  entry.card.remove();
  cards.delete(entry.id);
  changed();
}

// A card for a job; at the top of the list, or after `after` (a batch lists its files in the order
// it works through them).
export function newCard(name, after = null) {
  const card = template.content.firstElementChild.cloneNode(true);
  card.querySelector(".job-name").textContent = name;
  card.querySelector("progress").setAttribute("aria-label", name);
  const cancel = card.querySelector(".cancel");
  cancel.setAttribute("aria-label", `Cancel ${name}`);
  cancel.textContent = "Cancel";
  card.querySelector(".forget").setAttribute("aria-label", `Remove ${name} from the list`);
  empty.hidden = true;
  if (after) after.after(card);
  else jobsList.prepend(card);
  return card;
}

// Follow a job in its card; `place` ({batch, order}) is remembered with it for a reload.
export function track(job, name, card, place = {}) {
  const entry = { id: job.id, name, card, job, cancelling: false };
  cards.set(job.id, entry);
  card.querySelector(".cancel").addEventListener("click", () => cancel(entry));
  card.querySelector(".forget").addEventListener("click", () => {
    entry.stopPlayers?.();
    forget(entry.id);
    card.remove();
    cards.delete(entry.id);
    changed();
  });
  remember(job, name, place);
  follow(entry);
  return entry;
}

export async function cancel(entry) {
  if (entry.cancelling) return;
  entry.cancelling = true;
  const button = entry.card.querySelector(".cancel");
  button.disabled = true;
  button.textContent = "Cancelling...";
  entry.card.querySelector(".job-state").textContent = "Cancelling...";
  announce(`${entry.name}: Cancelling...`);
  try {
    const response = await call(entry.job.status_url, { method: "DELETE" });
    if (response.ok) render(entry, await response.json());
  } catch { /* the poll loop sees the outcome */ }
}
