"""XNNPACK's dynamic int8 quantization of activations (qd8), row by row, for the dynamic q/dq pattern.

Pattern (a converted graph under ``get_dynamic_config()``)::

    s, zp = choose_qparams.tensor(x, -128, 127, eps, int8)
    y     = dequantize_per_tensor.tensor(quantize_per_tensor.tensor(x, s, zp, ...), s, zp, ...)
    out   = linear(y, dequantize_per_channel(w_q, ...), b)

The eager graph picks *one* ``(s, zp)`` for the whole tensor.  XNNPACK's
delegate converts ``x`` to its ``qd8`` type instead, which carries one
``(s, zp)`` per row: for a linear a row is one vector of the last dim (every
leading dim is "batch"), for a conv one image (ExecuTorch serializes the
tensor with ``num_nonbatch_dims`` 1 or 3).  So a dynamic program's
``.pte`` is more accurate than its own graph, and on a deep model the two drift
apart (a 6-layer BERT encoder: 19.2 dB between them, 27.0 dB and 27.1 dB from
each to fp32).  :func:`fake_quantize_rows` computes what the delegate feeds the
GEMM, so a graph rewritten with it is the reference for the ``.pte``.

Derivation, per row ``r`` of ``x`` (XNNPACK's asymmetric ``qd8`` parameters,
the TFLite "nudged" zero point):

* ``lo = min(0, min r)``, ``hi = max(0, max r)``: the range always holds 0,
  so 0 is exactly representable (padding and ReLU zeros stay exact);
* ``s = (hi - lo) / 255``, or 1 when ``lo == hi`` (an all-zero row);
* the zero point comes from one end of the range, ``-128 - lo/s`` when
  ``(-128 + lo/s) + (127 + hi/s) > 0``, else ``127 - hi/s``, clamped to
  [-128, 127] and rounded to an integer;
* ``q = clamp(round(r · (1/s)) + zp, -128, 127)`` and the GEMM sees ``s·(q - zp)``.

Each row's codes fill [-128, 127] (one end of the range maps to a code at
the end), so per-row quantization loses at most ``s/2`` per element, with the
row's own ``s``: a row of small values keeps its precision even when another
row of the same tensor holds an outlier.
"""

from __future__ import annotations

import torch

_QMIN, _QMAX = -128.0, 127.0


def row_qparams(rows: torch.Tensor) -> tuple:
    """``(scale, zero_point)`` of each row of a 2-D float tensor, as float tensors of shape ``[rows, 1]``."""
    lo = rows.amin(dim=1, keepdim=True).clamp(max=0.0)
    hi = rows.amax(dim=1, keepdim=True).clamp(min=0.0)
    scale = torch.where(hi > lo, (hi - lo) / (_QMAX - _QMIN), torch.ones_like(lo))
    low, high = lo / scale, hi / scale
    # XNNPACK's choice of end: the sum of the two ends' errors says which is nearer.
    use_min = (_QMIN + low) + (_QMAX + high) > 0
    zero_point = torch.round(torch.where(use_min, _QMIN - low, _QMAX - high).clamp(_QMIN, _QMAX))
    return scale, zero_point


def fake_quantize_rows(x: torch.Tensor, nonbatch_dims: int = 1) -> torch.Tensor:
    """``x`` quantized to int8 and back with one scale and zero point per row.

    A row is the last ``nonbatch_dims`` dims: 1 for a linear's input, 3 (one
    image, C·H·W) for a conv's, as ExecuTorch serializes the ``qd8`` tensor.
    """
    if x.dim() < nonbatch_dims or x.numel() == 0:
        return x
    width = 1
    for size in x.shape[x.dim() - nonbatch_dims:]:
        width *= size
    rows = x.reshape(-1, width).float()
    scale, zero_point = row_qparams(rows)
    codes = torch.clamp(torch.round(rows * (1.0 / scale)) + zero_point, _QMIN, _QMAX)
    return ((codes - zero_point) * scale).reshape(x.shape).to(x.dtype)
