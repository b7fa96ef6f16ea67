// What the page remembers across reloads and tabs: the jobs it sent (localStorage, keyed by job id),
// until their files expire.

const STORE_KEY = "remaster.jobs";

export function remembered() {
  try { return JSON.parse(localStorage.getItem(STORE_KEY)) || {}; } catch { return {}; }
}

export function remember(job, name) {
  const all = remembered();
  all[job.id] = { id: job.id, name, status_url: job.status_url, created: all[job.id]?.created || Date.now(),
                  expires_at: job.expires_at || null };
  try { localStorage.setItem(STORE_KEY, JSON.stringify(all)); } catch { /* private mode: no memory */ }
}

export function forget(id) {
  const all = remembered();
  delete all[id];
  try { localStorage.setItem(STORE_KEY, JSON.stringify(all)); } catch { /* ignore */ }
}
