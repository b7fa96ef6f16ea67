// The result of a video or animation job: before and after playing in step, the upscaled result
// over the original with a split to drag (the compare slider over the playing video), or side by
// side. One play/pause, one seek bar and one clock drive both; the original follows the result's
// time whenever they drift apart by more than a frame or two; an animated GIF, WebP or PNG plays its
// two sides frame by frame in step (animation.js). Players start muted; a Sound box turns the result's
// sound on. Plain DOM, no inline styles in markup (the page's CSP): positions are set through the CSSOM.

import { AnimationPair, canStepAnimations } from "./animation.js";

const DRIFT_S = 0.08; // the original is re-seeked when it is further than this from the result
const VIDEO_KINDS = ["video", "animation"];

// Whether a job's result is shown here (a video or an animation) rather than by the image viewer.
export function isMovingJob(job) {
  return VIDEO_KINDS.includes(job?.kind);
}

// The viewer's own style sheet, linked once (the page's CSP allows sheets from this site).
function ensureStyles() {
  const href = new URL("../video.css", import.meta.url).href;
  if ([...document.styleSheets].some((sheet) => sheet.href === href)) return;
  if (document.querySelector(`link[data-video-css]`)) return;
  document.head.append(element("link", { rel: "stylesheet", href, "data-video-css": "1" }));
}

function element(tag, props = {}, ...children) {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(props)) {
    if (key === "class") node.className = value;
    else if (key in node) node[key] = value;
    else node.setAttribute(key, value);
  }
  node.append(...children);
  return node;
}

// A <video> (muted, inline, looping) for a video file, an <img> for an animated image.
function media(src, isVideo, label) {
  if (!isVideo) return element("img", { src, alt: label, class: "video-frame" });
  return element("video", { src, muted: true, loop: true, playsInline: true, preload: "auto",
                            class: "video-frame", "aria-label": label });
}

function clock(seconds) {
  if (!Number.isFinite(seconds)) return "0:00";
  const m = Math.floor(seconds / 60);
  const s = Math.floor(seconds % 60).toString().padStart(2, "0");
  return `${m}:${s}`;
}

// Render the before/after of a finished video or animation job into `container` (emptied first).
// `job` is the job's JSON from /api/jobs/<id> (status "done"). Returns a function that stops the
// players and removes their listeners (call it when the card goes away).
export function showVideoResult(container, job) {
  ensureStyles();
  const result = job.result || {};
  const name = job.original_name || "video";
  const afterIsVideo = String(job.mime || "").startsWith("video/");
  const beforeIsVideo = job.kind === "video";
  const beforeUrl = job.before_url || result.original_path;
  const beforeName = `${name}, the original`;
  const afterName = `${name} upscaled, ${result.output_width}\u00d7${result.output_height}`;
  // An animation (both sides animated images) is drawn frame by frame in step where the browser can.
  const stepped = job.kind === "animation" && !afterIsVideo && canStepAnimations();
  const frame = (label) => element("canvas", { class: "video-frame", role: "img", "aria-label": label });
  const before = stepped ? frame(beforeName) : media(beforeUrl, beforeIsVideo, beforeName);
  const after = stepped ? frame(afterName) : media(result.output_path, afterIsVideo, afterName);
  const pair = stepped ? new AnimationPair(before, after) : null;
  const labels = ["Before", "After"].map((word) =>
    element("span", { class: `label label-${word.toLowerCase()}`, "aria-hidden": "true", textContent: word }));
  const stage = element("div", { class: "video-stage" }, before, after, ...labels);
  const split = element("input", { type: "range", min: 0, max: 100, value: 50, class: "video-split" });
  const splitLabel = element("label", { class: "video-label" }, "Before / after ", split);
  const layout = element("button", { type: "button", class: "video-layout", textContent: "Side by side" });
  const play = element("button", { type: "button", class: "video-play", textContent: "Pause" });
  const seek = element("input", { type: "range", min: 0, max: 1000, value: 0, class: "video-seek" });
  const seekLabel = element("label", { class: "video-label video-position" }, "Position ", seek);
  const time = element("span", { class: "video-time", textContent: "0:00" });
  const soundBox = element("input", { type: "checkbox", class: "video-sound" });
  const sound = element("label", { class: "pill" }, soundBox, " Sound");
  const frames = job.media?.frames ? `${job.media.frames} frames` : "";
  const facts = element("span", { class: "video-facts", textContent: frames });
  const controls = element("div", { class: "video-controls" }, play, seekLabel, time, sound, splitLabel, layout, facts);
  container.replaceChildren(element("div", { class: "video-viewer" }, stage, controls));

  const players = pair ? [pair] : [after, before].filter((node) => node.tagName === "VIDEO");
  const lead = pair || (afterIsVideo ? after : players[0]);
  let sideBySide = false;

  function applySplit() {
    // The result covers the original right of the split; side by side, each shows whole.
    after.style.clipPath = sideBySide ? "" : `inset(0 0 0 ${split.value}%)`;
  }

  function follow() {
    if (!lead) return;
    for (const other of players) {
      if (other !== lead && Math.abs(other.currentTime - lead.currentTime) > DRIFT_S) {
        other.currentTime = lead.currentTime;
      }
    }
    if (lead.duration) seek.value = String(Math.round((lead.currentTime / lead.duration) * 1000));
    // An animation lasts a second or two: its frames say more than its clock.
    time.textContent = pair ? `frame ${pair.frame + 1} of ${pair.starts.length}` :
      `${clock(lead.currentTime)} / ${clock(lead.duration)}`;
  }

  function setPlaying(playing) {
    for (const player of players) {
      if (playing) player.play().catch(() => {});
      else player.pause();
    }
    play.textContent = playing ? "Pause" : "Play";
  }

  const listeners = [
    [split, "input", applySplit],
    [layout, "click", () => {
      sideBySide = !sideBySide;
      stage.classList.toggle("side-by-side", sideBySide);
      splitLabel.hidden = sideBySide;
      layout.textContent = sideBySide ? "Overlay with a split" : "Side by side";
      applySplit();
    }],
    [play, "click", () => setPlaying(lead ? lead.paused : false)],
    [seek, "input", () => {
      if (lead?.duration) {
        for (const player of players) player.currentTime = (Number(seek.value) / 1000) * lead.duration;
      }
    }],
  ];
  // Players start muted; the box gives the result's sound (the original stays muted: one sound).
  listeners.push([soundBox, "change", () => { if (lead) lead.muted = !soundBox.checked; }]);
  if (lead) {
    listeners.push([lead, "timeupdate", follow], [lead, "seeked", follow]);
    listeners.push([lead, "play", () => setPlaying(true)], [lead, "pause", () => setPlaying(false)]);
  }
  for (const [node, type, fn] of listeners) node.addEventListener(type, fn);
  play.hidden = seekLabel.hidden = time.hidden = !lead;
  sound.hidden = !(lead?.tagName === "VIDEO");
  applySplit();
  if (pair) {
    pair.load(beforeUrl, result.output_path).then(() => { follow(); setPlaying(true); },
      () => { facts.textContent = `${frames}${frames ? "; " : ""}this browser cannot play the two sides in step`; });
  } else {
    setPlaying(true);
  }

  return function stop() {
    for (const [node, type, fn] of listeners) node.removeEventListener(type, fn);
    pair?.stop();
    for (const player of players.filter((p) => p !== pair)) {
      player.pause();
      player.removeAttribute("src");
      player.load();
    }
  };
}

// The quick preview of a running video job (a short MP4 of its first frames), in `container`.
export function showVideoPreview(container, job) {
  if (!job.preview_url) return;
  ensureStyles();
  const current = container.querySelector("video.video-preview");
  if (current?.getAttribute("src") === job.preview_url) return;
  container.replaceChildren(element("video", { src: job.preview_url, muted: true, loop: true, autoplay: true,
                                               playsInline: true, class: "video-preview",
                                               "aria-label": "Preview: the first frames upscaled" }));
}
