// The server, as the page reaches it: fetch that tells "unreachable" apart from an HTTP answer (and
// shows a banner while the server is away), and the JSON routes the page reads.

import { announce } from "./words.js";

const offline = document.getElementById("offline");
const HEALTH_POLL_MS = 3000;

let reachable = true;

function setReachable(ok) {
  if (ok === reachable) return;
  reachable = ok;
  offline.hidden = ok;
  offline.textContent = ok ? "" :
    "Cannot reach the Remaster server. Your jobs are kept; the page retries and carries on when it is back.";
  if (ok) announce("Connected to the server again");
}

// fetch that tells "server unreachable" (a network error) apart from an HTTP answer.
export async function call(url, init) {
  try {
    const response = await fetch(url, init);
    setReachable(true);
    return response;
  } catch (error) {
    setReachable(false);
    throw Object.assign(new Error("the server cannot be reached"), { network: true });
  }
}

export const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

// The models listing (contract C3), or null when the server cannot say.
export async function fetchModels() {
  try {
    const response = await call("/api/models");
    return response.ok ? await response.json() : null;
  } catch {
    return null;
  }
}

// Output size, seconds and known problems for an image of this size with these options.
export async function fetchEstimate(width, height, opts) {
  // The input's size is width/height here; the result's asked size is target_width/target_height.
  const size = opts.width != null ? { target_width: opts.width } :
    opts.height != null ? { target_height: opts.height } : { scale: opts.scale };
  // Every other option goes as the upload sends it (the server's switches among them: tta, faces).
  const { width: _w, height: _h, scale: _s, ...rest } = opts;
  const query = new URLSearchParams({ width, height, ...size, ...rest, keep_gps: opts.keep_gps || "false" });
  const response = await call(`/api/estimate?${query}`);
  const body = await response.json();
  if (!response.ok) throw new Error(body.error);
  return body;
}

// While the server is unreachable, look for it now and then so the banner clears by itself.
export function watchReachability() {
  setInterval(async () => {
    if (reachable) return;
    try { await call("/healthz"); } catch { /* still away */ }
  }, HEALTH_POLL_MS);
}
