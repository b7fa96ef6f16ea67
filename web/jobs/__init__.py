"""A job from upload to result: record, lifecycle, storage, ETA, estimate, preview, video runs, segment claims."""
