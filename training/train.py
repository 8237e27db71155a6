"""Train CoDeNet: ``python -m codenet_pynq.training.train --config configs/shapes_default.yaml``.

Iteration-based (detectron2 style): SGD/Adam with linear warmup and multi-step decay, no
weight decay on norm layers, AMP on CUDA, DistributedDataParallel under ``torchrun``, JSON-lines
metrics, atomic checkpoints and ``--resume`` that continues exactly where a killed run stopped
(data order and augmentation are a pure function of (seed, epoch, index)).
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import os
import random
import shutil
import sys
import time
from typing import Any, Dict, Iterator, List, Optional, Sequence, Tuple

import numpy as np
import torch
import torch.distributed as dist
import torch.nn as nn
from torch.utils.data import DataLoader, Dataset

from codenet_pynq.errors import format_message
from codenet_pynq.files import atomic_write

from .checkpoint import (
    FINAL,
    LAST,
    CheckpointError,
    atomic_torch_save,
    load_checkpoint,
    load_resume_checkpoint,
    load_state_into,
    rotate_and_save,
)
from .config import ExperimentConfig, load_config
from .data.build import build_dataset
from .data.dataset import collate_fn
from .errors import EXIT_DIVERGED, report_errors
from .finetune import load_init_weights
from .losses import CenterNetLoss
from .models import build_model
from .models.blocks import DeformConv

log = logging.getLogger("codenet_pynq.train")
__all__ = ["FINAL", "LAST", "Trainer", "TrainingDiverged", "load_checkpoint", "lr_factor", "main"]


class TrainingDiverged(RuntimeError):
    """The loss became NaN or infinite."""


# ------------------------------------------------------------------------ distributed

def dist_info() -> Tuple[int, int]:
    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


def init_distributed(device: torch.device) -> None:
    """Join the process group when launched by torchrun (WORLD_SIZE > 1)."""
    if int(os.environ.get("WORLD_SIZE", "1")) > 1 and not dist.is_initialized():
        dist.init_process_group(backend="nccl" if device.type == "cuda" else "gloo")


# ------------------------------------------------------------------------ data order

class SeededItems(Dataset):
    """Wraps a dataset; item ``(epoch, index)`` is produced with torch's RNG seeded from both."""

    def __init__(self, base: Dataset, seed: int):
        self.base, self.seed = base, int(seed)

    def __len__(self) -> int:
        return len(self.base)

    def __getitem__(self, key):
        epoch, idx = key
        torch.manual_seed((self.seed * 1_000_003 + epoch * 7_919 + idx) % (2**63))
        return self.base[idx]


class ResumableBatches:
    """Yields batches of (epoch, index) for this rank, starting at global iteration ``start``.

    Each epoch is a permutation drawn from (seed, epoch); the global batch of ``batch_size``
    is split across ranks. Iteration i always gets the same samples, so a resumed run sees
    exactly the data the uninterrupted run would have.
    """

    def __init__(self, n: int, batch_size: int, seed: int, start: int, rank: int, world: int):
        if batch_size % world:
            raise ValueError(f"solver.batch_size {batch_size} must be divisible by the {world} processes")
        self.n, self.bs, self.seed, self.start, self.rank, self.world = n, batch_size, seed, start, rank, world

    def _perm(self, epoch: int) -> List[int]:
        g = torch.Generator().manual_seed(self.seed * 1_000_003 + epoch)
        return torch.randperm(self.n, generator=g).tolist()

    def __iter__(self) -> Iterator[List[Tuple[int, int]]]:
        it = self.start
        per_rank = self.bs // self.world
        while True:
            pos = it * self.bs
            items: List[Tuple[int, int]] = []
            while len(items) < self.bs:
                epoch, off = divmod(pos, self.n)
                perm = self._perm(epoch)
                take = min(self.bs - len(items), self.n - off)
                items.extend((epoch, i) for i in perm[off:off + take])
                pos += take
            yield items[self.rank * per_rank:(self.rank + 1) * per_rank]
            it += 1


# ------------------------------------------------------------------------ optimiser

def build_optimizer(model: nn.Module, cfg: ExperimentConfig) -> torch.optim.Optimizer:
    """Parameter groups: norm layers get ``weight_decay_norm`` (0), the rest ``weight_decay``;
    the deformable offset convs learn at ``offset_lr_mult`` times the learning rate."""
    s = cfg.solver
    norm_params, offset_params, other = [], [], []
    norm_types = (nn.BatchNorm2d, nn.SyncBatchNorm, nn.GroupNorm, nn.LayerNorm)
    offset_convs = {id(m.offset) for m in model.modules() if isinstance(m, DeformConv)}
    for module in model.modules():
        for _name, p in module.named_parameters(recurse=False):
            if not p.requires_grad:
                continue
            if isinstance(module, norm_types):
                norm_params.append(p)
            else:
                (offset_params if id(module) in offset_convs else other).append(p)
    groups = [{"params": other, "weight_decay": s.weight_decay, "lr_mult": 1.0},
              {"params": norm_params, "weight_decay": s.weight_decay_norm, "lr_mult": 1.0},
              {"params": offset_params, "weight_decay": s.weight_decay, "lr_mult": s.offset_lr_mult}]
    groups = [g for g in groups if g["params"]]
    if s.optimizer == "sgd":
        return torch.optim.SGD(groups, lr=s.base_lr, momentum=s.momentum)
    if s.optimizer == "adam":
        return torch.optim.Adam(groups, lr=s.base_lr)
    if s.optimizer == "adamw":
        return torch.optim.AdamW(groups, lr=s.base_lr)
    raise ValueError(f"solver.optimizer {s.optimizer!r} unknown: sgd, adam or adamw")


def lr_factor(it: int, cfg: ExperimentConfig) -> float:
    """Linear warmup from warmup_factor, then x gamma at each of ``steps``."""
    s = cfg.solver
    f = s.gamma ** sum(1 for st in s.steps if it >= st)
    if it < s.warmup_iters:
        a = it / max(1, s.warmup_iters)
        f *= s.warmup_factor * (1 - a) + a
    return f


# ------------------------------------------------------------------------ checkpoints

def rng_state() -> Dict[str, Any]:
    np_state = np.random.get_state()
    return {"torch": torch.get_rng_state(), "numpy": [np_state[0], np_state[1].tolist(), *np_state[2:]],
            "python": random.getstate()}


def unwrap(model: nn.Module) -> nn.Module:
    return model.module if hasattr(model, "module") else model


# ------------------------------------------------------------------------ training

def precise_bn(model: nn.Module, loader_iter: Iterator, iters: int, device: torch.device) -> None:
    """Recompute BN running statistics as true averages over ``iters`` batches."""
    bns = [m for m in model.modules() if isinstance(m, nn.BatchNorm2d)]
    if not bns or iters <= 0:
        return
    saved = [m.momentum for m in bns]
    for m in bns:
        m.reset_running_stats()
        m.momentum = None  # cumulative moving average
    model.train()
    with torch.no_grad():
        for _ in range(iters):
            images, _ = next(loader_iter)
            model(images.to(device))
    for m, mom in zip(bns, saved):
        m.momentum = mom


class Trainer:
    """Holds model, optimiser, data and the loop; ``run()`` trains to ``solver.max_iter``."""

    def __init__(self, cfg: ExperimentConfig, device: torch.device, resume: bool = False, progress: bool = True):
        self.cfg, self.device = cfg, device
        self.rank, self.world = dist_info()
        self.progress = progress and self.rank == 0
        torch.manual_seed(cfg.seed)
        np.random.seed(cfg.seed % 2**32)
        random.seed(cfg.seed)
        os.makedirs(cfg.output_dir, exist_ok=True)
        self.train_set = build_dataset(cfg.data, cfg.model, "train", train=True)  # data errors before any work
        if self.rank == 0:
            log.info("training %d images of %d classes: %s", len(self.train_set), len(self.train_set.class_names),
                     ", ".join(self.train_set.class_names))
        model = build_model(cfg.model, cfg.backbone_weights or None)
        if cfg.init_weights and not cfg.quant.enabled:
            load_init_weights(model, cfg.init_weights)
        if cfg.quant.enabled:
            from .quant.qat import prepare_qat

            model = prepare_qat(model, cfg)
        self.model = model.to(device, memory_format=torch.channels_last)  # faster convs on CPU and GPU
        self.optimizer = build_optimizer(self.model, cfg)
        self.scaler = torch.amp.GradScaler("cuda", enabled=cfg.solver.amp and device.type == "cuda")
        self.loss_fn = CenterNetLoss(cfg.loss.hm_weight, cfg.loss.wh_weight, cfg.loss.reg_weight,
                                     cfg.loss.focal_alpha, cfg.loss.focal_gamma)
        self.start_iter = 0
        if resume:
            self._resume()
        self._trim_metrics()
        if self.world > 1:
            self.ddp = nn.parallel.DistributedDataParallel(self.model, device_ids=[device.index] if device.type == "cuda" else None)
        else:
            self.ddp = self.model
        if cfg.quant.enabled and not bool(unwrap(self.model).calibrated):
            from .quant.qat import calibrate_from_loader

            calibrate_from_loader(unwrap(self.model), self.loader(0), cfg.quant.calib_batches, device)

    # -- checkpoints
    def checkpoint_path(self, name: str = LAST) -> str:
        return os.path.join(self.cfg.output_dir, name)

    def save(self, iteration: int) -> None:
        """Write ``last_checkpoint.pth`` (the one it replaces becomes ``previous_checkpoint.pth``)."""
        if self.rank != 0:
            return
        rotate_and_save({"model": unwrap(self.model).state_dict(), "optimizer": self.optimizer.state_dict(),
                         "scaler": self.scaler.state_dict(), "iteration": iteration, "config": self.cfg.to_dict(),
                         "rng": rng_state()}, self.cfg.output_dir)

    def _resume(self) -> None:
        ckpt, path = load_resume_checkpoint(self.cfg.output_dir)
        if ckpt is None:
            log.warning("--resume: no checkpoint in %s yet, starting from scratch", self.cfg.output_dir)
            return
        load_state_into(unwrap(self.model), ckpt["model"], path,
                        "resume with the config this run was started with, or start a new run in another output_dir")
        try:
            self.optimizer.load_state_dict(ckpt["optimizer"])
            if ckpt.get("scaler"):
                self.scaler.load_state_dict(ckpt["scaler"])
            self.start_iter = int(ckpt["iteration"])
        except (KeyError, ValueError, TypeError) as e:
            raise CheckpointError(format_message(path, f"the optimizer state or iteration does not fit ({e})",
                                                 "resume with the config this run was started with")) from None
        log.info("resumed from %s at iteration %d", path, self.start_iter)

    # -- logging
    def _trim_metrics(self) -> None:
        """Keep only records up to ``start_iter`` (a resumed run rewrites what came after)."""
        path = os.path.join(self.cfg.output_dir, "metrics.jsonl")
        if self.rank != 0 or not os.path.isfile(path):
            return
        keep, dropped = [], 0
        with open(path, encoding="utf-8", errors="replace") as f:
            for line in f:
                try:
                    if int(json.loads(line).get("iteration", 0)) <= self.start_iter:
                        keep.append(line)
                        continue
                except (ValueError, TypeError, AttributeError):
                    pass
                dropped += 1
        if not dropped:
            return
        backup = f"{path}.{time.strftime('%Y%m%d-%H%M%S')}.bak"
        shutil.copy2(path, backup)  # the records this run rewrites are kept, never lost
        log.warning("%s: %d records after iteration %d are rewritten by this run; the old file is kept as %s",
                    path, dropped, self.start_iter, backup)
        atomic_write(path, "".join(keep))

    def log_metrics(self, record: Dict[str, Any]) -> None:
        if self.rank != 0:
            return
        with open(os.path.join(self.cfg.output_dir, "metrics.jsonl"), "a", encoding="utf-8") as f:
            f.write(json.dumps(record) + "\n")

    def loader(self, start: int) -> Iterator:
        s, d = self.cfg.solver, self.cfg.data
        batches = ResumableBatches(len(self.train_set), s.batch_size, self.cfg.seed, start, self.rank, self.world)
        dl = DataLoader(SeededItems(self.train_set, self.cfg.seed), batch_sampler=batches, collate_fn=collate_fn,
                        num_workers=d.num_workers, persistent_workers=d.num_workers > 0,
                        prefetch_factor=4 if d.num_workers > 0 else None)
        return iter(dl)

    def step(self, images: torch.Tensor, targets: Dict[str, Any], it: int) -> Dict[str, float]:
        for g in self.optimizer.param_groups:
            g["lr"] = self.cfg.solver.base_lr * lr_factor(it, self.cfg) * g.get("lr_mult", 1.0)
        images = images.to(self.device, non_blocking=True, memory_format=torch.channels_last)
        tgt = {k: v.to(self.device, non_blocking=True) for k, v in targets.items() if torch.is_tensor(v)}
        with torch.autocast(self.device.type, enabled=self.scaler.is_enabled()):
            out = self.ddp(images)
        loss, parts = self.loss_fn(out, tgt)
        if not math.isfinite(parts["loss"]):
            raise TrainingDiverged(
                f"iteration {it}: loss is {parts['loss']} (hm {parts['hm']}, wh {parts['wh']}, reg {parts['reg']}); "
                f"lower solver.base_lr (now {self.cfg.solver.base_lr}) or raise solver.warmup_iters, then --resume "
                f"from {self.checkpoint_path()}")
        self.optimizer.zero_grad(set_to_none=True)
        self.scaler.scale(loss).backward()
        if self.cfg.solver.clip_grad_norm > 0:
            self.scaler.unscale_(self.optimizer)
            torch.nn.utils.clip_grad_norm_(self.model.parameters(), self.cfg.solver.clip_grad_norm)
        self.scaler.step(self.optimizer)
        self.scaler.update()
        parts["lr"] = self.optimizer.param_groups[0]["lr"]
        return parts

    def train_mode(self) -> None:
        """The model in training mode; its BatchNorm layers stay in eval mode with ``solver.freeze_bn``."""
        self.ddp.train()
        if self.cfg.solver.freeze_bn:
            for m in self.ddp.modules():
                if isinstance(m, nn.modules.batchnorm._BatchNorm):
                    m.eval()

    def run(self, max_iter: Optional[int] = None) -> List[Dict[str, float]]:
        """Train from ``start_iter`` to ``max_iter`` (default solver.max_iter); returns logged losses."""
        s = self.cfg.solver
        end = s.max_iter if max_iter is None else max_iter
        history: List[Dict[str, float]] = []
        if self.start_iter >= end:
            return history
        data = self.loader(self.start_iter)
        self.train_mode()
        bar = None
        if self.progress:
            from tqdm import tqdm

            bar = tqdm(total=end, initial=self.start_iter, desc="train", unit="it", dynamic_ncols=True)
        t0 = time.time()
        try:
            for it in range(self.start_iter, end):
                images, targets = next(data)
                parts = self.step(images, targets, it)
                parts["iteration"] = it + 1
                history.append(parts)
                if bar is not None:
                    bar.update(1)
                    bar.set_postfix(loss=f"{parts['loss']:.3f}", lr=f"{parts['lr']:.2e}")
                if (it + 1) % s.log_period == 0 or it + 1 == end:
                    elapsed = max(time.time() - t0, 1e-9)
                    ips = (it + 1 - self.start_iter) * s.batch_size / elapsed
                    self.log_metrics({**parts, "images_per_s": ips, "time": time.time()})
                    if bar is None and self.rank == 0:
                        eta = elapsed / (it + 1 - self.start_iter) * (end - it - 1)
                        log.info("iter %d/%d  loss %.4f (hm %.4f wh %.4f reg %.4f)  lr %.2e  %.1f img/s  eta %s",
                                 it + 1, end, parts["loss"], parts["hm"], parts["wh"], parts["reg"], parts["lr"], ips,
                                 time.strftime("%H:%M:%S", time.gmtime(eta)))
                if s.checkpoint_period and (it + 1) % s.checkpoint_period == 0 and not (
                        it + 1 == end and s.precise_bn_iters):  # with precise BN the end is saved after it
                    self.save(it + 1)
                if s.eval_period and (it + 1) % s.eval_period == 0 and it + 1 < end:
                    self.evaluate(it + 1)
                    self.train_mode()
        finally:
            if bar is not None:
                bar.close()
        if s.precise_bn_iters and not s.freeze_bn:
            precise_bn(self.ddp, data, s.precise_bn_iters, self.device)
        if not (s.checkpoint_period and end % s.checkpoint_period == 0 and not s.precise_bn_iters):
            self.save(end)  # not saved by the loop already (two copies of one iteration would push out the previous)
        if self.rank == 0:
            log.info("finished %d iterations; checkpoint %s", end, self.checkpoint_path(FINAL))
            atomic_torch_save({"model": unwrap(self.model).state_dict(), "config": self.cfg.to_dict(),
                               "iteration": end}, self.checkpoint_path(FINAL))
        return history

    def evaluate(self, iteration: int) -> Optional[Dict[str, Any]]:
        if self.rank != 0 or not (self.cfg.data.val_json or self.cfg.data.dataset == "voc"):
            return None
        from .evaluate import evaluate_model

        metrics = evaluate_model(unwrap(self.model), self.cfg, self.device, progress=self.progress)
        self.log_metrics({"iteration": iteration, **{f"val/{k}": v for k, v in metrics.items()
                                                      if isinstance(v, (int, float))}})
        return metrics


def parse_args(argv: Optional[Sequence[str]] = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="codenet-pynq-train", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--config", required=True, help="experiment YAML (see configs/)")
    p.add_argument("--resume", action="store_true",
                   help="continue from OUTPUT_DIR/last_checkpoint.pth (or previous_checkpoint.pth if that is corrupt)")
    p.add_argument("--init", metavar="WEIGHTS",
                   help="fine-tune from a trained float model: a checkpoint (.pth) or weights file (.npz); "
                        "backbone and decoder are reused, heads whose class count differs are re-initialised")
    p.add_argument("--eval-only", action="store_true", help="evaluate OUTPUT_DIR/model_final.pth and exit")
    p.add_argument("--device", default=None, help="cpu, cuda, cuda:1 (default: cuda when available)")
    p.add_argument("--threads", type=int, default=0, help="torch CPU threads (0: torch default)")
    p.add_argument("--no-progress", action="store_true", help="no progress bar: plain log lines every log_period")
    p.add_argument("--debug", action="store_true", help="show the traceback of errors")
    p.add_argument("opts", nargs="*", help="config overrides, e.g. solver.max_iter=100 model.width=0.5x")
    return p.parse_args(argv)


def _print_summary(metrics: Optional[Dict[str, Any]]) -> None:
    if not metrics:
        return
    per_class = metrics.get("per_class_AP50") or {}
    print("evaluation: " + ", ".join(f"{k} {float(v):.2f}" for k, v in metrics.items() if k in ("AP", "AP50", "AP75")))
    if per_class:
        print("AP50 per class: " + ", ".join(f"{n} {float(v):.2f}" for n, v in per_class.items()))


def _run(args: argparse.Namespace) -> int:
    if args.threads:
        torch.set_num_threads(args.threads)
    cfg = load_config(args.config, args.opts)
    if args.init:
        cfg.init_weights = args.init
    local = int(os.environ.get("LOCAL_RANK", "0"))
    name = args.device or ("cuda" if torch.cuda.is_available() else "cpu")
    device = torch.device(f"cuda:{local}" if name == "cuda" and int(os.environ.get("WORLD_SIZE", "1")) > 1 else name)
    if device.type == "cuda":
        torch.cuda.set_device(device)
    init_distributed(device)
    try:
        if args.eval_only:
            from .evaluate import evaluate_model, load_trained_model

            model = load_trained_model(cfg, os.path.join(cfg.output_dir, FINAL))
            print(json.dumps(evaluate_model(model.to(device), cfg, device), indent=1, default=float))
            return 0
        trainer = Trainer(cfg, device, resume=args.resume, progress=not args.no_progress)
        finished = trainer.start_iter >= cfg.solver.max_iter  # a resumed, already finished run: nothing to do
        trainer.run()
        if not finished:
            _print_summary(trainer.evaluate(cfg.solver.max_iter))
        print(f"wrote {trainer.checkpoint_path(FINAL)} (classes: {', '.join(trainer.train_set.class_names)})")
    except TrainingDiverged as e:
        print(f"codenet-pynq-train: error: {e}", file=sys.stderr)
        return EXIT_DIVERGED
    finally:
        if dist.is_initialized():
            dist.destroy_process_group()
    return 0


def main(argv: Optional[Sequence[str]] = None) -> int:
    args = parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    return report_errors("codenet-pynq-train", args.debug, lambda: _run(args))


if __name__ == "__main__":
    sys.exit(main())
