// Remaster page: choose or paste images, see the output size, time and known problems before sending,
// send them through a client-side queue (503 + Retry-After are retried), follow progress, compare
// before and after, download or copy. Jobs are remembered in localStorage, so a reload, back or a new
// tab brings them back until their files expire; files not yet accepted by the server are kept in
// IndexedDB and sent on the next start. Plain JavaScript modules, no build step, no external
// resources. This entry wires the modules in js/ (one concern each) and brings back remembered work.

import { call, watchReachability } from "./js/api.js";
import { changes, newCard, track } from "./js/cards.js";
import { doneSending, refreshEstimates, takeFiles, watchChoosing } from "./js/files.js";
import { forget, remembered } from "./js/memory.js";
import { enqueue, resumeUnsent, watchQueue } from "./js/queue.js";
import { loadModels, options, watchSettings } from "./js/settings.js";

const form = document.getElementById("upscale-form");

function send(event) {
  event.preventDefault();
  const opts = options();
  const files = takeFiles();
  if (!files.length) return;
  const first = enqueue(files, opts);
  first.scrollIntoView({ block: "start", behavior: "smooth" });
  first.querySelector(".job-name").focus({ preventScroll: true });
  doneSending();
}

// Bring back the jobs this browser sent, oldest first, until their files expire.
async function restore() {
  const all = Object.values(remembered()).sort((a, b) => a.created - b.created);
  const now = Date.now() / 1000;
  for (const saved of all) {
    if (saved.expires_at && saved.expires_at < now) { forget(saved.id); continue; }
    let response;
    try {
      response = await call(saved.status_url);
    } catch {
      continue; // unreachable now: keep it remembered, the banner says why
    }
    if (response.status === 404) { forget(saved.id); continue; }
    if (!response.ok) continue;
    const job = await response.json();
    track(job, saved.name || job.original_name, newCard(saved.name || job.original_name));
  }
  changes.dispatchEvent(new Event("change"));
}

watchSettings(refreshEstimates);
watchChoosing();
watchQueue();
watchReachability();
form.addEventListener("submit", send);
loadModels();
restore().then(resumeUnsent);
