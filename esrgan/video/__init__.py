"""Video: upscale clips and animated images frame by frame, faithful to the source.

The engine takes a frame function, ``(H, W, 3) uint8 RGB -> (H', W', 3) uint8 RGB``, so it does not
depend on how frames are upscaled; `frame_upscaler` builds one from an `esrgan.pipeline.Upscaler`.

    from esrgan.video.frames import frame_upscaler
    from esrgan.video.options import VideoWork
    from esrgan.video.transcode import upscale_video
    fn = frame_upscaler(upscaler, scale=2)                  # realesr-animevideov3 unless told
    result = upscale_video("clip.mp4", "clip_x2.mp4", VideoWork(fn, 2, progress=bar, cancelled=stop))

Entry points:
    media_kind(path): "image", "animation" or "video", by content.
    probe(path, limits) -> VideoInfo: facts and limits, checked before any work.
    upscale_video(src, dst, work) -> VideoResult; ``work``: `esrgan.video.options.VideoWork` (the frame
        function, its scale, the encoder's options, the limits, progress and cancel), as for the others.
    plan_segments / upscale_segment / join_segments: the same work in segments cut at any frame by
        estimated work (resume, several workers), joined losslessly; preview_segment: the first
        frames, for a preview.
    probe_animation / upscale_animation: GIF, WebP, APNG in, the same kind (or a video) out.

Every refusal is a `VideoError` (see `esrgan.video.errors`), each also a kind of the engine's own
errors. Outputs are written atomically: nothing at the output path unless the whole file is.
"""
