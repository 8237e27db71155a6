"""CenterNet losses: penalty-reduced focal loss on heatmaps, L1 on size and offset."""

from __future__ import annotations

from typing import Dict, Tuple

import torch
import torch.nn as nn


def focal_loss(logits: torch.Tensor, target: torch.Tensor, alpha: float = 2.0, gamma: float = 4.0) -> torch.Tensor:
    """CornerNet/CenterNet focal loss on heatmap logits, normalised by the number of objects.

    Positives are target == 1; negatives are down-weighted by (1 - target)^gamma.
    """
    pred = torch.sigmoid(logits.float()).clamp(1e-4, 1 - 1e-4)
    pos = target.eq(1).float()
    neg = 1.0 - pos
    pos_loss = torch.log(pred) * (1 - pred).pow(alpha) * pos
    neg_loss = torch.log(1 - pred) * pred.pow(alpha) * (1 - target).pow(gamma) * neg
    num_pos = pos.sum()
    return -(pos_loss.sum() + neg_loss.sum()) / num_pos.clamp(min=1.0)


def gather_at(feat: torch.Tensor, ind: torch.Tensor) -> torch.Tensor:
    """feat (N, C, H, W), ind (N, K) flat positions -> (N, K, C)."""
    n, c, h, w = feat.shape
    flat = feat.view(n, c, h * w).permute(0, 2, 1)
    return flat.gather(1, ind.unsqueeze(2).expand(-1, -1, c))


def reg_l1_loss(pred: torch.Tensor, mask: torch.Tensor, ind: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Masked L1 between pred gathered at ``ind`` and ``target`` (N, K, 2), mean per object."""
    p = gather_at(pred.float(), ind)
    m = mask.unsqueeze(2).expand_as(p).float()
    return (torch.abs(p - target) * m).sum() / (m.sum() + 1e-4)


class CenterNetLoss(nn.Module):
    """Weighted sum: focal(hm) + wh_weight * L1(wh) + reg_weight * L1(reg)."""

    def __init__(self, hm_weight: float = 1.0, wh_weight: float = 0.1, reg_weight: float = 1.0,
                 alpha: float = 2.0, gamma: float = 4.0):
        super().__init__()
        self.hm_weight, self.wh_weight, self.reg_weight = hm_weight, wh_weight, reg_weight
        self.alpha, self.gamma = alpha, gamma

    def forward(self, out: Dict[str, torch.Tensor], tgt: Dict[str, torch.Tensor]) -> Tuple[torch.Tensor, Dict[str, float]]:
        hm = focal_loss(out["hm"], tgt["hm"], self.alpha, self.gamma)
        wh = reg_l1_loss(out["wh"], tgt["reg_mask"], tgt["ind"], tgt["wh"])
        reg = reg_l1_loss(out["reg"], tgt["reg_mask"], tgt["ind"], tgt["reg"])
        total = self.hm_weight * hm + self.wh_weight * wh + self.reg_weight * reg
        return total, {"loss": float(total.detach()), "hm": float(hm.detach()), "wh": float(wh.detach()),
                       "reg": float(reg.detach())}
