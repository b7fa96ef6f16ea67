"""Align faces to the FFHQ template, and paste restored faces back over the upscaled image.

This is the semantics of Real-ESRGAN's ``--face_enhance`` (GFPGANer with facexlib's
FaceRestoreHelper, without its face-parsing network, which would need a download): find faces on
the original image, warp each by the similarity transform that takes its five landmarks onto the
512x512 FFHQ template, restore it, then warp it back with the inverse transform scaled to the
upscaled canvas and blend it in through a square mask eroded and Gaussian-feathered at its edge.
Pixels the mask does not reach are the upscaled image's, unchanged.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Protocol

import cv2
import numpy as np

from esrgan.faces.mtcnn import Face
from esrgan.faces.restorer import FACE_SIZE

# Five landmarks of the 512x512 FFHQ alignment (facexlib's template, as GFPGAN was trained on).
FFHQ_TEMPLATE_512 = np.array([[192.98138, 239.94708], [318.90277, 240.1936], [256.63416, 314.01935],
                              [201.26117, 371.41043], [313.08905, 371.15118]], dtype=np.float32)
BORDER_RGB = (135 / 255, 133 / 255, 132 / 255)  # facexlib's fill outside the image: a neutral grey
MIN_EYE_DISTANCE = 5.0  # px on the original; smaller faces are left to the upscaler (as upstream)
FEATHER_FRACTION = 20  # edge width = sqrt(face area on the canvas) / 20, as upstream


class Detector(Protocol):
    def detect(self, rgb: np.ndarray) -> list[Face]: ...


class Restorer(Protocol):
    def restore(self, faces: np.ndarray) -> np.ndarray: ...


def alignment(landmarks: np.ndarray) -> np.ndarray:
    """The 2x3 similarity transform taking five landmarks onto the FFHQ template (robust fit)."""
    matrix, _ = cv2.estimateAffinePartial2D(landmarks.astype(np.float32), FFHQ_TEMPLATE_512, method=cv2.LMEDS)
    if matrix is None:  # degenerate landmarks: fall back to the eyes alone
        matrix = box_alignment(landmarks)
    return matrix


def box_alignment(points: np.ndarray) -> np.ndarray:
    """A scale-and-shift transform putting the points' bounding square (grown by half) on the crop,
    for detectors that give no usable landmarks."""
    (x1, y1), (x2, y2) = points.min(axis=0), points.max(axis=0)
    side = max(x2 - x1, y2 - y1, 1.0) * 1.5
    cx, cy = (x1 + x2) / 2, (y1 + y2) / 2
    k = FACE_SIZE / side
    return np.array([[k, 0, FACE_SIZE / 2 - k * cx], [0, k, FACE_SIZE / 2 - k * cy]], dtype=np.float64)


def crop_face(rgb: np.ndarray, matrix: np.ndarray) -> np.ndarray:
    """The aligned 512x512 face: (512, 512, 3) float32 in [0, 1]."""
    return cv2.warpAffine(rgb, matrix, (FACE_SIZE, FACE_SIZE), flags=cv2.INTER_LINEAR,
                          borderMode=cv2.BORDER_CONSTANT, borderValue=BORDER_RGB)


def to_canvas(matrix: np.ndarray, scale: float) -> np.ndarray:
    """The inverse of an alignment, from the 512 crop to the upscaled canvas.

    Pixel centres map as x_up = s * (x + 0.5) - 0.5, so the shift is s/2 - 1/2.
    """
    inverse = cv2.invertAffineTransform(matrix) * scale
    inverse[:, 2] += scale / 2 - 0.5
    return inverse


def soft_mask(mask: np.ndarray, scale: float) -> np.ndarray:
    """Feather a warped 0/1 face mask: erode past the resampled rim, then blur a band inside it."""
    rim = max(1, int(round(2 * scale)))
    mask = cv2.erode(mask, np.ones((rim, rim), np.uint8))
    edge = int(math.sqrt(float(mask.sum()))) // FEATHER_FRACTION
    if edge < 1:
        return mask
    mask = cv2.erode(mask, np.ones((2 * edge, 2 * edge), np.uint8))
    return cv2.GaussianBlur(mask, (2 * edge + 1, 2 * edge + 1), 0)


def paste_face(canvas: np.ndarray, face: np.ndarray, inverse: np.ndarray, scale: float) -> None:
    """Blend one restored face into the canvas in place, only over its own region (``scale``: the
    canvas's over the original's, which sets the width of the resampled rim to erode)."""
    height, width = canvas.shape[:2]
    corners = np.array([[0, 0, 1], [FACE_SIZE, 0, 1], [0, FACE_SIZE, 1], [FACE_SIZE, FACE_SIZE, 1]], np.float64)
    mapped = corners @ inverse.T
    x0, y0 = (max(0, int(math.floor(v)) - 2) for v in mapped.min(axis=0))
    x1, y1 = min(width, int(math.ceil(mapped[:, 0].max())) + 2), min(height, int(math.ceil(mapped[:, 1].max())) + 2)
    if x1 <= x0 or y1 <= y0:
        return
    shifted = inverse.copy()
    shifted[:, 2] -= (x0, y0)
    size = (x1 - x0, y1 - y0)
    warped = cv2.warpAffine(face, shifted, size, flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT)
    mask = cv2.warpAffine(np.ones((FACE_SIZE, FACE_SIZE), np.float32), shifted, size, flags=cv2.INTER_LINEAR)
    weight = soft_mask(mask, scale)[:, :, None]
    region = canvas[y0:y1, x0:x1]
    region[...] = weight * warped + (1 - weight) * region


def restore_faces(original_rgb: np.ndarray, upscaled_rgb: np.ndarray, scale: float,
                  restorer: Restorer, detector: Detector, max_faces: int | None = None) -> np.ndarray:
    """Restore the faces of an image over its upscaled version (Real-ESRGAN's ``--face_enhance``).

    Args:
        original_rgb: The input, (H, W, 3) float32 RGB in [0, 1]; faces are found here.
        upscaled_rgb: The upscaled result, (round(H * scale), round(W * scale), 3), same contract.
        scale: The output scale (the canvas/original ratio; checked against the shapes).
        restorer: Restores (N, 512, 512, 3) aligned faces (a `FaceRestorer`).
        detector: Finds faces with five landmarks (an `MTCNN`).
        max_faces: Restore at most this many (largest score first); None: all.

    Returns:
        A new (H', W', 3) float32 array in [0, 1]; equal to ``upscaled_rgb`` away from faces.

    Raises:
        ValueError: The shapes do not match the scale (a programming error, not a user's).
    """
    height, width = original_rgb.shape[:2]
    if abs(upscaled_rgb.shape[0] - height * scale) > 1 or abs(upscaled_rgb.shape[1] - width * scale) > 1:
        raise ValueError(f"upscaled {upscaled_rgb.shape[:2]} is not {scale}x of {original_rgb.shape[:2]}")
    faces = select(detector.detect(original_rgb), max_faces)
    out = upscaled_rgb.astype(np.float32, copy=True)
    if not faces:
        return out
    canvas_scale = upscaled_rgb.shape[1] / width
    for face in faces:  # one at a time: a 512 px GFPGAN pass holds ~1 GB of activations
        matrix = alignment(face.landmarks)
        restored = restorer.restore(crop_face(original_rgb, matrix)[None])[0]
        paste_face(out, restored, to_canvas(matrix, canvas_scale), canvas_scale)
    return np.clip(out, 0, 1, out=out)


def select(faces: Sequence[Face], max_faces: int | None) -> list[Face]:
    """Faces big enough to restore (eyes at least `MIN_EYE_DISTANCE` apart), at most ``max_faces``."""
    kept = [f for f in faces if np.linalg.norm(f.landmarks[0] - f.landmarks[1]) >= MIN_EYE_DISTANCE]
    return kept if max_faces is None else kept[:max_faces]
