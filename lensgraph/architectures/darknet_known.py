"""Darknet weights whose detections are known in advance, whatever the photo: one box, one class.

For end-to-end tests of the detection route without real weights: every layer's kernels are zero,
so the input photo cannot matter, and each layer outputs its biases. Channel 0 of every layer but
the last two is the constant 1. Position comes from the zero padding of the second-to-last
(3x3, pad 1) convolution: its kernel is +1 at the centre and -2 at the two neighbours that lie
outside the grid only in the chosen corner cell, so after leaky it is ~1 in that cell and negative
in every other. The last (1x1, linear) layer turns that into a high objectness for anchor 0 in
that cell only and very low everywhere else; its biases carry the box (``tx, ty, tw, th``) and a
class logit of 30, so exactly one detection survives any score threshold below ``score``.

A YOLOv2 box's centre lies inside its own cell, and only the four corner cells can be told apart
this way, so the box's centre must lie inside a corner cell of the grid (32 x 32 network pixels
for yolov2-tiny-voc); its size is free.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from lensgraph.architectures.darknet_cfg import ConvLayer, DarknetCfg, read_cfg
from lensgraph.architectures.darknet_weights import FLOAT, ConvWeights, DarknetWeights, Header

__all__ = ["KnownOutput", "known_output_weights"]

OBJECT_GAIN = 40.0  # objectness logit per unit of the corner feature: others end >= 44 logits lower
CLASS_LOGIT = 30.0
OFF_LOGIT = -30.0  # objectness of the other anchors


@dataclass(frozen=True)
class KnownOutput:
    """The weights and the one detection they produce, in network-input pixels."""

    weights: DarknetWeights
    box: tuple[float, float, float, float]  # x1, y1, x2, y2 in network-input pixels
    class_id: int
    score: float
    cell: tuple[int, int]  # (row, col) of the corner cell

    def write(self, path: str | Path) -> Path:
        return self.weights.write(path)


def known_output_weights(cfg: DarknetCfg | str | Path, box: tuple[float, float, float, float],
                         class_id: int, score: float = 0.9) -> KnownOutput:
    """Weights for ``cfg`` whose only detection is ``box`` (x1, y1, x2, y2, network-input pixels) of
    ``class_id`` with ``score`` (objectness; the class probability is 1 - 1e-12)."""
    cfg = cfg if isinstance(cfg, DarknetCfg) else read_cfg(cfg)
    convs, region = cfg.convs, cfg.region
    last, before = _check_tail(cfg)
    if not 0 <= class_id < region.classes:
        raise ValueError(f"class_id must be in [0, {region.classes}), got {class_id}")
    if not 0.0 < score < 1.0:
        raise ValueError(f"score must be in (0, 1), got {score}")
    x1, y1, x2, y2 = map(float, box)
    if not (x2 > x1 and y2 > y1):
        raise ValueError(f"box must have x2 > x1 and y2 > y1, got {box}")
    grid_h, grid_w = last.out_hw
    cell_w, cell_h = cfg.width / grid_w, cfg.height / grid_h
    cx, cy = (x1 + x2) / 2, (y1 + y2) / 2
    col, row = math.floor(cx / cell_w), math.floor(cy / cell_h)
    fx, fy = cx / cell_w - col, cy / cell_h - row
    corners = {(0, 0), (0, grid_w - 1), (grid_h - 1, 0), (grid_h - 1, grid_w - 1)}
    if (row, col) not in corners or not (1e-3 < fx < 1 - 1e-3 and 1e-3 < fy < 1 - 1e-3):
        raise ValueError(f"the box's centre ({cx:.1f}, {cy:.1f}) must lie inside a corner cell of the "
                         f"{grid_w}x{grid_h} grid ({cell_w:g} x {cell_h:g} px each, not on its edge); "
                         f"it is in cell (row {row}, col {col})")

    out = []
    for conv in convs[:-2]:
        biases = np.zeros(conv.filters)
        biases[0] = 1.0  # the constant 1 in channel 0, whatever the input
        out.append(_zero(conv, biases))

    kernel = np.zeros((3, 3))
    kernel[1, 1] = 1.0
    kernel[0 if row == 0 else 2, 1] = -2.0  # the neighbour above (row 0) or below (last row)
    kernel[1, 0 if col == 0 else 2] = -2.0  # the neighbour left (col 0) or right (last col)
    penultimate = _zero(before, np.zeros(before.filters))
    penultimate.weights[0, 0] = kernel
    out.append(penultimate)

    feature = 1.0 / (1.0 + 1e-6) if before.batch_normalize else 1.0  # darknet's BN divides by sqrt(1) + 1e-6
    anchor_w, anchor_h = region.anchors[0]
    stride = 5 + region.classes
    biases = np.zeros(last.filters)
    biases[[n * stride + 4 for n in range(region.num)]] = OFF_LOGIT
    biases[0:4] = [_logit(fx), _logit(fy), math.log((x2 - x1) / (anchor_w * cell_w)),
                   math.log((y2 - y1) / (anchor_h * cell_h))]
    biases[4] = _logit(score) - OBJECT_GAIN * feature
    biases[5 + class_id] = CLASS_LOGIT
    final = _zero(last, biases)
    final.weights[4, 0, 0, 0] = OBJECT_GAIN
    out.append(final)
    return KnownOutput(DarknetWeights(Header(0, 2, 0, 0), out), (x1, y1, x2, y2), class_id, float(score), (row, col))


def _check_tail(cfg: DarknetCfg) -> tuple[ConvLayer, ConvLayer]:
    layers = cfg.layers
    if len(cfg.convs) < 3 or not (isinstance(layers[-1], ConvLayer) and isinstance(layers[-2], ConvLayer)):
        raise ValueError("known-output weights need at least three convolutional layers, the last two adjacent")
    last, before = layers[-1], layers[-2]
    if (last.size, last.stride, last.activation, last.batch_normalize) != (1, 1, "linear", False):
        raise ValueError("the last layer must be a 1x1, stride 1, linear convolution without batch_normalize")
    if (before.size, before.stride, before.padding, before.activation) != (3, 1, 1, "leaky"):
        raise ValueError("the second-to-last layer must be a 3x3, stride 1, pad 1, leaky convolution")
    return last, before


def _zero(conv: ConvLayer, biases: np.ndarray) -> ConvWeights:
    weights = np.zeros((conv.filters, conv.in_channels, conv.size, conv.size), FLOAT)
    if not conv.batch_normalize:
        return ConvWeights(np.asarray(biases, FLOAT), weights)
    n = conv.filters
    return ConvWeights(np.asarray(biases, FLOAT), weights, np.ones(n, FLOAT), np.zeros(n, FLOAT), np.ones(n, FLOAT))


def _logit(p: float) -> float:
    return math.log(p / (1.0 - p))
