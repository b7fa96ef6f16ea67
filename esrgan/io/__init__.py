"""Files in and out: decode and encode, PNG chunks, metadata, atomic writes, the writer thread, resumable work."""
