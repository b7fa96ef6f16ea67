// The two sides of an animated GIF, WebP or PNG comparison playing in step: both files are decoded
// frame by frame (WebCodecs' ImageDecoder) and each frame is drawn on both canvases at once, on one
// clock, so the original and the result never drift apart. It answers like a <video> (play, pause,
// paused, currentTime, duration, "play", "pause", "timeupdate" and "seeked" events), so the video
// viewer's controls drive it unchanged.

const DEFAULT_FRAME_S = 0.1; // a frame without a duration shows this long, as browsers do

// Whether this browser can decode animations frame by frame.
export const canStepAnimations = () => typeof window.ImageDecoder === "function";

async function decoderFor(url) {
  const response = await fetch(url);
  if (!response.ok) throw new Error(`${url}: ${response.status}`);
  const type = (response.headers.get("Content-Type") || "").split(";")[0].trim();
  const decoder = new window.ImageDecoder({ data: await response.arrayBuffer(), type });
  await decoder.tracks.ready;
  return decoder;
}

export class AnimationPair extends EventTarget {
  // `before` and `after`: the canvases the original's and the result's frames are drawn on.
  constructor(before, after) {
    super();
    this.canvases = [before, after];
    this.decoders = [];
    this.starts = []; // each frame's start, in seconds
    this.duration = NaN;
    this.frame = -1;
    this.position = 0; // seconds, while paused
    this.startedAt = null; // performance.now() of position 0 while playing
    this.drawing = null;
    this.stopped = false;
  }

  // Decode both files' headers and the result's frame times, and show the first frame.
  async load(beforeUrl, afterUrl) {
    this.decoders = await Promise.all([beforeUrl, afterUrl].map(decoderFor));
    const count = Math.min(...this.decoders.map((d) => d.tracks.selectedTrack.frameCount));
    let time = 0;
    for (let index = 0; index < count; index++) {
      const { image } = await this.decoders[1].decode({ frameIndex: index });
      this.starts.push(time);
      time += image.duration ? image.duration / 1e6 : DEFAULT_FRAME_S;
      image.close();
    }
    this.duration = time;
    await this.show(0);
    this.dispatchEvent(new Event("loadeddata"));
  }

  get paused() { return this.startedAt === null; }

  get currentTime() {
    if (this.paused || !this.duration) return this.position;
    return ((performance.now() - this.startedAt) / 1000) % this.duration;
  }

  set currentTime(seconds) {
    const playing = !this.paused;
    this.position = Math.min(Math.max(0, seconds), this.duration || 0);
    if (playing) this.startedAt = performance.now() - this.position * 1000;
    this.show(this.frameAt(this.position)).then(() => this.dispatchEvent(new Event("seeked")));
  }

  frameAt(seconds) {
    let index = 0;
    while (index + 1 < this.starts.length && this.starts[index + 1] <= seconds) index++;
    return index;
  }

  // Draw frame `index` of both files, together: neither canvas changes before both are decoded.
  async show(index) {
    if (this.stopped || !this.decoders.length) return;
    const frames = await Promise.all(this.decoders.map((d) => d.decode({ frameIndex: index })));
    if (!this.stopped) {
      frames.forEach(({ image }, side) => {
        const canvas = this.canvases[side];
        if (canvas.width !== image.displayWidth) canvas.width = image.displayWidth;
        if (canvas.height !== image.displayHeight) canvas.height = image.displayHeight;
        const context = canvas.getContext("2d");
        context.clearRect(0, 0, canvas.width, canvas.height);
        context.drawImage(image, 0, 0);
        canvas.dataset.frame = String(index);
      });
      this.frame = index;
    }
    frames.forEach(({ image }) => image.close());
  }

  async play() {
    if (!this.paused || this.stopped) return;
    this.startedAt = performance.now() - this.position * 1000;
    this.dispatchEvent(new Event("play"));
    const tick = async () => {
      if (this.paused || this.stopped) return;
      const index = this.frameAt(this.currentTime);
      if (index !== this.frame && !this.drawing) {
        this.drawing = this.show(index);
        await this.drawing;
        this.drawing = null;
        this.dispatchEvent(new Event("timeupdate"));
      }
      requestAnimationFrame(tick);
    };
    requestAnimationFrame(tick);
  }

  pause() {
    if (this.paused) return;
    this.position = this.currentTime;
    this.startedAt = null;
    this.dispatchEvent(new Event("pause"));
  }

  stop() {
    this.pause();
    this.stopped = true;
    for (const decoder of this.decoders) decoder.close();
  }
}
