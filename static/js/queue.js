// The client-side queue: files handed over by Upscale are sent one at a time (a 503 with Retry-After
// is retried, sooner when our own jobs free room), each with a card that can be cancelled before it
// is sent; the batch line and the batch buttons (cancel all, ZIP).

import { call, sleep } from "./api.js";
import { FINISHED, cancel, cards, changes, newCard, track } from "./cards.js";
import { announce, formatSeconds } from "./words.js";

const jobsList = document.getElementById("jobs");
const empty = document.getElementById("empty");
const zip = document.getElementById("zip");
const cancelAll = document.getElementById("cancel-all");
const summary = document.getElementById("batch-summary");

const pending = []; // {entry (file), opts, card, name, status: "waiting"|"sent"|"refused"|"cancelled"}
let pumping = false;
let batch = null; // {total, items}

function pendingCard(item) {
  const card = newCard(item.name);
  card.classList.add("waiting");
  card.querySelector(".job-state").textContent = "Waiting to be sent";
  const cancel = card.querySelector(".cancel");
  cancel.addEventListener("click", () => {
    if (item.status !== "waiting") return;
    item.status = "cancelled";
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

function updateBatch() {
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
  summary.textContent = `Batch of ${batch.items.length}: ${count.done} done` +
    `${count.failed ? `, ${count.failed} failed` : ""}${count.cancelled ? `, ${count.cancelled} cancelled` : ""}` +
    `${end ? "." : `, ${count.working} to go`}`;
  if (end && !batch.announced) {
    batch.announced = true;
    announce(summary.textContent);
  }
}

// Hand files over for sending with these options; returns the first file's card.
export function enqueue(files, opts) {
  const items = files.map((file) => ({ file, name: file.name, opts, status: "waiting" }));
  for (const item of items) item.card = pendingCard(item);
  batch = items.length > 1 ? { items, announced: false } : null;
  if (!batch) summary.hidden = true;
  pending.push(...items);
  updateBatch();
  pump();
  return items[0].card;
}

export function watchQueue() {
  changes.addEventListener("change", updateBatch);
  cancelAll.addEventListener("click", () => {
    for (const item of pending) if (item.status === "waiting") item.card.querySelector(".cancel").click();
    for (const entry of cards.values()) if (!FINISHED.includes(entry.job.status)) cancel(entry);
    updateBatch();
  });
}
