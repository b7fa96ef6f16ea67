"""Research: int8 through ONNX Runtime for CPUs without native bf16 (not a shipped precision).

Post-training static quantisation: the network is exported to ONNX (torch's TorchScript exporter,
which works offline with torch 2.14), its convolutions quantised in QDQ format with per-channel
int8 weights and uint8 activations calibrated (min/max) on real photo crops the caller supplies,
with the sensitive convolutions kept in fp32: the first and last, and the ``conv5`` of every dense
block (it adds into the residual stream, whose range is ~36 against ~1 elsewhere). The result is
cached as ``weights/converted/<model>-int8.onnx``.

It stays out of ``--precision`` (README, "Performance"): post-training it holds 24-31 dB to fp32
on real photos, and on a CPU without VNNI even every convolution in int8 runs at 1.0-1.2x the
official fp32 path (ONNX Runtime, OpenVINO), so no accuracy recovered by fine-tuning could reach
the 2x it would be worth shipping for there. `onnxruntime`, `onnx`, `onnxscript` and (for its row)
`openvino` are needed only here and are not in requirements.txt.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from pathlib import Path

import numpy as np
import torch

log = logging.getLogger(__name__)

INT8_SUFFIX = "-int8.onnx"
FP32_SUFFIX = "-fp32.onnx"
EXPORT_SIDE = 64
RRDB_CONVS_PER_DENSE_BLOCK = 5


RECIPES = ("keep-sensitive", "every-conv")  # which convolutions become int8 (see `quantize`)


def onnx_path(weights_dir: Path, model: str, int8: bool = True, recipe: str = "keep-sensitive") -> Path:
    if not int8:
        return weights_dir / "converted" / f"{model}{FP32_SUFFIX}"
    tag = "" if recipe == "keep-sensitive" else f"-{recipe}"
    return weights_dir / "converted" / f"{model}{tag}{INT8_SUFFIX}"


def export_onnx(module: torch.nn.Module, path: Path) -> Path:
    """Export an fp32 NCHW network with dynamic height and width (opset 17)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    x = torch.rand(1, 3, EXPORT_SIDE, EXPORT_SIDE)
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)  # the TorchScript exporter is deprecated
        torch.onnx.export(module.float().eval(), (x,), str(path), input_names=["x"], output_names=["y"],
                          dynamic_axes={"x": {2: "h", 3: "w"}, "y": {2: "H", 3: "W"}}, dynamo=False,
                          opset_version=17)
    return path


def sensitive_convs(onnx_model) -> list[str]:
    """Conv nodes kept in fp32: the first, the last, and each dense block's conv5."""
    convs = [n.name for n in onnx_model.graph.node if n.op_type == "Conv"]
    conv5 = [name for name in convs if "/rdb" in name and name.endswith("conv5/Conv")]
    return [convs[0], convs[-1], *conv5]


def quantize(fp32_path: Path, int8_path: Path, calibration: Iterable[np.ndarray],
             recipe: str = "keep-sensitive") -> Path:
    """Static int8 QDQ quantisation of the convolutions, per-channel weights, min/max calibration.

    Weights use 7 bits (``reduce_range``): without VNNI the u8 x s8 products are summed in
    pairs into saturating int16 (vpmaddubsw), which 8-bit weights can overflow.

    Args:
        fp32_path: The exported fp32 ONNX model.
        int8_path: Where to write the quantised model.
        calibration: (1, 3, h, w) float32 RGB crops in [0, 1] of real photos.
        recipe: ``"keep-sensitive"`` keeps the first, last and every conv5 in fp32;
            ``"every-conv"`` quantises them all (the speed ceiling of int8 convolutions).
    """
    import onnx
    from onnxruntime.quantization import (
        CalibrationDataReader,
        CalibrationMethod,
        QuantFormat,
        QuantType,
        quantize_static,
    )

    batches = iter([{"x": np.ascontiguousarray(a, dtype=np.float32)} for a in calibration])

    class Reader(CalibrationDataReader):
        def get_next(self):
            return next(batches, None)

    excluded = sensitive_convs(onnx.load(str(fp32_path))) if recipe == "keep-sensitive" else []
    quantize_static(str(fp32_path), str(int8_path), Reader(), quant_format=QuantFormat.QDQ, per_channel=True,
                    reduce_range=True, activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8,
                    nodes_to_exclude=excluded, op_types_to_quantize=["Conv"],
                    calibrate_method=CalibrationMethod.MinMax)
    return int8_path


class OrtModule(torch.nn.Module):
    """An ONNX Runtime session behind the nn.Module call `esrgan.tiling.run.upscale_tiled` makes."""

    def __init__(self, path: Path, threads: int | None = None) -> None:
        super().__init__()
        import onnxruntime as ort

        options = ort.SessionOptions()
        options.intra_op_num_threads = threads or torch.get_num_threads()
        self.session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.session.run(None, {"x": x.float().contiguous().numpy()})[0]
        return torch.from_numpy(y)


class OpenVinoModule(torch.nn.Module):
    """The same QDQ model compiled by OpenVINO's CPU plugin (it runs QDQ convolutions in int8)."""

    def __init__(self, path: Path, threads: int | None = None) -> None:
        super().__init__()
        import openvino as ov

        self.core, self.path = ov.Core(), path
        self.threads = threads or torch.get_num_threads()
        self.compiled: dict[tuple[int, ...], object] = {}

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        shape = tuple(x.shape)
        if shape not in self.compiled:  # one static shape each: OpenVINO's fastest kernels
            network = self.core.read_model(str(self.path))
            network.reshape({"x": list(shape)})
            self.compiled[shape] = self.core.compile_model(
                network, "CPU", {"INFERENCE_NUM_THREADS": self.threads, "PERFORMANCE_HINT": "LATENCY",
                                 "INFERENCE_PRECISION_HINT": "f32"})
        return torch.from_numpy(self.compiled[shape]({"x": x.float().contiguous().numpy()})[0].copy())


def build_int8(store, model: str, calibration: Iterable[np.ndarray], recipe: str = "keep-sensitive") -> Path:
    """Export and quantise ``model`` from ``store`` into the converted folder; returns the int8 path."""
    fp32_path = onnx_path(store.weights_dir, model, int8=False)
    if not fp32_path.is_file():
        export_onnx(store.load(model, "cpu", torch.float32).module, fp32_path)
    return quantize(fp32_path, onnx_path(store.weights_dir, model, recipe=recipe), calibration, recipe)


def load_int8(store, model: str, recipe: str = "keep-sensitive", runtime: str = "onnxruntime") -> torch.nn.Module:
    """The int8 model built by `build_int8`, run by ONNX Runtime or OpenVINO. Raises RuntimeError
    when it has not been built."""
    path = onnx_path(store.weights_dir, model, recipe=recipe)
    if not path.is_file():
        raise RuntimeError(f"no int8 model at {path}; build it with bench/speed.py --int8")
    return OpenVinoModule(path) if runtime == "openvino" else OrtModule(path)
