// The client-side queue: files handed over by Upscale are sent one at a time (a 503 with Retry-After
// is retried, sooner when our own jobs free room), each with a card that can be cancelled before it
// is sent; until the server accepts a file its bytes are kept in IndexedDB (a reload sends it then);
// the batch line (counts and time left) and the batch buttons (cancel all, ZIP).

import { call, sleep } from "./api.js";
import { FINISHED, cancel, cards, changes, newCard, track } from "./cards.js";
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
    item.entry = track(data, item.name, item.card);
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

// Hand files over for sending: [{file, seconds?, opts, id?, name?}]; their cards are listed in the
// order they will be sent, and their bytes kept until the server accepts them. Returns the first card.
function hand(files) {
  const created = Date.now();
  const items = files.map((f) => ({ id: f.id || `${created}-${localIds++}-${Math.random().toString(36).slice(2)}`,
    file: f.file, name: f.name || f.file.name, opts: f.opts, seconds: f.seconds, created, status: "waiting" }));
  let previous = null;
  for (const item of items) {
    item.card = pendingCard(item, previous);
    previous = item.card;
    keep(item).then(() => {
      item.kept = true;
      if (item.status === "waiting") item.card.querySelector(".job-state").textContent = `${WAITING} (kept if you reload)`;
    }, () => { item.kept = false; });
  }
  batch = items.length > 1 ? { items, announced: false } : null;
  if (!batch) summary.hidden = true;
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

// Files kept from an earlier visit that the server never accepted are sent now.
export async function resumeUnsent() {
  const kept = await keptFiles();
  if (kept.length) hand(kept);
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
