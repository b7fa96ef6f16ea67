"""How large a tile fits: the tile side follows the memory free on the device (RAM on the CPU, VRAM
on CUDA), as chaiNNer and realcugan-ncnn-vulkan size theirs. An out-of-memory error all the same
halves the tile (`esrgan.tiling.run`)."""

from __future__ import annotations

import os

import torch

DEFAULT_TILE_CPU = 384  # bench/speed.py: larger tiles waste less on context
MIN_TILE_CPU = 128
# x4plus activations on the CPU per pixel of tile window, bf16 (fp32: twice), measured: ~700 MB for a
# 432 px window. When the float32 output canvas alone passes LARGE_CANVAS_BYTES, tiles shrink so
# the activations stay near CPU_ACTIVATION_BUDGET (bench/speed.py --big: 2048 px at 4x within
# canvas + 1.5 GB, at ~7% more time than 384 px tiles).
CPU_ACTIVATION_BYTES_PER_PIXEL = 3.8e3
CPU_ACTIVATION_BUDGET = 384 * 2**20
LARGE_CANVAS_BYTES = 512 * 2**20
RAM_SHARE = 0.5  # of the RAM available, what one tile's activations may take
# GPU memory per input pixel of x4plus in fp16, measured on an H100 (bench/speed.py: 9.2 GB for a
# 1040x1040 window); fp32 takes twice as much. Tiles are sized to half the free GPU memory.
CUDA_BYTES_PER_PIXEL_FP16 = 8.5 * 1024
CUDA_TILE_RANGE = (256, 2048)


def available_ram() -> int:
    """Bytes of RAM the system can give without swapping (MemAvailable), or the free pages."""
    try:
        with open("/proc/meminfo") as handle:
            for line in handle:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")


def cpu_tile(output_pixels: int, tile_pad: int, half_precision: bool, ram: int | None = None) -> int:
    """The CPU tile side: `DEFAULT_TILE_CPU` (fastest), smaller when a huge output canvas needs the
    room or when the RAM left after the canvas holds less than one such tile's activations."""
    per_pixel = CPU_ACTIVATION_BYTES_PER_PIXEL * (1 if half_precision else 2)
    canvas = output_pixels * 3 * 4
    budget = RAM_SHARE * ((available_ram() if ram is None else ram) - canvas)
    if canvas > LARGE_CANVAS_BYTES:
        budget = min(budget, CPU_ACTIVATION_BUDGET)
    window = int((max(budget, 0) / per_pixel) ** 0.5)
    return max(MIN_TILE_CPU, min(DEFAULT_TILE_CPU, (window - 2 * tile_pad) // 16 * 16))


def cuda_tile(device: torch.device, half_precision: bool) -> int:
    """The CUDA tile side: as large as half the free GPU memory holds."""
    free, _ = torch.cuda.mem_get_info(device)
    per_pixel = CUDA_BYTES_PER_PIXEL_FP16 * (1 if half_precision else 2)
    side = int((0.5 * free / per_pixel) ** 0.5) // 64 * 64
    return max(CUDA_TILE_RANGE[0], min(CUDA_TILE_RANGE[1], side))
