"""The SageMaker container layout under /opt/ml (moved by SAGEMAKER_BASE_DIR)."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from churn.errors import ConfigError


@dataclass(frozen=True)
class OptMl:
    base: Path

    @property
    def train_channel(self) -> Path:
        return self.base / "input" / "data" / "train"

    @property
    def validation_channel(self) -> Path:
        return self.base / "input" / "data" / "validation"

    @property
    def hyperparameters_file(self) -> Path:
        return self.base / "input" / "config" / "hyperparameters.json"

    @property
    def model_dir(self) -> Path:
        return self.base / "model"

    @property
    def output_dir(self) -> Path:
        return self.base / "output"

    @property
    def failure_file(self) -> Path:
        return self.output_dir / "failure"

    def is_training_job(self) -> bool:
        return self.train_channel.is_dir()

    def hyperparameters(self) -> dict[str, Any]:
        """hyperparameters.json without the platform's own `sagemaker_*` keys."""
        if not self.hyperparameters_file.exists():
            return {}
        try:
            raw = json.loads(self.hyperparameters_file.read_text())
        except json.JSONDecodeError as err:
            raise ConfigError(f"{self.hyperparameters_file} is not valid JSON: {err}") from err
        if not isinstance(raw, dict):
            raise ConfigError(f"{self.hyperparameters_file} must hold a JSON object")
        return {k: v for k, v in raw.items() if not k.startswith("sagemaker_")}

    def write_failure(self, reason: str) -> None:
        self.output_dir.mkdir(parents=True, exist_ok=True)
        self.failure_file.write_text(reason + "\n")
