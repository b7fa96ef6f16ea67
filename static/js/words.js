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

export function announce(text) {
  announcer.textContent = text;
}
