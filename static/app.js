// Remaster page: pick files, see output size and time estimate, submit jobs, follow progress,
// compare before and after, download. Plain JavaScript, no build step, no external resources.
"use strict";

(() => {
  const form = document.getElementById("upscale-form");
  const input = document.getElementById("file");
  const dropzone = document.getElementById("dropzone");
  const selected = document.getElementById("selected");
  const submit = document.getElementById("submit");
  const message = document.getElementById("form-message");
  const jobsList = document.getElementById("jobs");
  const empty = document.getElementById("empty");
  const zip = document.getElementById("zip");
  const format = document.getElementById("format");
  const quality = document.getElementById("quality");
  const qualityValue = document.getElementById("quality-value");
  const template = document.getElementById("job-template");
  const POLL_MS = 500;

  let files = [];
  const finished = new Map(); // job id -> true when done

  const say = (text, isError = false) => {
    message.textContent = text;
    message.classList.toggle("error", isError);
  };

  const options = () => {
    const data = new FormData(form);
    return {
      scale: data.get("scale"),
      anime: document.getElementById("anime").checked ? "true" : "false",
      model: data.get("model"),
      format: data.get("format"),
      quality: data.get("quality") || "92",
    };
  };

  const formatSeconds = (s) => {
    if (s == null) return "";
    if (s < 60) return `${Math.max(1, Math.round(s))} s`;
    const m = Math.floor(s / 60);
    return `${m} min ${Math.round(s - m * 60)} s`;
  };

  // --- choosing files and estimates ---------------------------------------------------------

  const imageSize = (file) => new Promise((resolve) => {
    const url = URL.createObjectURL(file);
    const img = new Image();
    img.onload = () => resolve({ url, width: img.naturalWidth, height: img.naturalHeight });
    img.onerror = () => resolve({ url: null, width: 0, height: 0 });
    img.src = url;
  });

  let estimateRound = 0; // a newer round of estimates makes the answers of older ones stale

  async function refreshEstimates() {
    const round = ++estimateRound;
    const opts = options();
    for (const entry of files) {
      const note = entry.li.querySelector(".estimate");
      if (!entry.width) {
        note.textContent = "the browser cannot preview this file; the server will check it";
        continue;
      }
      const query = new URLSearchParams({ width: entry.width, height: entry.height, scale: opts.scale,
        anime: opts.anime, model: opts.model });
      try {
        const response = await fetch(`/api/estimate?${query}`);
        const body = await response.json();
        if (round !== estimateRound) return;
        if (!response.ok) throw new Error(body.error);
        const warn = body.errors.length ? ` — ${body.errors.join("; ")}` : "";
        note.textContent = `${entry.width}×${entry.height} → ${body.output_width}×${body.output_height}, ` +
          `about ${formatSeconds(body.seconds)}${warn}`;
        note.classList.toggle("warn", body.errors.length > 0);
      } catch (error) {
        note.textContent = `estimate unavailable: ${error.message}`;
      }
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
      text.append(name, note);
      li.append(thumb, text);
      selected.append(li);
      const size = await imageSize(file);
      if (size.url) thumb.src = size.url;
      files.push({ file, li, width: size.width, height: size.height });
    }
    submit.disabled = files.length === 0;
    say(files.length ? `${files.length} file${files.length > 1 ? "s" : ""} ready` : "");
    refreshEstimates();
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
  form.addEventListener("change", (event) => {
    if (event.target !== input) refreshEstimates();
  });
  format.addEventListener("change", () => { quality.disabled = format.value === "png"; });
  quality.addEventListener("input", () => { qualityValue.textContent = quality.value; });

  // --- jobs ----------------------------------------------------------------------------------

  function setupCompare(card, result) {
    const stage = card.querySelector(".compare-stage");
    const before = card.querySelector(".before");
    const after = card.querySelector(".after");
    const split = card.querySelector(".split");
    const zoom = card.querySelector(".zoom");
    const zoomValue = card.querySelector(".zoom-value");
    after.src = result.output_path;
    before.src = result.original_path;
    after.alt = `Upscaled result, ${result.output_width}×${result.output_height}`;
    before.alt = `Original, ${result.original_width}×${result.original_height}`;
    const applySplit = () => stage.style.setProperty("--split", `${split.value}%`);
    split.addEventListener("input", applySplit);
    applySplit();
    // At 1x the result is shown at most at its own size (small results are not blown up),
    // and never narrower than a comfortable viewing width; zoom enlarges from there.
    const baseWidth = Math.max(result.output_width, 480);
    const applyZoom = () => {
      stage.style.width = `${zoom.value * 100}%`;
      stage.style.maxWidth = `${baseWidth * zoom.value}px`;
      zoomValue.textContent = `${zoom.value}×`;
    };
    zoom.addEventListener("input", applyZoom);
    applyZoom();
    stage.addEventListener("pointermove", (event) => {
      if (event.buttons !== 1) return;
      const box = stage.getBoundingClientRect();
      split.value = Math.round(((event.clientX - box.left) / box.width) * 100);
      applySplit();
    });
  }

  function showResult(card, job) {
    const result = job.result;
    card.querySelector(".job-result").hidden = false;
    card.querySelector(".job-progress").hidden = true;
    setupCompare(card, result);
    card.querySelector(".fact-original").textContent = `${result.original_width} × ${result.original_height}`;
    card.querySelector(".fact-output").textContent = `${result.output_width} × ${result.output_height}`;
    const p = result.provenance;
    card.querySelector(".fact-how").textContent =
      `${p.model_title} (native ${p.native_scale}×)${p.resample ? ` + ${p.resample}` : ""}, ${p.device} ${p.precision}`;
    card.querySelector(".fact-time").textContent = `${p.seconds.toFixed(1)} s, ${p.tiles} tile${p.tiles > 1 ? "s" : ""}`;
    const download = card.querySelector(".download");
    download.href = result.download_path;
    download.textContent = `Download ${result.output_width}×${result.output_height}`;
  }

  function render(card, job) {
    card.className = `job card ${job.status}`;
    const state = card.querySelector(".job-state");
    const bar = card.querySelector("progress");
    const { done, total } = job.progress;
    if (job.status === "queued") state.textContent = "Waiting in the queue…";
    if (job.status === "running") {
      bar.max = total || 1;
      bar.value = done;
      const eta = job.eta_seconds != null ? `, about ${formatSeconds(job.eta_seconds)} left` : "";
      state.textContent = total ? `Working: tile ${done} of ${total}${eta}` : "Starting…";
    }
    if (job.status === "done") state.textContent = "Done";
    if (job.status === "failed") state.textContent = `Failed: ${job.error}`;
    if (job.status === "cancelled") state.textContent = "Cancelled";
    if (job.status !== "queued" && job.status !== "running") card.querySelector(".cancel").disabled = true;
  }

  async function follow(card, job) {
    render(card, job);
    while (job.status === "queued" || job.status === "running") {
      await new Promise((resolve) => setTimeout(resolve, POLL_MS));
      try {
        const response = await fetch(job.status_url);
        if (!response.ok) throw new Error((await response.json()).error);
        job = await response.json();
      } catch (error) {
        card.querySelector(".job-state").textContent = `Lost track of the job: ${error.message}`;
        return;
      }
      render(card, job);
    }
    if (job.status === "done") {
      showResult(card, job);
      finished.set(job.id, true);
      updateZip();
    }
  }

  function updateZip() {
    const ids = [...finished.keys()];
    zip.hidden = ids.length < 2;
    zip.href = `/api/jobs.zip?ids=${ids.join(",")}`;
  }

  function newCard(name) {
    const card = template.content.firstElementChild.cloneNode(true);
    card.querySelector(".job-name").textContent = name;
    empty.hidden = true;
    jobsList.prepend(card);
    return card;
  }

  async function start(entry, opts) {
    const card = newCard(entry.file.name);
    const body = new FormData();
    body.append("file", entry.file, entry.file.name);
    Object.entries(opts).forEach(([key, value]) => body.append(key, value));
    let job;
    try {
      const response = await fetch("/api/jobs", { method: "POST", body });
      const data = await response.json();
      if (!response.ok) {
        const retry = response.headers.get("Retry-After");
        throw new Error(data.error + (retry ? ` (try again in ${retry} s)` : ""));
      }
      job = data;
    } catch (error) {
      card.className = "job card failed";
      card.querySelector(".job-state").textContent = `Refused: ${error.message}`;
      card.querySelector(".cancel").disabled = true;
      return;
    }
    card.querySelector(".cancel").addEventListener("click", async () => {
      await fetch(job.status_url, { method: "DELETE" });
    });
    await follow(card, job);
  }

  form.addEventListener("submit", (event) => {
    event.preventDefault();
    if (!files.length) return;
    const opts = options();
    say(`Sent ${files.length} image${files.length > 1 ? "s" : ""}`);
    files.forEach((entry) => start(entry, opts));
  });
})();
