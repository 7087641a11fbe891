"""One-row margins from LightGBM's single-row fast C API: the prediction setup is done once per model.

`Booster.predict` parses parameters and builds a predictor on every call (~100 us for one
row, measured); `LGBM_BoosterPredictForMatSingleRowFast` reuses one set-up config (~20 us).
It sums the same trees in the same order, so margins are bit-identical (tested), and the
serving probe refuses a model where they are not.
"""

from __future__ import annotations

import ctypes
import threading

import numpy as np

# lightgbm.basic keeps these private; lightgbm is pinned exactly in setup.cfg.
from lightgbm.basic import _C_API_DTYPE_FLOAT64, _C_API_PREDICT_RAW_SCORE, _LIB, _safe_call  # noqa: E402

from churn.compiled import CompiledModel


class SingleRowScorer:
    """Calibrated probability of one encoded row (shape (1, n_features), float64, C order)."""

    def __init__(self, compiled: CompiledModel) -> None:
        self.compiled = compiled
        self.booster = compiled.booster  # the fast config points into it: keep it alive
        self._config = ctypes.c_void_p()
        self._out = np.zeros(1, dtype=np.float64)
        self._out_len = ctypes.c_int64(0)
        self._out_ptr = self._out.ctypes.data_as(ctypes.POINTER(ctypes.c_double))
        self._out_len_ref = ctypes.byref(self._out_len)
        self._predict = _LIB.LGBM_BoosterPredictForMatSingleRowFast
        # One config and one output buffer: calls from request threads take turns (~20 us each).
        self._lock = threading.Lock()
        _safe_call(_LIB.LGBM_BoosterPredictForMatSingleRowFastInit(
            self.booster._handle,
            ctypes.c_int(_C_API_PREDICT_RAW_SCORE),
            ctypes.c_int(0),
            ctypes.c_int(compiled.best_iteration),
            ctypes.c_int(_C_API_DTYPE_FLOAT64),
            ctypes.c_int32(len(compiled.feature_order)),
            ctypes.c_char_p(b"num_threads=1"),
            ctypes.byref(self._config),
        ))

    def margin(self, row: np.ndarray) -> float:
        if row.shape != (1, len(self.compiled.feature_order)) or row.dtype != np.float64 or not row.flags.c_contiguous:
            raise ValueError(f"expected one C-ordered float64 row, got {row.shape} {row.dtype}")
        with self._lock:
            _safe_call(self._predict(self._config, ctypes.c_void_p(row.ctypes.data), self._out_len_ref, self._out_ptr))
            return float(self._out[0])

    def probability(self, row: np.ndarray) -> np.ndarray:
        """Shape (1,), like `CompiledModel.probability` on the same row."""
        return np.asarray(self.compiled.calibrator(np.array([self.margin(row)])), dtype=np.float64)

    def __del__(self) -> None:
        config = getattr(self, "_config", None)
        if config is not None and config.value:
            _LIB.LGBM_FastConfigFree(config)
