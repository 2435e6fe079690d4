"""The receptive-field bound now lives in :mod:`ndwconv.adapters.receptive` (the adapters
use it too); this module re-exports it so that existing imports keep working."""

from __future__ import annotations

from ndwconv.adapters.receptive import receptive_radius

__all__ = ["receptive_radius"]
