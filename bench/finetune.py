"""A real fine-tune and its effect on held-back images: PSNR/SSIM-Y before and after.

Fine-tunes from the real weights on the training split of ``--hr-dir`` (LR made on the fly by the
realistic degradation) and scores the pretrained and the fine-tuned generator on the images the
run never trained on (its val and test splits), with the same seeded degradations.

    python bench/finetune.py --hr-dir ../shared/datasets/Set14 --iters 1000 --batch 8 -o runs/set14 --device cuda
"""

from __future__ import annotations

import argparse
import sys
import time
from dataclasses import replace
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from esrgan.models.detect import load  # noqa: E402
from esrgan.train.config import TrainConfig  # noqa: E402
from esrgan.train.loop import Trainer  # noqa: E402


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--hr-dir", type=Path, required=True)
    parser.add_argument("--model", default="x4plus")
    parser.add_argument("--iters", type=int, default=1000)
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--patch", type=int, default=64)
    parser.add_argument("--device", default="auto")
    parser.add_argument("--perceptual", action="store_true", help="needs local VGG19 weights")
    parser.add_argument("-o", "--output", type=Path, required=True)
    args = parser.parse_args()

    config = replace(TrainConfig(), model=args.model, iters=args.iters, batch=args.batch, patch=args.patch,
                     device=args.device, val_every=max(50, args.iters // 4),
                     perceptual_weight=1.0 if args.perceptual else 0.0)
    trainer = Trainer(config, args.hr_dir, args.output)
    held = trainer.split.val + trainer.split.test
    pretrained = load(trainer.store.state_dict(config.model_name))[0].to(trainer.device)
    before = trainer.validate(held, pretrained)
    started = time.perf_counter()
    trainer.run()
    seconds = time.perf_counter() - started
    after = trainer.validate(held, trainer.net_ema or trainer.net_g)
    print(f"\nfine-tune of {config.model_name}: {trainer.step} iterations, batch {args.batch}, LR patch {args.patch}, "
          f"{seconds:.0f} s on {trainer.device}"
          + (f" ({__import__('torch').cuda.get_device_name()})" if trainer.device.type == "cuda" else ""))
    perceptual = (f" + perceptual x{config.perceptual_weight}" if config.perceptual_weight
                  else " (no perceptual: no VGG19 weights here)")
    print(f"losses: L1 x{config.pixel_weight} + GAN x{config.gan_weight}{perceptual}")
    print(f"held-back images ({len(held)}): {', '.join(p.name for p in held)}\n")
    print("| generator | PSNR-Y (dB) | SSIM-Y |")
    print("| --- | --- | --- |")
    print(f"| pretrained {config.model_name} | {before['psnr_y']:.2f} | {before['ssim_y']:.4f} |")
    print(f"| fine-tuned (EMA) | {after['psnr_y']:.2f} | {after['ssim_y']:.4f} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
