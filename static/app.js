// Remaster page: choose or paste images, see the output size, time and known problems before sending,
// send them through a client-side queue (503 + Retry-After are retried), follow progress, compare
// before and after, download or copy. Jobs are remembered in localStorage, so a reload, back or a new
// tab brings them back until their files expire. Plain JavaScript, no build step, no external resources.
"use strict";

(() => {
  const $ = (id) => document.getElementById(id);
  const form = $("upscale-form");
  const input = $("file");
  const dropzone = $("dropzone");
  const selected = $("selected");
  const submit = $("submit");
  const message = $("form-message");
  const jobsList = $("jobs");
  const empty = $("empty");
  const zip = $("zip");
  const cancelAll = $("cancel-all");
  const summary = $("batch-summary");
  const offline = $("offline");
  const announcer = $("announcer");
  const format = $("format");
  const quality = $("quality");
  const qualityValue = $("quality-value");
  const modelSelect = $("model");
  const modelNote = $("model-note");
  const noiseSelect = $("noise");
  const template = $("job-template");
  const POLL_MS = 500;
  const STORE_KEY = "remaster.jobs";
  const SCALES = [2, 4, 8];
  const FINISHED = ["done", "failed", "cancelled"];

  let files = []; // {file, li, width, height, errors, fix}
  const cards = new Map(); // job id -> {card, job, name}
  let models = [];
  let sending = false;

  // --- words ---------------------------------------------------------------------------------

  const say = (text, isError = false) => {
    message.textContent = text;
    message.classList.toggle("error", isError);
  };
  const announce = (text) => { announcer.textContent = text; };
  const plural = (n, word) => `${n} ${word}${n === 1 ? "" : "s"}`;
  // "an 8x", "a 2x", "a 4x": the article follows the sound of the number.
  const article = (scale) => (String(scale).startsWith("8") || String(scale) === "11" ? "an" : "a");

  function formatSeconds(s) {
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

  const options = () => {
    const data = new FormData(form);
    return {
      scale: data.get("scale"),
      anime: $("anime").checked ? "true" : "false",
      noise: data.get("noise") || "none",
      model: data.get("model") || "auto",
      format: data.get("format") || "png",
      quality: data.get("quality") || "92",
    };
  };

  // --- the server's reachability -------------------------------------------------------------

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
  async function call(url, init) {
    try {
      const response = await fetch(url, init);
      setReachable(true);
      return response;
    } catch (error) {
      setReachable(false);
      throw Object.assign(new Error("the server cannot be reached"), { network: true });
    }
  }

  const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

  // --- remembered jobs (localStorage, keyed by job id) ---------------------------------------

  function remembered() {
    try { return JSON.parse(localStorage.getItem(STORE_KEY)) || {}; } catch { return {}; }
  }
  function remember(job, name) {
    const all = remembered();
    all[job.id] = { id: job.id, name, status_url: job.status_url, created: all[job.id]?.created || Date.now(),
                    expires_at: job.expires_at || null };
    try { localStorage.setItem(STORE_KEY, JSON.stringify(all)); } catch { /* private mode: no memory */ }
  }
  function forget(id) {
    const all = remembered();
    delete all[id];
    try { localStorage.setItem(STORE_KEY, JSON.stringify(all)); } catch { /* ignore */ }
  }

  // --- models and noise (contract C3, degrading while fields are missing) --------------------

  async function loadModels() {
    let body;
    try {
      const response = await call("/api/models");
      if (!response.ok) return;
      body = await response.json();
    } catch { return; }
    models = body.models || [];
    if (body.limits) form.dataset.maxOutputPixels = body.limits.max_output_pixels;
    const current = modelSelect.value;
    const auto = new Option("Automatic (best for the scale, content and noise)", "auto");
    const groups = new Map();
    for (const m of models) {
      const family = m.family || "Models";
      if (!groups.has(family)) {
        const group = document.createElement("optgroup");
        group.label = family;
        groups.set(family, group);
      }
      const native = m.native_scale || m.scale;
      const note = m.note ? ` \u2013 ${m.note}` : "";
      const option = new Option(`${m.title} (native ${native}\u00d7)${note}`, m.name);
      if (m.available === false) {
        option.disabled = true;
        option.textContent += " (not installed)";
      }
      groups.get(family).append(option);
    }
    modelSelect.replaceChildren(auto, ...groups.values());
    modelSelect.value = [...modelSelect.options].some((o) => o.value === current && !o.disabled) ? current : "auto";
    if (Array.isArray(body.noise_levels) && body.noise_levels.length) {
      const chosen = noiseSelect.value;
      noiseSelect.replaceChildren(...body.noise_levels.map((n) => new Option(n[0].toUpperCase() + n.slice(1), n)));
      noiseSelect.value = body.noise_levels.includes(chosen) ? chosen : body.noise_levels[0];
    }
    describeModel();
  }

  function describeModel() {
    const m = models.find((x) => x.name === modelSelect.value);
    if (!m) {
      modelNote.textContent = "Picks the model for the scale, content and noise reduction you chose.";
      return;
    }
    const noise = m.noise == null ? "" : ` Noise reduction: ${m.noise}.`;
    modelNote.textContent = `${m.note || m.title}${noise}`;
  }
  modelSelect.addEventListener("change", describeModel);

  // --- choosing files, estimates and known problems ------------------------------------------

  const imageSize = (file) => new Promise((resolve) => {
    const url = URL.createObjectURL(file);
    const img = new Image();
    img.onload = () => resolve({ url, width: img.naturalWidth, height: img.naturalHeight });
    img.onerror = () => resolve({ url: null, width: 0, height: 0 });
    img.src = url;
  });

  async function estimateFor(entry, opts) {
    const query = new URLSearchParams({ width: entry.width, height: entry.height, scale: opts.scale,
      anime: opts.anime, noise: opts.noise, model: opts.model, format: opts.format });
    const response = await call(`/api/estimate?${query}`);
    const body = await response.json();
    if (!response.ok) throw new Error(body.error);
    return body;
  }

  // The fix that really works for a file the server already refuses, found by asking the server
  // about the other choices (never "choose a smaller scale" when no scale would help).
  async function findFix(entry, opts) {
    const maxInput = Number(form.dataset.maxInputPixels);
    if (maxInput && entry.width * entry.height > maxInput) {
      return `Shrink or crop it below ${(maxInput / 1e6).toFixed(1)} MP before uploading.`;
    }
    const scales = [];
    for (const scale of SCALES.filter((s) => String(s) !== String(opts.scale))) {
      const body = await estimateFor(entry, { ...opts, scale });
      if (!body.errors.length) scales.push(scale);
    }
    if (scales.length) return `Choose ${article(scales[0])} ${scales.map((s) => `${s}\u00d7`).join(" or ")} scale instead.`;
    if (opts.format !== "png") {
      const body = await estimateFor(entry, { ...opts, format: "png" });
      if (!body.errors.length) return "Choose PNG as the output format instead.";
    }
    return "No scale or format fits this image: crop or shrink it first.";
  }

  let estimateRound = 0; // a newer round makes the answers of older ones stale

  async function refreshEstimates() {
    const round = ++estimateRound;
    const opts = options();
    for (const entry of files) {
      const note = entry.li.querySelector(".estimate");
      const fix = entry.li.querySelector(".fix");
      entry.errors = [];
      fix.textContent = "";
      if (!entry.width) {
        note.textContent = "the browser cannot preview this file; the server will check it";
        continue;
      }
      try {
        const body = await estimateFor(entry, opts);
        if (round !== estimateRound) return;
        entry.errors = body.errors || [];
        const size = `${entry.width}\u00d7${entry.height} \u2192 ${body.output_width}\u00d7${body.output_height}`;
        note.textContent = entry.errors.length ? `${size}: ${entry.errors.join("; ")}` :
          `${size}, about ${formatSeconds(body.seconds)}`;
        note.classList.toggle("warn", entry.errors.length > 0);
        if (entry.errors.length) {
          const text = await findFix(entry, opts);
          if (round !== estimateRound) return;
          fix.textContent = text;
        }
      } catch (error) {
        if (round !== estimateRound) return;
        note.textContent = `estimate unavailable: ${error.message}`;
      }
    }
    updateSubmit();
  }

  function updateSubmit() {
    const failing = files.filter((e) => e.errors && e.errors.length);
    submit.disabled = sending || files.length === 0 || failing.length > 0;
    if (!files.length) return;
    if (failing.length) {
      say(`${plural(failing.length, "file")} cannot be upscaled as chosen: see the fix next to ${failing.length === 1 ? "it" : "each"}, or remove ${failing.length === 1 ? "it" : "them"}.`, true);
    } else {
      say(`${plural(files.length, "file")} ready`);
    }
  }

  async function choose(list) {
    files = [];
    selected.replaceChildren();
    for (const file of list) {
      const li = document.createElement("li");
      const thumb = document.createElement("img");
      thumb.alt = "";
      const text = document.createElement("div");
      const name = document.createElement("div");
      name.textContent = file.name;
      const note = document.createElement("div");
      note.className = "estimate";
      const fix = document.createElement("div");
      fix.className = "fix";
      const remove = document.createElement("button");
      remove.type = "button";
      remove.className = "remove";
      remove.textContent = "Remove";
      remove.setAttribute("aria-label", `Remove ${file.name}`);
      text.append(name, note, fix);
      li.append(thumb, text, remove);
      selected.append(li);
      const size = await imageSize(file);
      if (size.url) thumb.src = size.url;
      const entry = { file, li, width: size.width, height: size.height, errors: [] };
      remove.addEventListener("click", () => {
        files = files.filter((e) => e !== entry);
        li.remove();
        updateSubmit();
        if (!files.length) say("");
      });
      files.push(entry);
    }
    updateSubmit();
    await refreshEstimates();
  }

  input.addEventListener("change", () => choose([...input.files]));
  ["dragenter", "dragover"].forEach((type) => dropzone.addEventListener(type, (event) => {
    event.preventDefault();
    dropzone.classList.add("dragover");
  }));
  ["dragleave", "drop"].forEach((type) => dropzone.addEventListener(type, () => dropzone.classList.remove("dragover")));
  dropzone.addEventListener("drop", (event) => {
    event.preventDefault();
    choose([...event.dataTransfer.files]);
  });
  document.addEventListener("paste", (event) => {
    const pasted = [...(event.clipboardData?.files || [])].filter((f) => f.type.startsWith("image/"));
    if (!pasted.length) return;
    event.preventDefault();
    const named = pasted.map((f, i) => (f.name && f.name !== "image.png" ? f :
      new File([f], `pasted-${new Date().toISOString().slice(0, 19).replace(/[:T]/g, "-")}${i ? `-${i}` : ""}.png`, { type: f.type })));
    choose(named);
  });
  form.addEventListener("change", (event) => {
    if (event.target !== input) refreshEstimates();
  });
  format.addEventListener("change", () => { quality.disabled = format.value === "png"; });
  quality.addEventListener("input", () => { qualityValue.textContent = quality.value; });

  // --- the comparison viewer -----------------------------------------------------------------

  function setupCompare(card, job) {
    const result = job.result;
    const view = card.querySelector(".compare");
    const stage = card.querySelector(".compare-stage");
    const before = card.querySelector(".before");
    const after = card.querySelector(".after");
    const line = card.querySelector(".compare-line");
    const split = card.querySelector(".split");
    const zoomInput = card.querySelector(".zoom");
    const zoomValue = card.querySelector(".zoom-value");
    const panMode = card.querySelector(".pan-mode");
    const pixelView = card.querySelector(".pixel-view");
    const name = job.original_name;
    after.src = result.output_path;
    before.src = job.before_url || result.original_path;
    after.alt = `${name} upscaled, ${result.output_width}\u00d7${result.output_height}`;
    before.alt = `${name} original, ${result.original_width}\u00d7${result.original_height}`;
    view.setAttribute("aria-label", `Comparison of ${name}: arrow keys pan when zoomed, + and - zoom`);

    let zoom = 1;
    let tx = 0;
    let ty = 0;
    let baseW = 0;
    let baseH = 0;

    // At 1x the whole result fits the screen (never blown up past its own size).
    function fit() {
      const maxW = view.parentElement.clientWidth;
      const maxH = Math.max(200, window.innerHeight * 0.75);
      const ratio = Math.min(1, maxW / result.output_width, maxH / result.output_height);
      baseW = Math.max(1, Math.round(result.output_width * ratio));
      baseH = Math.max(1, Math.round(result.output_height * ratio));
      view.style.width = `${baseW}px`;
      view.style.height = `${baseH}px`;
      stage.style.width = `${baseW}px`;
      stage.style.height = `${baseH}px`;
      apply();
    }
    function clamp() {
      tx = Math.min(0, Math.max(baseW - baseW * zoom, tx));
      ty = Math.min(0, Math.max(baseH - baseH * zoom, ty));
    }
    function apply() {
      clamp();
      stage.style.transform = `translate(${tx}px, ${ty}px) scale(${zoom})`;
      stage.style.setProperty("--split", `${split.value}%`);
      line.style.left = `${tx + (split.value / 100) * baseW * zoom}px`;
      zoomInput.value = zoom;
      zoomValue.textContent = `${+zoom.toFixed(2)}\u00d7`;
      view.classList.toggle("zoomed", zoom > 1);
    }
    function zoomAt(next, px, py) {
      next = Math.min(8, Math.max(1, next));
      tx = px - ((px - tx) * next) / zoom;
      ty = py - ((py - ty) * next) / zoom;
      zoom = next;
      apply();
    }
    function splitTo(clientX) {
      const box = view.getBoundingClientRect();
      const fraction = (clientX - box.left - tx) / (baseW * zoom);
      split.value = Math.round(Math.min(1, Math.max(0, fraction)) * 100);
      apply();
    }

    split.addEventListener("input", apply);
    zoomInput.addEventListener("input", () => zoomAt(Number(zoomInput.value), baseW / 2, baseH / 2));
    pixelView.addEventListener("change", () => view.classList.toggle("pixelated", pixelView.checked));
    card.querySelector(".fit").addEventListener("click", () => { zoom = 1; tx = 0; ty = 0; fit(); });
    window.addEventListener("resize", fit);

    // Pointers: one pointer moves the split (or pans with Shift, the middle button or Pan mode);
    // two pointers pinch-zoom around their midpoint.
    const pointers = new Map();
    let gesture = null;
    view.addEventListener("pointerdown", (event) => {
      view.setPointerCapture(event.pointerId);
      pointers.set(event.pointerId, { x: event.clientX, y: event.clientY });
      event.preventDefault();
      view.focus({ preventScroll: true });
      if (pointers.size === 2) {
        const [a, b] = [...pointers.values()];
        gesture = { kind: "pinch", distance: Math.hypot(a.x - b.x, a.y - b.y), zoom };
        return;
      }
      const pan = panMode.checked || event.shiftKey || event.button === 1;
      gesture = pan ? { kind: "pan", x: event.clientX, y: event.clientY, tx, ty } : { kind: "split" };
      if (!pan) splitTo(event.clientX);
    });
    view.addEventListener("pointermove", (event) => {
      if (!pointers.has(event.pointerId) || !gesture) return;
      pointers.set(event.pointerId, { x: event.clientX, y: event.clientY });
      if (gesture.kind === "split") splitTo(event.clientX);
      if (gesture.kind === "pan") {
        tx = gesture.tx + event.clientX - gesture.x;
        ty = gesture.ty + event.clientY - gesture.y;
        apply();
      }
      if (gesture.kind === "pinch" && pointers.size === 2) {
        const [a, b] = [...pointers.values()];
        const box = view.getBoundingClientRect();
        const ratio = Math.hypot(a.x - b.x, a.y - b.y) / (gesture.distance || 1);
        zoomAt(gesture.zoom * ratio, (a.x + b.x) / 2 - box.left, (a.y + b.y) / 2 - box.top);
      }
    });
    const release = (event) => {
      pointers.delete(event.pointerId);
      if (pointers.size === 0) gesture = null;
    };
    view.addEventListener("pointerup", release);
    view.addEventListener("pointercancel", release);
    view.addEventListener("dragstart", (event) => event.preventDefault());
    view.addEventListener("wheel", (event) => {
      event.preventDefault();
      const box = view.getBoundingClientRect();
      zoomAt(zoom * Math.exp(-event.deltaY * 0.002), event.clientX - box.left, event.clientY - box.top);
    }, { passive: false });
    view.addEventListener("keydown", (event) => {
      const step = 40;
      const moves = { ArrowLeft: [step, 0], ArrowRight: [-step, 0], ArrowUp: [0, step], ArrowDown: [0, -step] };
      if (moves[event.key] && zoom > 1) {
        tx += moves[event.key][0];
        ty += moves[event.key][1];
        apply();
      } else if (event.key === "+" || event.key === "=") {
        zoomAt(zoom * 1.5, baseW / 2, baseH / 2);
      } else if (event.key === "-") {
        zoomAt(zoom / 1.5, baseW / 2, baseH / 2);
      } else {
        return;
      }
      event.preventDefault();
    });
    fit();
  }

  // --- jobs ----------------------------------------------------------------------------------

  function showResult(entry, job) {
    const { card } = entry;
    const result = job.result;
    const name = entry.name || job.original_name;  // the name the person chose (the server may rename it)
    card.querySelector(".job-result").hidden = false;
    card.querySelector(".job-progress").hidden = true;
    card.querySelector(".job-preview").hidden = true;
    card.querySelector(".job-detail").hidden = true;
    setupCompare(card, { ...job, original_name: name });
    card.querySelector(".fact-original").textContent = `${result.original_width} \u00d7 ${result.original_height}`;
    card.querySelector(".fact-output").textContent = `${result.output_width} \u00d7 ${result.output_height}`;
    const p = result.provenance || {};
    card.querySelector(".fact-how").textContent =
      `${p.model_title || p.model || result.model} (native ${p.native_scale || result.native_scale}\u00d7)` +
      `${p.resample ? ` + ${p.resample}` : ""}${p.device ? `, ${p.device} ${p.precision || ""}` : ""}`;
    card.querySelector(".fact-time").textContent = p.seconds != null ?
      `${formatSeconds(p.seconds)}${p.tiles ? `, ${plural(p.tiles, "tile")}` : ""}` : "";
    const download = card.querySelector(".download");
    download.href = result.download_path;
    download.textContent = `Download ${name} (${result.output_width}\u00d7${result.output_height})`;
    const copy = card.querySelector(".copy");
    if (navigator.clipboard && window.ClipboardItem) {
      copy.hidden = false;
      copy.setAttribute("aria-label", `Copy ${name}`);
      copy.textContent = "Copy image";
      copy.onclick = () => copyResult(copy, result.output_path);
    }
  }

  // The clipboard takes PNG only, so other formats are redrawn as PNG first.
  async function copyResult(button, url) {
    try {
      const blob = await (await call(url)).blob();
      let png = blob;
      if (blob.type !== "image/png") {
        const bitmap = await createImageBitmap(blob);
        const canvas = document.createElement("canvas");
        canvas.width = bitmap.width;
        canvas.height = bitmap.height;
        canvas.getContext("2d").drawImage(bitmap, 0, 0);
        png = await new Promise((resolve) => canvas.toBlob(resolve, "image/png"));
      }
      await navigator.clipboard.write([new ClipboardItem({ "image/png": png })]);
      button.textContent = "Copied";
    } catch (error) {
      button.textContent = `Copy failed: ${error.message}`;
    }
  }

  function stateWords(job) {
    if (job.cancel_requested && !FINISHED.includes(job.status)) return "Cancelling...";
    switch (job.status) {
      case "queued": return "Waiting in the queue";
      case "running": return "Working";
      case "done": return "Done";
      case "failed": return `Failed: ${job.error || "unknown reason"}`;
      case "cancelled": return "Cancelled";
      default: return job.status;
    }
  }

  function render(entry, job) {
    const { card } = entry;
    const previous = entry.job;
    entry.job = job;
    card.className = `job card ${job.status}${job.cancel_requested && !FINISHED.includes(job.status) ? " cancelling" : ""}`;
    const words = entry.cancelling && !FINISHED.includes(job.status) ? "Cancelling..." : stateWords(job);
    card.querySelector(".job-state").textContent = words;
    if (!previous || previous.status !== job.status) announce(`${entry.name}: ${words}`);
    const bar = card.querySelector("progress");
    const progress = job.progress || {};
    const fraction = progress.fraction != null ? progress.fraction :
      (progress.total ? progress.done / progress.total : 0);
    if (job.status === "done") bar.value = 1;
    else if (job.status === "running" && (fraction > 0 || progress.total)) bar.value = fraction;
    else if (job.status === "queued") bar.value = 0;
    bar.setAttribute("aria-valuetext", `${Math.round(bar.value * 100)}%`);
    const detail = card.querySelector(".job-detail");
    const parts = [];
    if (job.stage_text) parts.push(job.stage_text);
    else if (job.status === "running" && progress.total) parts.push(`step ${progress.done} of ${progress.total}`);
    if (job.elapsed_seconds != null && !FINISHED.includes(job.status)) parts.push(`${formatSeconds(job.elapsed_seconds)} so far`);
    if (job.eta_seconds != null && job.status === "running") parts.push(`about ${formatSeconds(job.eta_seconds)} left`);
    detail.textContent = parts.join(" \u00b7 ");
    const cancel = card.querySelector(".cancel");
    if (FINISHED.includes(job.status) || job.cancel_requested || entry.cancelling) cancel.disabled = true;
    if (job.cancel_requested || entry.cancelling) cancel.textContent = "Cancelling...";
    cancel.hidden = FINISHED.includes(job.status);
    card.querySelector(".forget").hidden = !FINISHED.includes(job.status);
    if (job.preview_url && job.status !== "done") {
      const preview = card.querySelector(".preview");
      if (preview.getAttribute("src") !== job.preview_url) preview.src = job.preview_url;
      preview.alt = `Quick preview of ${entry.name}`;
      card.querySelector(".job-preview").hidden = false;
    }
  }

  async function follow(entry) {
    let job = entry.job;
    render(entry, job);
    let wait = POLL_MS;
    while (!FINISHED.includes(job.status)) {
      await sleep(wait);
      let response;
      try {
        response = await call(job.status_url);
      } catch {
        wait = Math.min(wait * 2, 5000); // unreachable: keep the card, back off, carry on when back
        continue;
      }
      wait = POLL_MS;
      if (response.status === 404) {
        expire(entry);
        return;
      }
      if (!response.ok) continue;
      job = await response.json();
      render(entry, job);
    }
    remember(job, entry.name);
    if (job.status === "done") showResult(entry, job);
    updateBatch();
  }

  // A job whose files expired drops out of the list and out of the memory.
  function expire(entry) {
    forget(entry.id);
    entry.card.remove();
    cards.delete(entry.id);
    updateBatch();
  }

  function newCard(name) {
    const card = template.content.firstElementChild.cloneNode(true);
    card.querySelector(".job-name").textContent = name;
    card.querySelector("progress").setAttribute("aria-label", name);
    const cancel = card.querySelector(".cancel");
    cancel.setAttribute("aria-label", `Cancel ${name}`);
    cancel.textContent = "Cancel";
    card.querySelector(".forget").setAttribute("aria-label", `Remove ${name} from the list`);
    empty.hidden = true;
    jobsList.prepend(card);
    return card;
  }

  function track(job, name, card) {
    const entry = { id: job.id, name, card, job, cancelling: false };
    cards.set(job.id, entry);
    card.querySelector(".cancel").addEventListener("click", () => cancel(entry));
    card.querySelector(".forget").addEventListener("click", () => {
      forget(entry.id);
      card.remove();
      cards.delete(entry.id);
      updateBatch();
    });
    remember(job, name);
    follow(entry);
    return entry;
  }

  async function cancel(entry) {
    if (entry.cancelling) return;
    entry.cancelling = true;
    const button = entry.card.querySelector(".cancel");
    button.disabled = true;
    button.textContent = "Cancelling...";
    entry.card.querySelector(".job-state").textContent = "Cancelling...";
    announce(`${entry.name}: Cancelling...`);
    try {
      const response = await call(entry.job.status_url, { method: "DELETE" });
      if (response.ok) render(entry, await response.json());
    } catch { /* the poll loop sees the outcome */ }
  }

  // --- the client-side queue -----------------------------------------------------------------

  const pending = []; // {entry (file), opts, card, name, status: "waiting"|"sent"|"refused"|"cancelled"}
  let pumping = false;
  let batch = null; // {total, items}

  function pendingCard(item) {
    const card = newCard(item.name);
    card.classList.add("waiting");
    card.querySelector(".job-state").textContent = "Waiting to be sent";
    const cancel = card.querySelector(".cancel");
    cancel.addEventListener("click", () => {
      if (item.status !== "waiting") return;
      item.status = "cancelled";
      card.className = "job card cancelled";
      card.querySelector(".job-state").textContent = "Cancelled before it was sent";
      cancel.disabled = true;
      cancel.hidden = true;
      updateBatch();
    }, { once: true });
    return card;
  }

  // Our own jobs leaving the server's queue free room sooner than Retry-After says; whichever comes first.
  function roomOrTimeout(seconds) {
    const inFlight = () => [...cards.values()].filter((e) => !FINISHED.includes(e.job.status)).length;
    const start = inFlight();
    return new Promise((resolve) => {
      const deadline = Date.now() + seconds * 1000;
      const tick = () => {
        if (Date.now() >= deadline || (start > 0 && inFlight() < start)) resolve();
        else setTimeout(tick, 250);
      };
      tick();
    });
  }

  async function sendOne(item) {
    const body = new FormData();
    body.append("file", item.file, item.name);
    Object.entries(item.opts).forEach(([key, value]) => body.append(key, value));
    for (;;) {
      if (item.status === "cancelled") return;
      let response;
      try {
        response = await call("/api/jobs", { method: "POST", body });
      } catch {
        item.card.querySelector(".job-state").textContent = "Waiting for the server to come back";
        await sleep(3000);
        continue;
      }
      let data = {};
      try { data = await response.json(); } catch { /* not JSON */ }
      if (response.status === 503) {
        const retry = Number(response.headers.get("Retry-After")) || 5;
        item.card.querySelector(".job-state").textContent = `The server is busy; sending again within ${formatSeconds(retry)}`;
        await roomOrTimeout(retry);
        continue;
      }
      if (!response.ok) {
        item.status = "refused";
        item.card.className = "job card failed";
        item.card.querySelector(".job-state").textContent = `Refused: ${data.error || response.statusText}`;
        item.card.querySelector(".cancel").hidden = true;
        item.card.querySelector(".forget").hidden = false;
        item.card.querySelector(".forget").onclick = () => { item.card.remove(); updateBatch(); };
        updateBatch();
        return;
      }
      item.status = "sent";
      const fresh = item.card.querySelector(".cancel");
      fresh.replaceWith(fresh.cloneNode(true)); // drop the "cancel before sending" handler
      item.card.classList.remove("waiting");
      item.entry = track(data, item.name, item.card);
      return;
    }
  }

  async function pump() {
    if (pumping) return;
    pumping = true;
    while (pending.length) {
      const item = pending.shift();
      await sendOne(item);
    }
    pumping = false;
  }

  function updateBatch() {
    const doneIds = [...cards.values()].filter((e) => e.job.status === "done").map((e) => e.id);
    zip.hidden = doneIds.length < 2;
    zip.href = `/api/jobs.zip?ids=${doneIds.join(",")}`;
    empty.hidden = jobsList.children.length > 0;
    const running = [...cards.values()].filter((e) => !FINISHED.includes(e.job.status)).length;
    cancelAll.hidden = running + pending.filter((i) => i.status === "waiting").length < 2;
    if (!batch) return;
    const count = { done: 0, failed: 0, cancelled: 0, working: 0 };
    for (const item of batch.items) {
      const status = item.status === "sent" ? item.entry?.job.status : item.status;
      if (status === "done") count.done++;
      else if (status === "failed" || status === "refused") count.failed++;
      else if (status === "cancelled") count.cancelled++;
      else count.working++;
    }
    summary.hidden = false;
    const end = count.working === 0;
    summary.textContent = `Batch of ${batch.items.length}: ${count.done} done` +
      `${count.failed ? `, ${count.failed} failed` : ""}${count.cancelled ? `, ${count.cancelled} cancelled` : ""}` +
      `${end ? "." : `, ${count.working} to go`}`;
    if (end && !batch.announced) {
      batch.announced = true;
      announce(summary.textContent);
    }
  }

  cancelAll.addEventListener("click", () => {
    for (const item of pending) if (item.status === "waiting") item.card.querySelector(".cancel").click();
    for (const entry of cards.values()) if (!FINISHED.includes(entry.job.status)) cancel(entry);
    updateBatch();
  });

  form.addEventListener("submit", (event) => {
    event.preventDefault();
    if (sending || !files.length || submit.disabled) return;
    sending = true; // no double submit: the chosen files are handed over once
    submit.disabled = true;
    const opts = options();
    const chosen = files;
    files = [];
    selected.replaceChildren();
    input.value = "";
    const items = chosen.map((entry) => ({ file: entry.file, name: entry.file.name, opts, status: "waiting" }));
    for (const item of items) item.card = pendingCard(item);
    batch = items.length > 1 ? { items, announced: false } : null;
    if (!batch) summary.hidden = true;
    pending.push(...items);
    say(`Sent ${plural(items.length, "image")}`);
    const first = items[0].card;
    first.scrollIntoView({ block: "start", behavior: "smooth" });
    first.querySelector(".job-name").focus({ preventScroll: true });
    updateBatch();
    pump();
    sending = false;
    updateSubmit();
  });

  // --- start: bring back remembered jobs -----------------------------------------------------

  async function restore() {
    const all = Object.values(remembered()).sort((a, b) => a.created - b.created);
    const now = Date.now() / 1000;
    for (const saved of all) {
      if (saved.expires_at && saved.expires_at < now) { forget(saved.id); continue; }
      let response;
      try {
        response = await call(saved.status_url);
      } catch {
        continue; // unreachable now: keep it remembered, the banner says why
      }
      if (response.status === 404) { forget(saved.id); continue; }
      if (!response.ok) continue;
      const job = await response.json();
      track(job, saved.name || job.original_name, newCard(saved.name || job.original_name));
    }
    updateBatch();
  }

  // While the server is unreachable, look for it now and then so the banner clears by itself.
  setInterval(async () => {
    if (reachable) return;
    try { await call("/healthz"); } catch { /* still away */ }
  }, 3000);

  loadModels();
  restore();
})();
