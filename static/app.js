// Remaster page: choose or paste images, see the output size, time and known problems before sending,
// try one image's region with several models first, send them through a client-side queue (503 +
// Retry-After are retried), follow progress, compare before and after, download or copy. Jobs are
// remembered in localStorage, so a reload, back or a new tab brings them back until their files
// expire; files not yet accepted by the server are kept in IndexedDB and sent on the next start.
// Plain JavaScript modules, no build step, no external resources. This entry wires the modules in
// js/ (one concern each) and brings back remembered work.

import { watchReachability } from "./js/api.js";
import { watchCompare } from "./js/compare.js";
import { doneSending, holdEstimates, refreshEstimates, takeFiles, watchChoosing } from "./js/files.js";
import { enqueue, restoreWork, watchQueue } from "./js/queue.js";
import { loadModels, options, watchSettings } from "./js/settings.js";

const form = document.getElementById("upscale-form");
const actions = form.querySelector(".actions");

// The sticky Upscale bar's height (a phone's), so that scrolling a control into view stops above it;
// when the bar grows (a message arrives in it), the control in focus comes back above it.
new ResizeObserver(() => {
  document.documentElement.style.setProperty("--actions-height", `${actions.offsetHeight}px`);
  const focused = document.activeElement;
  if (!form.contains(focused) || actions.contains(focused)) return;
  if (focused.getBoundingClientRect().bottom > actions.getBoundingClientRect().top) {
    focused.scrollIntoView({ block: "nearest" });
  }
}).observe(actions);

// Send the chosen files that can go with `opts`; the first card comes into view and takes the focus.
function sendWith(opts) {
  const files = takeFiles();
  if (!files.length) return;
  const first = enqueue(files, opts);
  first.scrollIntoView({ block: "start", behavior: "smooth" });
  first.querySelector(".job-name").focus({ preventScroll: true });
  doneSending();
}

function send(event) {
  event.preventDefault();
  sendWith(options());
}

watchSettings(refreshEstimates, holdEstimates);
watchChoosing();
watchQueue();
watchReachability();
watchCompare((model) => sendWith({ ...options(), model }));
form.addEventListener("submit", send);
loadModels();
restoreWork();
