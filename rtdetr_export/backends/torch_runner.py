"""The PyTorch reference as a runner."""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from rtdetr_export.backends.base import Runner


class TorchRunner(Runner):
    """Runs an export head module (``rtdetr_export.export.heads``) eagerly in float32."""

    name = "torch"

    def __init__(self, module: nn.Module, input_names: list[str], output_names: list[str], device: str = "cpu"):
        self.module = module.eval()
        self.input_names, self.output_names, self.device = input_names, output_names, device

    def activate(self) -> None:
        self.module.to(self.device)

    @torch.no_grad()
    def infer(self, feed: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        args = [torch.from_numpy(np.ascontiguousarray(feed[name])).to(self.device) for name in self.input_names]
        outputs = self.module(*args)
        return {name: out.detach().cpu().numpy() for name, out in zip(self.output_names, outputs)}
