// What the browser can tell about a chosen file before sending it, against the server's limits: an
// empty file, one whose first bytes are no type the server takes, one over the upload limit of its
// kind (an image's, or a video's for a video or an animated image), and (once decoded) one over the
// pixel limit. Each problem comes with the fix. Which types and limits hold is the server's word
// (the page's form carries them, /api/models repeats them); here is only how to recognise a type.

import { formatBytes } from "./words.js";

// Leading bytes of each type -> its MIME type (RIFF, ISO media and EBML files are told apart below).
const SIGNATURES = [
  { type: "image/png", bytes: [0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a] },
  { type: "image/jpeg", bytes: [0xff, 0xd8, 0xff] },
  { type: "image/bmp", bytes: [0x42, 0x4d] },
  { type: "image/tiff", bytes: [0x49, 0x49, 0x2a, 0x00] },
  { type: "image/tiff", bytes: [0x4d, 0x4d, 0x00, 0x2a] },
  { type: "image/gif", bytes: [0x47, 0x49, 0x46, 0x38] },
];
const NAMES = { "image/png": "PNG", "image/jpeg": "JPEG", "image/webp": "WebP", "image/bmp": "BMP",
                "image/tiff": "TIFF", "image/gif": "GIF", "video/mp4": "MP4", "video/webm": "WebM",
                "video/x-matroska": "MKV", "video/quicktime": "MOV", "video/x-msvideo": "AVI" };
// The multipart form around the file (boundaries, headers, the option fields) counts in the limit.
const FORM_OVERHEAD_BYTES = 4096;
const HEAD_BYTES = 64; // enough for every signature and a Matroska header's DocType
// QuickTime files from before the ISO "ftyp" box start with one of these boxes.
const QUICKTIME_BOXES = ["moov", "mdat", "wide", "free", "skip", "pnot"];
const PNG_CHUNKS_BEFORE_IDAT = 64; // an APNG's acTL comes before the first IDAT, among the first few chunks

const text = (bytes, at, length) => String.fromCharCode(...bytes.slice(at, at + length));

// The type a file's first bytes say, or "" when they are no type we know.
export async function sniffType(file) {
  const head = new Uint8Array(await file.slice(0, HEAD_BYTES).arrayBuffer());
  const starts = (bytes, at = 0) => bytes.every((b, i) => head[at + i] === b);
  if (text(head, 0, 4) === "RIFF") {
    const form = text(head, 8, 4);
    return form === "WEBP" ? "image/webp" : form === "AVI " ? "video/x-msvideo" : "";
  }
  if (text(head, 4, 4) === "ftyp") return text(head, 8, 4) === "qt  " ? "video/quicktime" : "video/mp4";
  if (QUICKTIME_BOXES.includes(text(head, 4, 4))) return "video/quicktime";
  if (starts([0x1a, 0x45, 0xdf, 0xa3])) return text(head, 0, HEAD_BYTES).includes("webm") ? "video/webm" : "video/x-matroska";
  return SIGNATURES.find((s) => starts(s.bytes))?.type || "";
}

// Whether a PNG or WebP is animated: an APNG has an acTL chunk before its first IDAT, an animated
// WebP sets the animation flag of its VP8X chunk.
async function isAnimated(file, type) {
  if (type === "image/webp") {
    const head = new Uint8Array(await file.slice(0, 21).arrayBuffer());
    return text(head, 12, 4) === "VP8X" && (head[20] & 0x02) !== 0;
  }
  if (type !== "image/png") return false;
  let at = 8;
  for (let i = 0; i < PNG_CHUNKS_BEFORE_IDAT && at + 8 <= file.size; i++) {
    const chunk = new DataView(await file.slice(at, at + 8).arrayBuffer());
    const name = text(new Uint8Array(chunk.buffer), 4, 4);
    if (name === "acTL") return true;
    if (name === "IDAT" || !/^[A-Za-z]{4}$/.test(name)) return false;
    at += 12 + chunk.getUint32(0);
  }
  return false;
}

// What the server says a video or an animated image may be (`web.http.video_forms.page_values`), as the
// page renders it into the form; {} when it says nothing.
export function videoLimits(form) {
  try {
    return JSON.parse(form.dataset.videoLimits || "{}");
  } catch {
    return {};
  }
}

// The MIME types the server takes, by kind: `image` from its own list where /api/models gives one
// (limits.input_types), else the form's (rendered by the server with the page); `videoOrAnimation` (videos
// and animated images) from the video limits' accept list.
export function acceptedTypes(limits, form) {
  const listed = limits.input_types || limits.accepted_types;
  let image = (form.dataset.imageTypes || "").split(",").map((t) => t.trim()).filter(Boolean);
  if (Array.isArray(listed) && listed.length) {
    const byName = { jpg: "image/jpeg", jpeg: "image/jpeg", tif: "image/tiff", tiff: "image/tiff" };
    image = listed.map((t) => (t.includes("/") ? t : byName[t.toLowerCase()] || `image/${t.toLowerCase()}`));
  }
  const videoOrAnimation = (videoLimits(form).accept || []).filter((t) => t.includes("/") && !image.includes(t));
  return { image, videoOrAnimation };
}

export const typeNames = (types) => [...new Set(types.map((t) => NAMES[t] || t))].join(", ");

const KIND_WORDS = { image: "an image", video: "a video", animation: "an animated image" };
const OVER_FIX = {
  image: "Save it as JPEG or WebP, or shrink it, then choose it again.",
  video: "Shorten it, or lower its resolution or bit rate, then choose it again.",
  animation: "Shorten it or shrink it, or save it as a video, then choose it again.",
};

// What the file is and what is wrong with its bytes: {kind: "image" | "video" | "animation",
// problem?, fix?}. `limits`: {maxBytes (an image's upload), maxVideoBytes (a video's or an
// animation's), types: acceptedTypes(...)}.
export async function checkBytes(file, { maxBytes, maxVideoBytes, types }) {
  if (file.size === 0) {
    return { kind: "image", problem: "the file is empty (0 bytes)",
             fix: "Choose the file again; it may not have finished saving or downloading." };
  }
  const type = await sniffType(file);
  const still = types.image.includes(type);
  if (!still && !types.videoOrAnimation.includes(type)) {
    const others = types.videoOrAnimation;
    const what = type ? `a ${NAMES[type] || type} file` : others.length ? "not an image or a video" : "not an image";
    const takes = others.length ? `images (${typeNames(types.image)}) and videos or animations (${typeNames(others)})` :
      typeNames(types.image);
    return { kind: "image", problem: `${what}: the server takes ${takes}`, fix: "Save it in one of these formats first." };
  }
  const videoOrAnimation = !still || await isAnimated(file, type);
  const kind = !videoOrAnimation ? "image" : type.startsWith("video/") ? "video" : "animation";
  const limit = videoOrAnimation ? maxVideoBytes : maxBytes;
  if (limit && file.size + FORM_OVERHEAD_BYTES > limit) {
    const per = videoOrAnimation ? ` for ${KIND_WORDS[kind]}` : "";
    return { kind, problem: `${formatBytes(file.size)}: larger than the server takes${per} (${formatBytes(limit)} per upload)`,
             fix: OVER_FIX[kind] };
  }
  return { kind };
}

// A pixel count as people read it: megapixels, or plain pixels below one.
const formatPixels = (pixels) => (pixels >= 1e6 ? `${(pixels / 1e6).toFixed(1)} MP` :
  `${pixels.toLocaleString("en")} pixels`);

// {problem, fix} when the decoded image (or an animation's frame) has more pixels than the server
// takes, or null.
export function checkPixels(width, height, maxPixels, what = "") {
  if (!maxPixels || width * height <= maxPixels) return null;
  return { problem: `${width}\u00d7${height}${what} is ${formatPixels(width * height)}: more than the server takes (${formatPixels(maxPixels)})`,
           fix: `Shrink or crop it below ${formatPixels(maxPixels)} before uploading.` };
}
