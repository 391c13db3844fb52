"""Fast decoding for one known code: conditional batch norms folded into per-channel affines.

In eval mode a CBatchNorm1d is gamma(c) * (x - mean) / sqrt(var + eps) + beta(c): once c is fixed it
is a per-channel scale and shift. The second norm of each residual block follows a linear layer and
folds into that layer's weights; the first sits on the residual stream and stays an elementwise
affine. The layers run as row-major matrix products on (points, channels), which is what CPU and
GPU GEMMs are fastest at (the original runs 1x1 Conv1d on (1, channels, points)).

On the CPU, without autograd, the points go through in slices of about 2,000 rows whose (rows,
hidden) activations are written into three buffers reused from slice to slice: they stay in the
cache, and no fresh pages are faulted in for every layer. That is twice as fast as one product over
a whole 100k batch (bench/bench_extraction.py measures it); torch.compile gained nothing on top.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from .decoder import DecoderCBatchNorm
from .layers import CBatchNorm1d


def _affine(norm: CBatchNorm1d, c: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(scale, shift), each (H,), such that norm(x, c) == x * scale + shift in eval mode."""
    gamma, beta = norm.gamma_beta(c)
    gamma, beta = gamma.reshape(-1), beta.reshape(-1)
    bn = norm.bn
    assert bn.running_mean is not None and bn.running_var is not None
    inv_std = torch.rsqrt(bn.running_var + bn.eps)
    scale = gamma * inv_std
    return scale, beta - bn.running_mean * scale


def _linear(conv: torch.nn.Conv1d) -> tuple[torch.Tensor, torch.Tensor]:
    """A 1x1 Conv1d as (W^T, b) for x @ W^T + b on (points, channels)."""
    assert conv.bias is not None
    return conv.weight.squeeze(-1).t().contiguous(), conv.bias


@dataclass
class _Block:
    scale0: torch.Tensor
    shift0: torch.Tensor
    w0: torch.Tensor  # fc_0 with bn_1 folded in
    b0: torch.Tensor
    w1: torch.Tensor
    b1: torch.Tensor


class FoldedDecoder:
    """decoder(points, c) for a single fixed c, without batch-norm or conditioning work per point."""

    #: Activation floats per slice on the CPU: 2**19 floats (2 MiB) is 2,048 points at width 256.
    SLICE_FLOATS = 1 << 19

    def __init__(self, decoder: DecoderCBatchNorm, c: torch.Tensor, slice_rows: int | None = None):
        if decoder.training:
            raise ValueError("fold the decoder in eval mode: training batch norm depends on the batch")
        if c.ndim != 2 or c.shape[0] != 1:
            raise ValueError(f"FoldedDecoder takes one code of shape (1, C), got {tuple(c.shape)}")
        with torch.no_grad():
            self.wp, self.bp = _linear(decoder.fc_p)
            self.blocks = []
            for block in decoder.blocks():
                scale0, shift0 = _affine(block.bn_0, c)
                scale1, shift1 = _affine(block.bn_1, c)
                w0, b0 = _linear(block.fc_0)
                w1, b1 = _linear(block.fc_1)
                # bn_1(fc_0(t)) = (t @ w0 + b0) * scale1 + shift1 = t @ (w0 * scale1) + (b0 * scale1 + shift1)
                self.blocks.append(_Block(scale0, shift0, (w0 * scale1).contiguous(), b0 * scale1 + shift1,
                                          w1, b1))
            self.scale_out, self.shift_out = _affine(decoder.bn, c)
            self.w_out, self.b_out = _linear(decoder.fc_out)
        hidden = self.wp.shape[1]
        self.slice_rows = slice_rows or max(256, self.SLICE_FLOATS // hidden)

    def __call__(self, points: torch.Tensor) -> torch.Tensor:
        """Points (N, 3) -> logits (N,). Differentiable with respect to the points."""
        if torch.is_grad_enabled() and points.requires_grad:
            return self._forward_autograd(points)
        return self._forward_sliced(points)

    def _forward_autograd(self, points: torch.Tensor) -> torch.Tensor:
        net = torch.addmm(self.bp, points, self.wp)
        for blk in self.blocks:
            t = torch.relu(torch.addcmul(blk.shift0, net, blk.scale0))
            t = torch.relu(torch.addmm(blk.b0, t, blk.w0))
            net = net + torch.addmm(blk.b1, t, blk.w1)
        t = torch.relu(torch.addcmul(self.shift_out, net, self.scale_out))
        return torch.addmm(self.b_out, t, self.w_out).squeeze(1)

    def _forward_sliced(self, points: torch.Tensor) -> torch.Tensor:
        """The same function in place, slice by slice, with the activations in reused buffers."""
        n = points.shape[0]
        rows = min(n, self.slice_rows) if points.device.type == "cpu" else n
        out = torch.empty(n, dtype=self.b_out.dtype, device=points.device)
        if n == 0:
            return out
        hidden = self.wp.shape[1]
        net, t, u = (torch.empty(rows, hidden, dtype=self.wp.dtype, device=points.device) for _ in range(3))
        for start in range(0, n, rows):
            p = points[start:start + rows]
            m = p.shape[0]
            x, y, z = net[:m], t[:m], u[:m]
            torch.addmm(self.bp, p, self.wp, out=x)
            for blk in self.blocks:
                torch.addcmul(blk.shift0, x, blk.scale0, out=y).relu_()
                torch.addmm(blk.b0, y, blk.w0, out=z).relu_()
                x.addmm_(z, blk.w1).add_(blk.b1)
            torch.addcmul(self.shift_out, x, self.scale_out, out=y).relu_()
            torch.addmm(self.b_out, y, self.w_out, out=out[start:start + m, None])
        return out
