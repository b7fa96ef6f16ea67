// Files handed to the queue but not yet accepted by the server, kept in IndexedDB (bytes, name and
// options) so that a reload, a closed tab or a crash loses none: the page sends them on its next start.

const DB_NAME = "remaster";
const STORE = "unsent";

let opening = null;

function open() {
  opening ||= new Promise((resolve, reject) => {
    const request = indexedDB.open(DB_NAME, 1);
    request.onupgradeneeded = () => request.result.createObjectStore(STORE, { keyPath: "id" });
    request.onsuccess = () => resolve(request.result);
    request.onerror = () => reject(request.error);
  });
  return opening;
}

async function run(mode, work) {
  const db = await open();
  return new Promise((resolve, reject) => {
    const tx = db.transaction(STORE, mode);
    const request = work(tx.objectStore(STORE));
    tx.oncomplete = () => resolve(request.result);
    tx.onerror = () => reject(tx.error);
    tx.onabort = () => reject(tx.error);
  });
}

// Keep a file until `drop(id)`; resolves once it is stored (rejects where IndexedDB is unavailable).
export const keep = ({ id, file, name, opts, created, seconds, batch, order }) =>
  run("readwrite", (store) => store.put({ id, file, name, opts, created, seconds, batch, order }));

export const drop = (id) => run("readwrite", (store) => store.delete(id)).catch(() => {});

// Every kept file, oldest first: [{id, file (a Blob), name, opts, created, seconds, batch, order}].
export async function keptFiles() {
  try {
    const all = await run("readonly", (store) => store.getAll());
    return all.sort((a, b) => a.created - b.created);
  } catch {
    return [];
  }
}
