// What the browser can tell about a chosen file before sending it, against the server's limits: an
// empty file, one over the upload limit, one whose first bytes are no image type the server takes,
// and (once decoded) one over the pixel limit. Each problem comes with the fix.

import { formatBytes } from "./words.js";

// Leading bytes of each image type -> its MIME type. WebP is RIFF....WEBP.
const SIGNATURES = [
  { type: "image/png", bytes: [0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a] },
  { type: "image/jpeg", bytes: [0xff, 0xd8, 0xff] },
  { type: "image/bmp", bytes: [0x42, 0x4d] },
  { type: "image/tiff", bytes: [0x49, 0x49, 0x2a, 0x00] },
  { type: "image/tiff", bytes: [0x4d, 0x4d, 0x00, 0x2a] },
  { type: "image/gif", bytes: [0x47, 0x49, 0x46, 0x38] },
];
const NAMES = { "image/png": "PNG", "image/jpeg": "JPEG", "image/webp": "WebP", "image/bmp": "BMP",
                "image/tiff": "TIFF", "image/gif": "GIF" };
// The multipart form around the file (boundaries, headers, the option fields) counts in the limit.
const FORM_OVERHEAD_BYTES = 4096;


// The image type a file's first bytes say, or "" when they are no image type we know.
export async function sniffType(file) {
  const head = new Uint8Array(await file.slice(0, 12).arrayBuffer());
  const starts = (bytes, at = 0) => bytes.every((b, i) => head[at + i] === b);
  if (starts([0x52, 0x49, 0x46, 0x46]) && starts([0x57, 0x45, 0x42, 0x50], 8)) return "image/webp";
  return SIGNATURES.find((s) => starts(s.bytes))?.type || "";
}

// The MIME types the server takes: its own list where /api/models gives one (limits.input_types),
// else the file input's accept attribute (rendered by the server with the page).
export function acceptedTypes(limits, input) {
  const listed = limits.input_types || limits.accepted_types;
  if (Array.isArray(listed) && listed.length) {
    const byName = { jpg: "image/jpeg", jpeg: "image/jpeg", tif: "image/tiff", tiff: "image/tiff" };
    return listed.map((t) => (t.includes("/") ? t : byName[t.toLowerCase()] || `image/${t.toLowerCase()}`));
  }
  return input.accept.split(",").map((t) => t.trim()).filter(Boolean);
}

export const typeNames = (types) => types.map((t) => NAMES[t] || t).join(", ");

// {problem, fix} for what is wrong with the file's bytes, or null when nothing is.
export async function checkBytes(file, { maxBytes, types }) {
  if (file.size === 0) {
    return { problem: "the file is empty (0 bytes)", fix: "Choose the image again; it may not have finished saving or downloading." };
  }
  if (maxBytes && file.size + FORM_OVERHEAD_BYTES > maxBytes) {
    return { problem: `${formatBytes(file.size)}: larger than the server takes (${formatBytes(maxBytes)} per upload)`,
             fix: "Save it as JPEG or WebP, or shrink it, then choose it again." };
  }
  const type = await sniffType(file);
  if (!types.includes(type)) {
    const what = type ? `a ${NAMES[type]} image` : "not an image";
    return { problem: `${what}: the server takes ${typeNames(types)}`,
             fix: `Save it as ${typeNames(types).replace(/, ([^,]*)$/, " or $1")} first.` };
  }
  return null;
}

// A pixel count as people read it: megapixels, or plain pixels below one.
const formatPixels = (pixels) => (pixels >= 1e6 ? `${(pixels / 1e6).toFixed(1)} MP` :
  `${pixels.toLocaleString("en")} pixels`);

// {problem, fix} when the decoded image has more pixels than the server takes, or null.
export function checkPixels(width, height, maxPixels) {
  if (!maxPixels || width * height <= maxPixels) return null;
  return { problem: `${width}\u00d7${height} is ${formatPixels(width * height)}: more than the server takes (${formatPixels(maxPixels)})`,
           fix: `Shrink or crop it below ${formatPixels(maxPixels)} before uploading.` };
}
