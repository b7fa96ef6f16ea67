// The client-side queue: files handed over by Upscale are sent one at a time (a 503 with Retry-After
// is retried, sooner when our own jobs free room), each with a card that can be cancelled before it
// is sent; until the server accepts a file its bytes are kept in IndexedDB (a reload sends it then);
// the batch line (counts and time left) and the batch buttons (cancel all, ZIP); after a reload, the
// cards as they were listed (newest hand-over first, each in its order) and the last batch's line.

import { call, sleep } from "./api.js";
import { FINISHED, cancel, cards, changes, newCard, track } from "./cards.js";
import { forget, remembered } from "./memory.js";
import { drop, keep, keptFiles } from "./unsent.js";
import { announce, formatSeconds, plural, say, unsay } from "./words.js";

const jobsList = document.getElementById("jobs");
const empty = document.getElementById("empty");
const zip = document.getElementById("zip");
const cancelAll = document.getElementById("cancel-all");
const summary = document.getElementById("batch-summary");

const pending = []; // {id, file, name, opts, seconds, card, kept, entry, status: "waiting"|"sent"|"refused"|"cancelled"}
let pumping = false;
let batch = null; // {items, announced}
let handed = null; // the last hand-over and what the form's message said of it: {items, words}
const WAITING = "Waiting to be sent";

function pendingCard(item, after) {
  const card = newCard(item.name, after);
  card.classList.add("waiting");
  card.querySelector(".job-state").textContent = WAITING;
  const cancel = card.querySelector(".cancel");
  cancel.addEventListener("click", () => {
    if (item.status !== "waiting") return;
    item.status = "cancelled";
    drop(item.id);
    card.className = "job card cancelled";
    card.querySelector(".job-state").textContent = "Cancelled before it was sent";
    cancel.disabled = true;
    cancel.hidden = true;
    updateBatch();
  }, { once: true });
  return card;
}

// Our own jobs leaving the server's queue free room sooner than Retry-After says; whichever comes first.
function roomOrTimeout(seconds) {
  const inFlight = () => [...cards.values()].filter((e) => !FINISHED.includes(e.job.status)).length;
  const start = inFlight();
  return new Promise((resolve) => {
    const deadline = Date.now() + seconds * 1000;
    const tick = () => {
      if (Date.now() >= deadline || (start > 0 && inFlight() < start)) resolve();
      else setTimeout(tick, 250);
    };
    tick();
  });
}

async function sendOne(item) {
  const body = new FormData();
  body.append("file", item.file, item.name);
  Object.entries(item.opts).forEach(([key, value]) => body.append(key, value));
  for (;;) {
    if (item.status === "cancelled") return;
    let response;
    try {
      response = await call("/api/jobs", { method: "POST", body });
    } catch {
      item.card.querySelector(".job-state").textContent = "Waiting for the server to come back";
      await sleep(3000);
      continue;
    }
    let data = {};
    try { data = await response.json(); } catch { /* not JSON */ }
    if (response.status === 503) {
      const retry = Number(response.headers.get("Retry-After")) || 5;
      item.card.querySelector(".job-state").textContent = `The server is busy; sending again within ${formatSeconds(retry)}`;
      await roomOrTimeout(retry);
      continue;
    }
    if (!response.ok) {
      item.status = "refused";
      drop(item.id);
      item.card.className = "job card failed";
      item.card.querySelector(".job-state").textContent = `Refused: ${data.error || response.statusText}`;
      item.card.querySelector(".cancel").hidden = true;
      item.card.querySelector(".forget").hidden = false;
      item.card.querySelector(".forget").onclick = () => { item.card.remove(); updateBatch(); };
      updateBatch();
      return;
    }
    item.status = "sent";
    const fresh = item.card.querySelector(".cancel");
    fresh.replaceWith(fresh.cloneNode(true)); // drop the "cancel before sending" handler
    item.card.classList.remove("waiting");
    item.entry = track(data, item.name, item.card, { batch: item.batch, order: item.order });
    drop(item.id); // the server has it now (and the job list remembers it)
    return;
  }
}

async function pump() {
  if (pumping) return;
  pumping = true;
  while (pending.length) {
    const item = pending.shift();
    await sendOne(item);
  }
  pumping = false;
}

// Seconds until the batch is done, as far as the server and the estimates say: the last sent job's
// time left (it counts the jobs ahead of it) plus the estimates of the files still to send.
function batchSecondsLeft(items) {
  let sent = 0;
  let waiting = 0;
  for (const item of items) {
    const job = item.entry?.job;
    if (item.status === "sent" && job && !FINISHED.includes(job.status) && job.eta_seconds != null) {
      sent = Math.max(sent, job.eta_seconds);
    }
    if (item.status === "waiting" && item.seconds != null) waiting += item.seconds;
  }
  return sent + waiting;
}

function updateBatch() {
  retireMessage();
  const doneIds = [...cards.values()].filter((e) => e.job.status === "done").map((e) => e.id);
  zip.hidden = doneIds.length < 2;
  zip.href = `/api/jobs.zip?ids=${doneIds.join(",")}`;
  empty.hidden = jobsList.children.length > 0;
  const running = [...cards.values()].filter((e) => !FINISHED.includes(e.job.status)).length;
  cancelAll.hidden = running + pending.filter((i) => i.status === "waiting").length < 2;
  if (!batch) return;
  const count = { done: 0, failed: 0, cancelled: 0, working: 0 };
  for (const item of batch.items) {
    const status = item.status === "sent" ? item.entry?.job.status : item.status;
    if (status === "done") count.done++;
    else if (status === "failed" || status === "refused") count.failed++;
    else if (status === "cancelled") count.cancelled++;
    else count.working++;
  }
  summary.hidden = false;
  const end = count.working === 0;
  const left = end ? 0 : batchSecondsLeft(batch.items);
  summary.textContent = `Batch of ${batch.items.length}: ${count.done} done` +
    `${count.failed ? `, ${count.failed} failed` : ""}${count.cancelled ? `, ${count.cancelled} cancelled` : ""}` +
    `${end ? "." : `, ${count.working} to go${left > 0 ? `, about ${formatSeconds(left)} left in all` : ""}`}`;
  if (end && !batch.announced) {
    batch.announced = true;
    announce(summary.textContent);
  }
}

// The "Sent ..." line goes once everything it spoke of has ended.
function retireMessage() {
  if (!handed) return;
  const ended = handed.items.every((item) => item.status !== "waiting" &&
    (item.status !== "sent" || FINISHED.includes(item.entry?.job.status)));
  if (ended) {
    unsay(handed.words);
    handed = null;
  }
}

let localIds = 0;

// Hand files over for sending: [{file, seconds?, opts, id?, name?, batch?, order?}]; their cards are
// listed in the order they will be sent (at the top, or after the card `after`), and their bytes kept
// until the server accepts them. A hand-over of several is the batch the batch line counts (unless
// `asBatch` is false: a reload counts it with the batch it came in). Returns the items.
function hand(files, { after = null, asBatch = true } = {}) {
  const created = Date.now();
  const batchId = `${created}-${localIds++}`;
  const items = files.map((f, order) => ({ id: f.id || `${created}-${localIds++}-${Math.random().toString(36).slice(2)}`,
    file: f.file, name: f.name || f.file.name, opts: f.opts, seconds: f.seconds, created: f.created || created,
    batch: f.batch ?? (files.length > 1 ? batchId : null), order: f.order ?? order, status: "waiting" }));
  let previous = after;
  for (const item of items) {
    item.card = pendingCard(item, previous);
    previous = item.card;
    keep(item).then(() => {
      item.kept = true;
      if (item.status === "waiting") item.card.querySelector(".job-state").textContent = `${WAITING} (kept if you reload)`;
    }, () => { item.kept = false; });
  }
  if (asBatch) {
    batch = items.length > 1 ? { items, announced: false } : null;
    if (!batch) summary.hidden = true;
  }
  pending.push(...items);
  updateBatch();
  pump();
  return items;
}

// What the sent files are, in a word: images, videos, animated images, or files when mixed.
const KIND_NOUNS = { image: "image", video: "video", animation: "animated image" };
function whatWasSent(files) {
  const kinds = new Set(files.map((f) => f.kind || "image"));
  return kinds.size === 1 ? KIND_NOUNS[[...kinds][0]] || "file" : "file";
}

export function enqueue(files, opts) {
  const items = hand(files.map((f) => ({ ...f, opts })));
  handed = { items, words: `Sent ${plural(items.length, whatWasSent(files))}` };
  say(handed.words);
  return items[0].card;
}

// A remembered job's card again, after the card `after` (at the top when null); null when its files
// expired or the server cannot say now (it stays remembered then: the banner says why).
async function restoreJob(saved, after) {
  if (saved.expires_at && saved.expires_at < Date.now() / 1000) { forget(saved.id); return null; }
  let response;
  try {
    response = await call(saved.status_url);
  } catch {
    return null;
  }
  if (response.status === 404) { forget(saved.id); return null; }
  if (!response.ok) return null;
  const job = await response.json();
  const name = saved.name || job.original_name;
  return track(job, name, newCard(name, after), { batch: saved.batch, order: saved.order });
}

// The work of an earlier visit, listed as it was: each hand-over (a batch, or one file) newest first,
// its sent jobs in order followed by its files the server never accepted (sent now); the newest
// batch keeps its batch line.
export async function restoreWork() {
  const groups = new Map();
  const group = (key, created) => {
    if (!groups.has(key)) groups.set(key, { created, jobs: [], unsent: [] });
    const found = groups.get(key);
    found.created = Math.min(found.created, created);
    return found;
  };
  for (const saved of Object.values(remembered())) group(saved.batch || saved.id, saved.created || 0).jobs.push(saved);
  for (const kept of await keptFiles()) group(kept.batch || kept.id, kept.created || 0).unsent.push(kept);
  const byOrder = (a, b) => (a.order ?? 0) - (b.order ?? 0) || (a.created || 0) - (b.created || 0);
  let previous = null;
  let newest = true;
  for (const { jobs, unsent } of [...groups.values()].sort((a, b) => b.created - a.created)) {
    const items = [];
    for (const saved of jobs.sort(byOrder)) {
      const entry = await restoreJob(saved, previous);
      if (!entry) continue;
      previous = entry.card;
      items.push({ id: saved.id, status: "sent", entry, seconds: null });
    }
    if (unsent.length) {
      const handed = hand(unsent.sort(byOrder), { after: previous, asBatch: false });
      previous = handed[handed.length - 1].card;
      items.push(...handed);
    }
    if (newest && items.length > 1) {
      batch = { items, announced: items.every((i) => i.status === "sent" && FINISHED.includes(i.entry.job.status)) };
    }
    newest &&= items.length === 0; // an expired hand-over does not hide the one before it
  }
  changes.dispatchEvent(new Event("change"));
}

// Leaving the page while a file waits unsent and could not be kept asks first.
function warnBeforeLeaving(event) {
  if (pending.some((item) => item.status === "waiting" && !item.kept)) {
    event.preventDefault();
    event.returnValue = "";
  }
}

export function watchQueue() {
  changes.addEventListener("change", updateBatch);
  window.addEventListener("beforeunload", warnBeforeLeaving);
  cancelAll.addEventListener("click", () => {
    for (const item of pending) if (item.status === "waiting") item.card.querySelector(".cancel").click();
    for (const entry of cards.values()) if (!FINISHED.includes(entry.job.status)) cancel(entry);
    updateBatch();
  });
}
