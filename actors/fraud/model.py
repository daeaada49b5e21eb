"""Logistic regression: weights in a JSON file trained by scripts/train_fraud_model.py (numpy only)."""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path

MODEL_PATH = Path(__file__).with_name("model.json")


@dataclass(frozen=True)
class FraudModel:
    features: list[str]
    weights: list[float]
    bias: float
    version: str

    @classmethod
    def load(cls, path: Path = MODEL_PATH) -> FraudModel:
        data = json.loads(path.read_text())
        assert len(data["features"]) == len(data["weights"]), (
            "model file: features and weights differ in length"
        )
        return cls(
            data["features"],
            [float(w) for w in data["weights"]],
            float(data["bias"]),
            data["version"],
        )

    def probability(self, x: list[float]) -> float:
        assert len(x) == len(self.weights), (
            f"model expects {len(self.weights)} features, got {len(x)}"
        )
        z = self.bias + sum(w * v for w, v in zip(self.weights, x))
        z = max(-40.0, min(40.0, z))
        return 1.0 / (1.0 + math.exp(-z))
