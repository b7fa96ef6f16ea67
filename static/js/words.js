// Words the page says: counts, durations, and the two places it speaks (the form's message line and
// the screen-reader announcer).

const message = document.getElementById("form-message");
const announcer = document.getElementById("announcer");

export const plural = (n, word) => `${n} ${word}${n === 1 ? "" : "s"}`;

// "an 8x", "a 2x", "a 4x": the article follows the sound of the number.
export const article = (scale) => (String(scale).startsWith("8") || String(scale) === "11" ? "an" : "a");

export function formatSeconds(s) {
  if (s == null || !Number.isFinite(s)) return "";
  const total = Math.max(1, Math.round(s));
  if (total < 60) return `${total} s`;
  if (total < 3600) {
    const m = Math.floor(total / 60);
    const rest = total % 60;
    return rest ? `${m} min ${rest} s` : `${m} min`;
  }
  const h = Math.floor(total / 3600);
  const m = Math.round((total % 3600) / 60);
  return m ? `${h} h ${m} min` : `${h} h`;
}

export function say(text, isError = false) {
  message.textContent = text;
  message.classList.toggle("error", isError);
}

// Clear the message line if it still says `text` (a newer message stays).
export function unsay(text) {
  if (message.textContent === text) say("");
}

// A file size in the units people read: bytes, KB or MB.
export function formatBytes(bytes) {
  if (bytes < 1024) return plural(bytes, "byte");
  if (bytes < 2 ** 20) return `${Math.round(bytes / 1024)} KB`;
  return `${(bytes / 2 ** 20).toFixed(bytes < 10 * 2 ** 20 ? 1 : 0)} MB`;
}

export function announce(text) {
  announcer.textContent = text;
}
