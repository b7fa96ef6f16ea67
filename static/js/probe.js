// What the browser can learn of a chosen video or animated image before sending it, for its estimate
// and its thumbnail: an animation's frames (WebCodecs' ImageDecoder), an MP4's or MOV's frame size,
// frame count and first picture (its boxes read here, the picture decoded by VideoDecoder). The page's
// CSP plays no blob: media, so nothing here goes through a <video>. Anything else says nothing
// ({}): the server checks every file when it arrives either way.

const BOX_HEADER = 16;
const MAX_MOOV_BYTES = 32 * 2 ** 20; // a movie's index larger than this is left to the server
const THUMB_SIDE = 96;

// An animated image's frame count and size, and its first frame as a thumbnail.
async function probeAnimation(file) {
  if (typeof window.ImageDecoder !== "function" || !window.ImageDecoder.isTypeSupported) return {};
  if (!(await window.ImageDecoder.isTypeSupported(file.type || "image/gif"))) return {};
  const decoder = new window.ImageDecoder({ data: await file.arrayBuffer(), type: file.type || "image/gif" });
  try {
    await decoder.tracks.ready;
    const { image } = await decoder.decode({ frameIndex: 0 });
    const facts = { width: image.displayWidth, height: image.displayHeight,
                    frames: decoder.tracks.selectedTrack.frameCount, thumbnail: thumbnailOf(image) };
    image.close();
    return facts;
  } finally {
    decoder.close();
  }
}

function thumbnailOf(picture) {
  const width = picture.displayWidth;
  const height = picture.displayHeight;
  const ratio = Math.min(1, THUMB_SIDE / Math.max(width, height));
  const canvas = Object.assign(document.createElement("canvas"),
    { width: Math.max(1, Math.round(width * ratio)), height: Math.max(1, Math.round(height * ratio)) });
  canvas.getContext("2d").drawImage(picture, 0, 0, canvas.width, canvas.height);
  return canvas.toDataURL("image/png");
}

const fourcc = (view, at) => String.fromCharCode(...[0, 1, 2, 3].map((i) => view.getUint8(at + i)));

// The boxes in view[start, end): [{type, body (offset of its payload), end}].
function boxes(view, start, end) {
  const found = [];
  for (let at = start; at + 8 <= end;) {
    let size = view.getUint32(at);
    let body = at + 8;
    if (size === 1) { size = Number(view.getBigUint64(at + 8)); body += 8; }
    if (size === 0) size = end - at;
    if (size < 8) break;
    found.push({ type: fourcc(view, at + 4), body, end: Math.min(at + size, end) });
    at += size;
  }
  return found;
}

const child = (view, box, type) => boxes(view, box.body, box.end).find((b) => b.type === type);
const path = (view, box, ...types) => types.reduce((b, type) => b && child(view, b, type), box);

// The top-level "moov" box of an MP4 or MOV file, read into memory, or null.
async function readMoov(file) {
  for (let at = 0; at + 8 <= file.size;) {
    const head = new DataView(await file.slice(at, at + BOX_HEADER).arrayBuffer());
    let size = head.getUint32(0);
    if (size === 1 && head.byteLength >= 16) size = Number(head.getBigUint64(8));
    if (size === 0) size = file.size - at;
    if (size < 8) return null;
    if (fourcc(head, 4) === "moov") {
      return size > MAX_MOOV_BYTES ? null : new DataView(await file.slice(at, at + size).arrayBuffer());
    }
    at += size;
  }
  return null;
}

// An MP4's or MOV's video track: its coded size, frame count and first picture (when the browser
// decodes H.264).
async function probeMovie(file) {
  const moov = await readMoov(file);
  if (!moov) return {};
  for (const trak of boxes(moov, 8, moov.byteLength).filter((b) => b.type === "trak")) {
    const handler = path(moov, trak, "mdia", "hdlr");
    if (!handler || fourcc(moov, handler.body + 8) !== "vide") continue;
    const table = path(moov, trak, "mdia", "minf", "stbl");
    const stsd = table && child(moov, table, "stsd");
    const stsz = table && child(moov, table, "stsz");
    if (!stsd || !stsz) return {};
    const entry = stsd.body + 8; // version and flags, entry count
    const facts = { width: moov.getUint16(entry + 32), height: moov.getUint16(entry + 34),
                    frames: moov.getUint32(stsz.body + 8) };
    facts.thumbnail = await firstPicture(file, moov, table, entry).catch(() => null);
    return facts;
  }
  return {};
}

// The first picture of an H.264 track, decoded by WebCodecs, as a thumbnail; null where it cannot be.
async function firstPicture(file, moov, table, entry) {
  if (typeof window.VideoDecoder !== "function" || fourcc(moov, entry + 4) !== "avc1") return null;
  const avcC = boxes(moov, entry + 86, entry + moov.getUint32(entry)).find((b) => b.type === "avcC");
  const stco = child(moov, table, "stco");
  const co64 = child(moov, table, "co64");
  const stsz = child(moov, table, "stsz");
  if (!avcC || !(stco || co64)) return null;
  const profile = [1, 2, 3].map((i) => moov.getUint8(avcC.body + i).toString(16).padStart(2, "0")).join("");
  const offset = stco ? moov.getUint32(stco.body + 8) : Number(moov.getBigUint64(co64.body + 8));
  const fixed = moov.getUint32(stsz.body + 4);
  const size = fixed || moov.getUint32(stsz.body + 12);
  const sample = await file.slice(offset, offset + size).arrayBuffer();
  return new Promise((resolve) => {
    const decoder = new window.VideoDecoder({
      output: (frame) => { resolve(thumbnailOf(frame)); frame.close(); decoder.close(); },
      error: () => resolve(null),
    });
    decoder.configure({ codec: `avc1.${profile}`, description: new Uint8Array(moov.buffer, avcC.body, avcC.end - avcC.body) });
    decoder.decode(new window.EncodedVideoChunk({ type: "key", timestamp: 0, data: sample }));
    decoder.flush().catch(() => resolve(null));
  });
}

// {width?, height?, frames?, thumbnail? (a data: URL)} of a chosen video or animated image.
export async function probeMoving(file, kind) {
  try {
    return kind === "animation" ? await probeAnimation(file) : await probeMovie(file);
  } catch {
    return {};
  }
}
