// What the page remembers across reloads and tabs: the jobs it sent (localStorage, keyed by job id),
// until their files expire, each with its place in the hand-over it came in (batch id and order),
// so a reload lists them as they were.

const STORE_KEY = "remaster.jobs";

export function remembered() {
  try { return JSON.parse(localStorage.getItem(STORE_KEY)) || {}; } catch { return {}; }
}

export function remember(job, name, place = {}) {
  const all = remembered();
  const known = all[job.id] || {};
  all[job.id] = { id: job.id, name, status_url: job.status_url, created: known.created || Date.now(),
                  expires_at: job.expires_at || null, batch: place.batch ?? known.batch ?? null,
                  order: place.order ?? known.order ?? 0 };
  try { localStorage.setItem(STORE_KEY, JSON.stringify(all)); } catch { /* private mode: no memory */ }
}

export function forget(id) {
  const all = remembered();
  delete all[id];
  try { localStorage.setItem(STORE_KEY, JSON.stringify(all)); } catch { /* ignore */ }
}
