"""A darknet detector (cfg + .weights) -> the serving artefact: uint8 NHWC in, the raw region tensor out.

The graph is darknet's network with ``x / 255`` in front (lensgraph.export.wrappers.NormalizedModel),
checked against torch like every torch export (max |diff| <= 1e-4). The card's ``options`` carry
what decoding needs (``region``: anchors, classes, num) and the per-request defaults
(``score_threshold``, ``iou_threshold``, ``max_detections``; darknet's ``detector test`` uses 0.5/0.45).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from lensgraph.architectures import darknet_files
from lensgraph.errors import InvalidRequest, WeightsError, WeightsNotFound

DEFAULT_OPTIONS = {"score_threshold": 0.5, "iou_threshold": 0.45, "max_detections": 100}


def resolve_cfg(value: str | None, base_dir: Path | None = None) -> Path:
    """``architecture_args.cfg``: ``darknet:<name>`` or a bare file name (the installed darknet package's,
    unless such a file sits beside the config), ``path:<file>`` or a path (relative to the config)."""
    if not value:
        raise WeightsError("architecture darknet needs architecture_args.cfg (e.g. darknet:yolov2-tiny-voc.cfg)")
    if value.startswith("darknet:"):
        return darknet_files.find(value.split(":", 1)[1])
    plain = value.split(":", 1)[1] if value.startswith("path:") else value
    path = Path(plain).expanduser()
    if not path.is_absolute() and base_dir is not None:
        path = base_dir / path
    if path.is_file():
        return path.resolve()
    if not value.startswith("path:") and "/" not in plain:
        return darknet_files.find(plain)
    raise WeightsNotFound(f"darknet cfg {path} does not exist")


def detection_options(options: dict[str, Any]) -> dict[str, Any]:
    """The per-request defaults, from the spec's options or darknet's, checked against the API's ranges."""
    from lensgraph.routes.detect import check_thresholds

    try:
        values = (options.get(key, default) for key, default in DEFAULT_OPTIONS.items())
        limits = check_thresholds(*values, what="options")
    except InvalidRequest as exc:
        raise WeightsError(exc.message) from exc
    return {"score_threshold": limits.score_threshold, "iou_threshold": limits.iou_threshold,
            "max_detections": limits.max_detections}


def export_darknet(cfg_path: Path, weights: Path | None, seed: int | None, out: Path,
                   output_names: tuple[str, ...], options: dict[str, Any], resize: dict[str, Any] | None = None):
    """Build, fill (a .weights file, or seeded random darknet weights), export and check one detector."""
    from lensgraph.architectures.darknet import build_darknet
    from lensgraph.architectures.darknet_weights import load_into, parse_weights, random_weights, read_weights
    from lensgraph.export.artifacts import export_torch
    from lensgraph.imaging.letterbox import DARKNET_FILL
    from lensgraph.imaging.resize import DARKNET_BILINEAR, ResizeSpec
    from lensgraph.repository.weights import sha256_file

    module, cfg = build_darknet(cfg_path)
    if weights is None:
        if seed is None:
            raise WeightsError("darknet weights: give a .weights file or random:<seed>")
        # Through the file format, as a downloaded file would go.
        parsed = parse_weights(random_weights(cfg, seed).to_bytes(), cfg, source=f"random:{seed}")
    else:
        parsed = read_weights(weights, cfg)
    load_into(module, parsed)
    channels = cfg.channels
    report = export_torch(module, out, (channels, cfg.height, cfg.width), [0.0] * channels, [255.0] * channels,
                          output_names)
    report.settings["darknet"] = {
        "cfg": cfg_path.name,
        "cfg_sha256": sha256_file(cfg_path),
        "weights_header": {"major": parsed.header.major, "minor": parsed.header.minor,
                           "revision": parsed.header.revision, "seen": parsed.header.seen},
    }
    report.settings["host_preprocessing"] = {
        "letterbox": {"size": [cfg.width, cfg.height], "fill": DARKNET_FILL, "centered": True},
        "resize": ResizeSpec.from_card(resize, DARKNET_BILINEAR).describe(),  # darknet's own resize_image
    }
    report.settings["options"] = {**detection_options(options), "region": cfg.region.to_dict()}
    return report
