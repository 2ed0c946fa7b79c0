"""The PyTorch reference as a runner."""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from rtdetr_export.backends.base import Runner

DTYPES = {"fp32": torch.float32, "fp16": torch.float16}


class TorchRunner(Runner):
    """Runs an export head module (``rtdetr_export.model.heads``) eagerly, in float32 unless told otherwise.

    ``precision="fp16"`` casts the module and its floating inputs to half (outputs come back as float32);
    ``compile=True`` wraps the module in ``torch.compile`` on activation (the first inference compiles).
    """

    name = "torch"

    def __init__(self, module: nn.Module, input_names: list[str], output_names: list[str], device: str = "cpu",
                 precision: str = "fp32", compile: bool = False):
        self.module = module.eval()
        self.input_names, self.output_names, self.device = input_names, output_names, device
        self.precision, self.compile = precision, compile
        self._call = self.module

    def activate(self) -> None:
        self.module.to(self.device, DTYPES[self.precision])
        self._call = torch.compile(self.module) if self.compile else self.module

    def deactivate(self) -> None:
        self._call = self.module

    @torch.no_grad()
    def infer(self, feed: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        args = []
        for name in self.input_names:
            tensor = torch.from_numpy(np.ascontiguousarray(feed[name])).to(self.device)
            args.append(tensor.to(DTYPES[self.precision]) if tensor.is_floating_point() else tensor)
        outputs = self._call(*args)
        return {name: (out.float() if out.is_floating_point() else out).detach().cpu().numpy()
                for name, out in zip(self.output_names, outputs)}
