"""Digit runner: Monte-Carlo dropout, one ONNX Runtime call per batch, a calibrated ``reliable``.

The graph (lensgraph.export.mc_dropout) runs the convolutional trunk once per image and the
dropout head for all T samples of all N images as one batched matrix product. The masks are made
here, per item: from the item's ``seed`` when it has one (the answer is then reproducible,
whatever else shares its batch), else from the runner's generator, seeded once from OS entropy.
Items asking for different T share the call at the largest T; each reads its own first T samples.

``reliable`` compares the model card's uncertainty score (chosen and calibrated on held-out data
by ``lensgraph train digits``) with the threshold calibrated for the item's T, and the image's
energy (the graph's second output, from the eval-mode logits) and distance to the nearest training
digit in the trunk's feature space (the third) with their calibrated thresholds: the MC spread
misses inputs the network is confidently wrong about; docs/uncertainty.md.

A digits model without mask inputs (an imported TensorFlow SavedModel, lensgraph.export.saved_model:
its serving graph has no dropout to sample) is served deterministically: one pass, ``samples`` 1 in
every answer whatever the request asked, ``reliable`` from the one softmax's score against the
threshold its card was calibrated with (refused, hence ``uncalibrated``, when the card's calibration
names another ONNX file than the one served), no energy or distance rule.
"""

from __future__ import annotations

import logging
from typing import Any

import numpy as np

from lensgraph.inference.model_runner import ModelRunner
from lensgraph.repository.store import ModelEntry
from lensgraph.runtime.session import SessionConfig
from lensgraph.uncertainty.calibration import threshold_for_samples
from lensgraph.uncertainty.mc_dropout import make_masks, summarize

MAX_SAMPLES = 200
DEFAULT_SAMPLES = 30
DETERMINISTIC = "deterministic"
MC_DROPOUT = "mc_dropout"

logger = logging.getLogger(__name__)


def not_reliable_reason(in_distribution: bool | None, threshold: float | None) -> str:
    """Why an answer is not reliable; the input's unfamiliarity comes first, as it is the stronger claim."""
    if in_distribution is False:
        return "unfamiliar"  # energy or distance above its threshold: unlike the training digits
    if threshold is None:
        return "uncalibrated"  # no threshold for this model and T: nothing is ever reliable
    return "uncertain"  # the MC-dropout score is above the threshold


class DigitRunner(ModelRunner):
    """Items: (uint8 28x28 light ink on black, samples T or None, seed or None)."""

    def __init__(self, entry: ModelEntry, session_config: SessionConfig = SessionConfig()) -> None:
        super().__init__(entry, session_config)
        options = entry.card.get("options") or {}
        inputs = {i.name: i for i in self.session.get_inputs()}
        # No dropout masks to feed: the graph is one deterministic pass (an imported model).
        self.deterministic = not {"mask1", "mask2"} <= set(inputs)
        self.calibration_refused: str | None = None
        if self.deterministic:
            self._init_deterministic(options, inputs[self.input_name].shape)
            return
        self.dropout_p = float(options.get("dropout_p", 0.5))
        self.card_samples = int(options.get("mc_samples") or DEFAULT_SAMPLES)
        self.score = options.get("uncertainty_score")
        self.thresholds = {int(k): v for k, v in (options.get("thresholds") or {}).items()}
        self.card_energy_threshold = options.get("energy_threshold")
        self.energy_threshold = self.card_energy_threshold  # live settings may override it
        self.has_energy = len(self.session.get_outputs()) > 1  # graphs built before the energy output have one
        self.has_distance = len(self.session.get_outputs()) > 2  # and before the distance output, two
        self.card_distance_threshold = options.get("distance_threshold")
        self.distance_threshold = self.card_distance_threshold  # live settings may override it
        self.target_accuracy = options.get("target_accuracy")
        shapes = {i.name: i.shape for i in self.session.get_inputs()}
        self.mask_sizes = (int(shapes["mask1"][-1]), int(shapes["mask2"][-1]))
        self.samples_override: int | None = None  # live settings of the deployment
        self.threshold_override: float | None = None
        self._rng = np.random.default_rng()  # items without a seed: fresh OS entropy once, then this stream

    def _init_deterministic(self, options: dict[str, Any], input_shape: list) -> None:
        """One pass per image; the card's calibration is used only for the ONNX file it was made on."""
        from lensgraph.repository.weights import sha256_file

        self.dropout_p = 0.0
        self.card_samples = 1
        self.score = options.get("uncertainty_score")
        self.thresholds = {int(k): v for k, v in (options.get("thresholds") or {}).items() if v is not None}
        expected = (options.get("calibration") or {}).get("model_sha256")
        if self.thresholds and expected is not None:
            actual = sha256_file(self.entry.onnx_path)
            if actual != expected:
                self.calibration_refused = (
                    f"the card's calibration was made for model.onnx sha256 {expected[:12]}..., this one is "
                    f"{actual[:12]}...; re-import with 'lensgraph export --saved-model ... --calibrate digits'")
                logger.warning("%s: calibration refused: %s", self.entry.name, self.calibration_refused)
                self.thresholds = {}
        elif self.thresholds:
            self.calibration_refused = "the card's calibration names no model sha256 to check it against"
            self.thresholds = {}
        self.card_energy_threshold = self.energy_threshold = None
        self.card_distance_threshold = self.distance_threshold = None
        self.has_energy = self.has_distance = False
        self.target_accuracy = options.get("target_accuracy")
        self.mask_sizes = (0, 0)
        self.input_rank = len(input_shape)  # [N, 28, 28, 1] as exported; [N, 28, 28] also served
        self.samples_override = None
        self.threshold_override = None
        self._rng = np.random.default_rng()

    @property
    def default_samples(self) -> int:
        return int(self.samples_override or self.card_samples)

    def threshold(self, samples: int) -> float | None:
        if self.threshold_override is not None:
            return float(self.threshold_override)
        return threshold_for_samples(self.thresholds, samples)

    def run_session(self, batch: np.ndarray, mask1: np.ndarray | None = None, mask2: np.ndarray | None = None):
        """Without masks: the deterministic pass (T=1, all-ones masks), as the health check uses."""
        if self.deterministic:
            return self.session.run(None, {self.input_name: batch})
        if mask1 is None or mask2 is None:
            f, h = self.mask_sizes
            mask1 = np.ones((1, len(batch), f), np.float32)
            mask2 = np.ones((1, len(batch), h), np.float32)
        return self.session.run(None, {self.input_name: batch, "mask1": mask1, "mask2": mask2})

    def run_batch(self, items: list[tuple[np.ndarray, int | None, int | None]]) -> list[dict[str, Any]]:
        if self.deterministic:
            return self._run_deterministic(items)
        f, h = self.mask_sizes
        counts = [int(samples or self.default_samples) for _, samples, _ in items]
        t_max, n = max(counts), len(items)
        mask1 = np.ones((t_max, n, f), np.float32)
        mask2 = np.ones((t_max, n, h), np.float32)
        for i, ((_, _, seed), t) in enumerate(zip(items, counts)):
            rng = self._rng if seed is None else np.random.default_rng(seed)
            m1, m2 = make_masks(t, 1, (f, h), self.dropout_p, rng)
            mask1[:t, i], mask2[:t, i] = m1[:, 0], m2[:, 0]
        images = np.stack([image for image, _, _ in items])[..., None]
        outputs = self.run_session(images, mask1, mask2)
        probs = outputs[0]  # [t_max, n, 10]
        energy = outputs[1] if self.has_energy else None  # [n]
        distance = outputs[2] if self.has_distance else None  # [n]
        return [self._answer(probs[:t, i : i + 1], t, None if energy is None else float(energy[i]),
                             None if distance is None else float(distance[i]))
                for i, t in enumerate(counts)]

    def _run_deterministic(self, items: list[tuple[np.ndarray, int | None, int | None]]) -> list[dict[str, Any]]:
        """One pass for the batch; ``samples`` and ``seed`` of the items change nothing (T is always 1)."""
        images = np.stack([image for image, _, _ in items])
        if self.input_rank == 4:
            images = images[..., None]
        probs = self.run_session(images)[0]  # [n, 10]
        answers = []
        for i in range(len(items)):
            answer = self._answer(probs[None, i : i + 1], 1)
            answer["uncertainty"]["method"] = DETERMINISTIC
            answers.append(answer)
        return answers

    def in_distribution(self, energy: float | None, distance: float | None) -> bool | None:
        """Both feature-space rules that apply pass; None when neither is calibrated."""
        verdicts = [value <= limit for value, limit in ((energy, self.energy_threshold),
                                                        (distance, self.distance_threshold))
                    if value is not None and limit is not None]
        return None if not verdicts else bool(all(verdicts))

    def _answer(self, probs: np.ndarray, samples: int, energy: float | None = None,
                distance: float | None = None) -> dict[str, Any]:
        summary = summarize(probs)
        threshold = self.threshold(samples)
        score = float(summary.score(self.score)[0]) if self.score else None
        confident = bool(threshold is not None and score is not None and score <= threshold)
        known = self.in_distribution(energy, distance)
        reliable = confident and known is not False
        return {
            "digit": int(summary.prediction[0]),
            "probability": float(summary.probability[0]),
            "probabilities": summary.mean[0].astype(float).tolist(),
            "reliable": reliable,
            "reason": None if reliable else not_reliable_reason(known, threshold),
            "uncertainty": {**summary.row(0), "samples": samples, "score": self.score, "threshold": threshold,
                            "energy": energy, "energy_threshold": self.energy_threshold,
                            "distance": distance, "distance_threshold": self.distance_threshold,
                            "in_distribution": known, "method": MC_DROPOUT},
        }

    def describe(self) -> dict[str, Any]:
        if self.deterministic:
            return {
                "method": DETERMINISTIC,
                "why": "the model's graph has no dropout to sample (an imported SavedModel runs in inference "
                       "mode): one pass per image, samples is always 1",
                "default_samples": 1,
                "max_samples": 1,
                "dropout_p": None,
                "score": self.score,
                "threshold_at_default_samples": self.threshold(1),
                "energy_threshold": None,
                "distance_threshold": None,
                "threshold_overridden": self.threshold_override is not None,
                "target_accuracy": self.target_accuracy,
                "calibrated": bool(self.thresholds),
                "calibration_refused": self.calibration_refused,
            }
        return {
            "method": "Monte-Carlo dropout, trunk once per image, head T times in one batched call",
            "default_samples": self.default_samples,
            "max_samples": MAX_SAMPLES,
            "dropout_p": self.dropout_p,
            "score": self.score,
            "threshold_at_default_samples": self.threshold(self.default_samples),
            "energy_threshold": self.energy_threshold if self.has_energy else None,
            "distance_threshold": self.distance_threshold if self.has_distance else None,
            "threshold_overridden": self.threshold_override is not None,
            "target_accuracy": self.target_accuracy,
            "calibrated": bool(self.thresholds),
        }
