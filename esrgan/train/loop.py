"""The fine-tuning loop: frozen early layers, L1 + perceptual + U-Net GAN, EMA, validation, resume."""

from __future__ import annotations

import copy
import csv
import json
import logging
import math
import re
import time
from dataclasses import asdict, replace
from pathlib import Path

import numpy as np
import torch
from torch.nn.utils import clip_grad_norm_
from tqdm import tqdm

from esrgan import archs
from esrgan.archs import UNetDiscriminatorSN
from esrgan.errors import ConfigError, RemasterError, TrainingError
from esrgan.io.imageio import to_uint8
from esrgan.models.detect import ModelDescriptor, detect, load
from esrgan.models.store import ModelStore, resolve_device
from esrgan.quality.degrade import degrade
from esrgan.quality.metrics import quality
from esrgan.train.config import TrainConfig
from esrgan.train.data import PatchSampler, Split, load_rgb, split_folder
from esrgan.train.losses import PerceptualLoss, gan_loss, pixel_loss
from esrgan.train.report import plot_log, upscale_command

log = logging.getLogger(__name__)

CHECKPOINT = "last.pt"
MODEL_FILE = "model.pth"
LOG_FILE = "log.csv"


def expand_freeze(rule: str) -> list[str]:
    """``"conv_first,body.0-2"`` -> ``["conv_first", "body.0", "body.1", "body.2"]``."""
    prefixes = []
    for part in (p.strip() for p in rule.split(",") if p.strip()):
        match = re.fullmatch(r"(.*\.)(\d+)-(\d+)", part)
        if match:
            head, first, last = match[1], int(match[2]), int(match[3])
            prefixes += [f"{head}{i}" for i in range(first, last + 1)]
        else:
            prefixes.append(part)
    return prefixes


def default_freeze(arch: ModelDescriptor) -> str:
    """The layers fine-tuning keeps unless told otherwise: the architecture's own rule."""
    if arch.architecture is None:
        raise RemasterError(f"{arch.arch} networks cannot be fine-tuned")
    return arch.architecture.default_freeze(arch.arch_args)


def trainable_descriptor(state: dict[str, torch.Tensor], name: str) -> ModelDescriptor:
    """What the model to fine-tune is; raises RemasterError for architectures we cannot train."""
    arch = detect(state)
    if not arch.ours:
        trainable = ", ".join(f"{a.family} {a.network.__name__}" for a in archs.ARCHITECTURES)
        raise RemasterError(f"{name} is a {arch.arch.removeprefix('spandrel:')} network, which runs here but "
                            f"cannot be fine-tuned: training supports {trainable}")
    return arch


def freeze(model: torch.nn.Module, rule: str) -> tuple[int, int]:
    """Freeze parameters whose names start with a prefix of ``rule``; returns (trainable, frozen)."""
    prefixes = expand_freeze(rule)
    names = [n for n, _ in model.named_parameters()]
    for prefix in prefixes:
        if not any(n == prefix or n.startswith(prefix + ".") for n in names):
            raise ConfigError(f"--freeze names {prefix!r}, which is no layer of this model")
    trainable = frozen = 0
    for name, parameter in model.named_parameters():
        fixed = any(name == p or name.startswith(p + ".") for p in prefixes)
        parameter.requires_grad_(not fixed)
        if fixed:
            frozen += parameter.numel()
        else:
            trainable += parameter.numel()
    return trainable, frozen


class Trainer:
    """Fine-tunes one generator. Everything it does is in ``run_dir``; `run` resumes if it can."""

    def __init__(self, config: TrainConfig, hr_dir: Path, run_dir: Path, store: ModelStore | None = None,
                 lr_dir: Path | None = None, vgg_weights: Path | None = None) -> None:
        self.cfg, self.hr_dir, self.run_dir, self.lr_dir = config, hr_dir, run_dir, lr_dir
        self.device = resolve_device(config.device)
        self.store = store or ModelStore()
        run_dir.mkdir(parents=True, exist_ok=True)
        torch.manual_seed(config.seed)
        self.rng = torch.Generator().manual_seed(config.seed)

        state = self.store.state_dict(config.model_name)
        self.arch = trainable_descriptor(state, config.model_name)  # refuses, before loading, what it cannot train
        self.net_g = load(state)[0]
        self.scale = self.arch.scale
        if config.degradation.scale != self.scale:  # LR patches at the model's own scale (2x, 3x ...)
            config = self.cfg = replace(config, degradation=replace(config.degradation, scale=self.scale))
        self.freeze_rule = default_freeze(self.arch) if config.freeze is None else config.freeze
        self.trainable, self.frozen = freeze(self.net_g, self.freeze_rule)
        self.net_g.to(self.device)
        self.net_ema = copy.deepcopy(self.net_g).requires_grad_(False).eval() if config.ema_decay else None
        self.net_d = UNetDiscriminatorSN().to(self.device) if config.gan_weight else None
        self.perceptual = PerceptualLoss(vgg_weights).to(self.device) if config.perceptual_weight else None
        self.pixel = pixel_loss(config.pixel_loss)

        params = [p for p in self.net_g.parameters() if p.requires_grad]
        self.opt_g = torch.optim.Adam(params, lr=config.lr_g, betas=(0.9, 0.99))
        self.sched_g = torch.optim.lr_scheduler.MultiStepLR(self.opt_g, list(config.milestones), 0.5)
        if self.net_d is not None:
            self.opt_d = torch.optim.Adam(self.net_d.parameters(), lr=config.lr_d, betas=(0.9, 0.99))
            self.sched_d = torch.optim.lr_scheduler.MultiStepLR(self.opt_d, list(config.milestones), 0.5)
        self.amp = config.amp and self.device.type == "cuda"
        self.scaler = torch.amp.GradScaler("cuda", enabled=self.amp)

        self.split: Split = split_folder(hr_dir, config.split, config.seed)
        self.split.save(run_dir / "split.json")
        self.sampler = PatchSampler(self.split.train, config.patch * self.scale, self.scale, self.rng, lr_dir)
        self.step = 0
        self.best_psnr = -math.inf
        self.stale = 0

    # --- one iteration --------------------------------------------------------------------

    def _batch(self) -> tuple[torch.Tensor, torch.Tensor]:
        hr, lr = self.sampler.sample(self.cfg.batch)
        if lr is None:
            lr = degrade(hr, self.cfg.degradation, self.rng)
        return lr.to(self.device), hr.to(self.device)

    def train_step(self) -> dict[str, float]:
        lr, hr = self._batch()
        self.net_g.train()
        logs = {}
        autocast = torch.autocast(self.device.type, dtype=torch.float16, enabled=self.amp)
        if self.net_d is not None:
            self.net_d.requires_grad_(False)
        with autocast:
            sr = self.net_g(lr)
            loss = self.cfg.pixel_weight * self.pixel(sr.float(), hr)
            logs["l_pix"] = loss.item()
            if self.perceptual is not None:
                l_percep = self.cfg.perceptual_weight * self.perceptual(sr.float(), hr)
                loss = loss + l_percep
                logs["l_percep"] = l_percep.item()
            if self.net_d is not None:
                l_gan = self.cfg.gan_weight * gan_loss(self.net_d(sr).float(), real=True)
                loss = loss + l_gan
                logs["l_gan"] = l_gan.item()
        self.opt_g.zero_grad(set_to_none=True)
        self.scaler.scale(loss).backward()
        if self.cfg.grad_clip:
            self.scaler.unscale_(self.opt_g)
            clip_grad_norm_(self.net_g.parameters(), self.cfg.grad_clip)
        self.scaler.step(self.opt_g)

        if self.net_d is not None:
            self.net_d.requires_grad_(True)
            with autocast:
                l_real = gan_loss(self.net_d(hr).float(), real=True)
                l_fake = gan_loss(self.net_d(sr.detach()).float(), real=False)
                l_d = l_real + l_fake
            self.opt_d.zero_grad(set_to_none=True)
            self.scaler.scale(l_d).backward()
            self.scaler.step(self.opt_d)
            self.sched_d.step()
            logs["l_d"] = l_d.item()
        self.scaler.update()
        self.sched_g.step()
        if self.net_ema is not None:
            self._update_ema()
        logs["loss"] = loss.item()
        if not all(math.isfinite(v) for v in logs.values()):
            raise TrainingError(f"training diverged at iteration {self.step} (a loss is not finite): {logs}; "
                                "lower the learning rates (lr_g, lr_d) or set grad_clip")
        return logs

    @torch.no_grad()
    def _update_ema(self) -> None:
        decay = self.cfg.ema_decay
        for ema, live in zip(self.net_ema.parameters(), self.net_g.parameters(), strict=True):
            ema.lerp_(live, 1 - decay)

    # --- validation -----------------------------------------------------------------------

    @torch.inference_mode()
    def validate(self, paths: list[Path] | None = None, model: torch.nn.Module | None = None) -> dict[str, float]:
        """Mean PSNR/SSIM-Y on center crops of ``paths`` (the val split), LR by a fixed-seed degradation."""
        model = model or self.net_ema or self.net_g
        model.eval()
        scores = []
        for index, path in enumerate(paths if paths is not None else self.split.val):
            hr = torch.from_numpy(load_rgb(path)).permute(2, 0, 1)
            side = min(self.cfg.val_crop, *hr.shape[1:]) // self.scale * self.scale
            top, left = (hr.shape[1] - side) // 2, (hr.shape[2] - side) // 2
            hr = hr[:, top : top + side, left : left + side][None]
            lr = degrade(hr, self.cfg.degradation, torch.Generator().manual_seed(10_000 + index))
            sr = model(lr.to(self.device)).float().clamp(0, 1).cpu()
            to_np = lambda t: to_uint8(t[0].permute(1, 2, 0).numpy())  # noqa: E731
            scores.append(quality(to_np(sr), to_np(hr), self.scale))
        return {k: float(np.mean([s[k] for s in scores])) for k in ("psnr_y", "ssim_y")}

    # --- checkpoints ----------------------------------------------------------------------

    def save(self) -> None:
        state = {
            "step": self.step, "best_psnr": self.best_psnr, "stale": self.stale,
            "net_g": self.net_g.state_dict(), "opt_g": self.opt_g.state_dict(), "sched_g": self.sched_g.state_dict(),
            "scaler": self.scaler.state_dict(), "rng": self.rng.get_state(), "torch_rng": torch.get_rng_state(),
            "config": json.dumps(asdict(self.cfg)),
        }
        if self.net_ema is not None:
            state["net_ema"] = self.net_ema.state_dict()
        if self.net_d is not None:
            state |= {"net_d": self.net_d.state_dict(), "opt_d": self.opt_d.state_dict(),
                      "sched_d": self.sched_d.state_dict()}
        tmp = self.run_dir / f".{CHECKPOINT}.part"
        torch.save(state, tmp)
        tmp.replace(self.run_dir / CHECKPOINT)

    def resume(self) -> bool:
        """Continue from the run folder's checkpoint, if there is one.

        Raises:
            TrainingError: The checkpoint is damaged, or from another model or other settings.
        """
        path = self.run_dir / CHECKPOINT
        if not path.is_file():
            return False
        try:
            self._restore(torch.load(path, map_location=self.device, weights_only=True))
        except Exception as exc:  # torch.load and load_state_dict raise many types on a damaged or foreign file
            reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            raise TrainingError(f"cannot resume from {path} ({reason}): it is damaged, or from another model or "
                                "other settings. Choose a new output folder, or delete that one to start over") from exc
        return True

    def _restore(self, state: dict) -> None:
        self.net_g.load_state_dict(state["net_g"])
        self.opt_g.load_state_dict(state["opt_g"])
        self.sched_g.load_state_dict(state["sched_g"])
        self.scaler.load_state_dict(state["scaler"])
        if self.net_ema is not None and "net_ema" in state:
            self.net_ema.load_state_dict(state["net_ema"])
        if self.net_d is not None and "net_d" in state:
            self.net_d.load_state_dict(state["net_d"])
            self.opt_d.load_state_dict(state["opt_d"])
            self.sched_d.load_state_dict(state["sched_d"])
        self.rng.set_state(state["rng"].cpu())
        torch.set_rng_state(state["torch_rng"].cpu())
        self.step, self.best_psnr, self.stale = state["step"], state["best_psnr"], state["stale"]

    def export(self) -> Path:
        """The fine-tuned generator as an official-key checkpoint that the registry loads by name."""
        best = self.net_ema or self.net_g
        weights = {k: v.detach().float().cpu().contiguous() for k, v in best.state_dict().items()}
        name = self.cfg.name or f"finetuned-{self.run_dir.name}"
        path = self.run_dir / MODEL_FILE
        torch.save({"params_ema": weights, "name": name}, path)
        return path

    # --- the loop -------------------------------------------------------------------------

    def run(self, report=print) -> Path:
        resumed = self.resume()
        report(f"model {self.cfg.model_name}: {self.trainable:,} trainable, {self.frozen:,} frozen parameters "
               f"(freeze: {self.freeze_rule or 'nothing'})")
        skipped = f"; skipped {', '.join(self.split.skipped)}" if self.split.skipped else ""
        report(f"data: {len(self.split.train)} train / {len(self.split.val)} val / {len(self.split.test)} test "
               f"images from {self.hr_dir}{skipped}")
        if resumed:
            report(f"resumed at iteration {self.step}")
        log_path = self.run_dir / LOG_FILE
        new_log = not log_path.exists() or not resumed
        columns = ["iter", "loss", "l_pix", "l_percep", "l_gan", "l_d", "psnr_y", "ssim_y", "lr", "seconds"]
        with log_path.open("w" if new_log else "a", newline="") as handle:
            writer = csv.DictWriter(handle, fieldnames=columns, extrasaction="ignore")
            if new_log:
                writer.writeheader()
            started = time.perf_counter()
            bar = tqdm(total=self.cfg.iters, initial=self.step, desc="fine-tuning", unit="it")
            while self.step < self.cfg.iters:
                logs = self.train_step()
                self.step += 1
                bar.update(1)
                bar.set_postfix({k: f"{v:.4f}" for k, v in logs.items() if k != "loss"})
                row = {"iter": self.step, **logs, "lr": self.opt_g.param_groups[0]["lr"],
                       "seconds": round(time.perf_counter() - started, 2)}
                if self.step % self.cfg.val_every == 0 or self.step == self.cfg.iters:
                    scores = self.validate()
                    row |= scores
                    bar.write(f"iter {self.step}: val PSNR-Y {scores['psnr_y']:.2f} dB, SSIM-Y {scores['ssim_y']:.4f}")
                    if scores["psnr_y"] > self.best_psnr:
                        self.best_psnr, self.stale = scores["psnr_y"], 0
                    else:
                        self.stale += 1
                    self.save()
                    if self.cfg.patience and self.stale >= self.cfg.patience:
                        bar.write(f"stopping early: no better validation PSNR for {self.stale} checks")
                        break
                writer.writerow(row)
                handle.flush()
            bar.close()
        self.save()
        plot_log(log_path, self.run_dir / "curves.png")
        path = self.export()
        report(f"saved {path}; to upscale with it, fill in INPUT.png and OUTPUT.png:")
        report(f"  {upscale_command(path)}")
        return path

