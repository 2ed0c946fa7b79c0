"""Small building blocks shared by the backbone, the hybrid encoder and the decoder."""

from __future__ import annotations

import torch
from torch import nn


def activation(name: str | None) -> nn.Module:
    """The activation module for a config name ("relu", "silu", "gelu"; None for identity)."""
    table = {"relu": nn.ReLU, "silu": nn.SiLU, "swish": nn.SiLU, "gelu": nn.GELU, None: nn.Identity}
    if name not in table:
        raise ValueError(f"unsupported activation {name!r}")
    return table[name]()


class ConvNormLayer(nn.Module):
    """Conv -> BatchNorm -> activation; after BN folding the norm becomes an identity."""

    def __init__(self, ch_in: int, ch_out: int, kernel_size: int, stride: int, padding: int | None = None,
                 act: str | None = None, eps: float = 1e-5, groups: int = 1):
        super().__init__()
        padding = (kernel_size - 1) // 2 if padding is None else padding
        self.conv = nn.Conv2d(ch_in, ch_out, kernel_size, stride, padding=padding, groups=groups, bias=False)
        self.norm = nn.BatchNorm2d(ch_out, eps=eps)
        self.act = activation(act)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.act(self.norm(self.conv(x)))


_MLP_ACTIVATIONS = {"relu": torch.relu, "silu": nn.functional.silu}


class MLP(nn.Module):
    """Linear layers with an activation between them (box heads and the query position head).

    ReLU everywhere in RT-DETR and D-FINE; DEIM trains its MLPs with SiLU (``mlp_act``)."""

    def __init__(self, in_dim: int, hidden_dim: int, out_dim: int, num_layers: int, act: str = "relu"):
        super().__init__()
        dims = [in_dim] + [hidden_dim] * (num_layers - 1) + [out_dim]
        self.layers = nn.ModuleList(nn.Linear(a, b) for a, b in zip(dims[:-1], dims[1:]))
        # A function, not a submodule: a module would add an ``act`` scope to exported node names, and RT-DETR's
        # graphs stay byte-identical to those exported before the activation was configurable.
        if act not in _MLP_ACTIVATIONS:
            raise ValueError(f"unsupported MLP activation {act!r}")
        self.act_name = act

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        last = len(self.layers) - 1
        for i, layer in enumerate(self.layers):
            x = layer(x)
            if i < last:
                x = _MLP_ACTIVATIONS[self.act_name](x)
        return x


class SelfAttention(nn.Module):
    """Multi-head self-attention whose queries and keys see a position embedding and values do not.

    Parameters keep ``nn.MultiheadAttention``'s packed layout (``in_proj_weight`` = [q; k; v]) so original
    checkpoints load unchanged, but the math is spelled out with plain matmuls, which export to ONNX as
    ordinary MatMul/Softmax nodes on every runtime.
    """

    def __init__(self, dim: int, num_heads: int):
        super().__init__()
        self.num_heads = num_heads
        self.head_dim = dim // num_heads
        self.in_proj_weight = nn.Parameter(torch.empty(3 * dim, dim))
        self.in_proj_bias = nn.Parameter(torch.zeros(3 * dim))
        self.out_proj = nn.Linear(dim, dim)
        nn.init.xavier_uniform_(self.in_proj_weight)

    def forward(self, x: torch.Tensor, pos: torch.Tensor | None = None) -> torch.Tensor:
        batch, length, dim = x.shape
        w_q, w_k, w_v = self.in_proj_weight.chunk(3)
        b_q, b_k, b_v = self.in_proj_bias.chunk(3)
        qk_in = x if pos is None else x + pos
        q = nn.functional.linear(qk_in, w_q, b_q)
        k = nn.functional.linear(qk_in, w_k, b_k)
        v = nn.functional.linear(x, w_v, b_v)
        shape = (batch, length, self.num_heads, self.head_dim)
        q, k, v = (t.reshape(shape).transpose(1, 2) for t in (q, k, v))
        attn = torch.softmax((q * self.head_dim ** -0.5) @ k.transpose(-2, -1), dim=-1)
        out = (attn @ v).transpose(1, 2).reshape(batch, length, dim)
        return self.out_proj(out)


@torch.no_grad()
def folded_conv_bn(conv: nn.Conv2d, norm: nn.BatchNorm2d) -> tuple[torch.Tensor, torch.Tensor]:
    """(kernel, bias) of the one conv that computes ``norm(conv(x))`` in eval mode: BatchNorm folding."""
    scale = norm.weight / (norm.running_var + norm.eps).sqrt()
    kernel = conv.weight * scale.reshape(-1, 1, 1, 1)
    bias = norm.bias - norm.running_mean * scale
    if conv.bias is not None:
        bias = bias + conv.bias * scale
    return kernel.detach(), bias.detach()
