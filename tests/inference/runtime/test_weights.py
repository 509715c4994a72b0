"""Weights: the hub through a local HF-cache layout, local files, random, and the fallback."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch
from sam2_inference import (
    InferenceSettings,
    WeightsUnavailableError,
    build_random_checkpoint,
    load_model,
    resolve_checkpoint,
)


def _hf_cache(root: Path, checkpoint: Path) -> Path:
    """The layout huggingface_hub writes: blobs, a snapshot per commit, refs/main."""
    repo = root / "models--facebook--sam2.1-hiera-tiny"
    commit = "0123456789abcdef0123456789abcdef01234567"
    (repo / "refs").mkdir(parents=True)
    (repo / "refs" / "main").write_text(commit)
    snapshot = repo / "snapshots" / commit
    snapshot.mkdir(parents=True)
    (repo / "blobs").mkdir()
    blob = repo / "blobs" / "ab12"
    os.symlink(checkpoint, blob)
    os.symlink(blob, snapshot / "sam2.1_hiera_tiny.pt")
    return root


def test_huggingface_weights_come_from_the_hub_cache(tmp_path: Path, checkpoint: Path) -> None:
    cache = _hf_cache(tmp_path / "hub", checkpoint)
    settings = InferenceSettings(weights="huggingface", hf_cache_dir=cache, hf_offline=True)
    resolved = resolve_checkpoint(settings)
    assert resolved.source == "huggingface"
    assert resolved.path.name == "sam2.1_hiera_tiny.pt"
    assert str(cache) in str(resolved.path)
    model = load_model("tiny", resolved, torch.device("cpu"))
    saved = torch.load(checkpoint, map_location="cpu", weights_only=True)["model"]
    name, tensor = next(iter(model.state_dict().items()))
    assert torch.equal(tensor, saved[name])


def test_hf_hub_cache_environment_variable_is_honoured(
    tmp_path: Path, checkpoint: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    cache = _hf_cache(tmp_path / "hub", checkpoint)
    monkeypatch.setenv("HF_HUB_CACHE", str(cache))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    assert resolve_checkpoint(InferenceSettings(weights="huggingface")).path.is_relative_to(cache)


def test_missing_hub_weights_fail_clearly_and_auto_falls_back_to_random(tmp_path: Path) -> None:
    empty = InferenceSettings(
        hf_cache_dir=tmp_path / "empty", hf_offline=True, random_dir=tmp_path / "rnd"
    )
    with pytest.raises(WeightsUnavailableError):
        resolve_checkpoint(empty.model_copy(update={"weights": "huggingface"}))
    fallback = resolve_checkpoint(empty.model_copy(update={"weights": "auto"}))
    assert (fallback.source, fallback.random_weights) == ("random", True)
    assert fallback.path.parent == tmp_path / "rnd"


def test_random_checkpoints_are_seeded(tmp_path: Path, checkpoint: Path) -> None:
    again = build_random_checkpoint("tiny", tmp_path / "again.pt", seed=0)
    first = torch.load(checkpoint, map_location="cpu", weights_only=True)["model"]
    second = torch.load(again, map_location="cpu", weights_only=True)["model"]
    assert first.keys() == second.keys()
    assert all(torch.equal(first[k], second[k]) for k in first)


def test_local_files_report_whether_they_are_random(tmp_path: Path, checkpoint: Path) -> None:
    assert resolve_checkpoint(InferenceSettings(weights=str(checkpoint))).random_weights is True
    plain = tmp_path / "plain.pt"
    torch.save({"model": {}}, plain)
    local = resolve_checkpoint(InferenceSettings(weights=str(plain)))
    assert (local.source, local.random_weights) == ("local", False)
    with pytest.raises(WeightsUnavailableError, match="no checkpoint file"):
        resolve_checkpoint(InferenceSettings(weights=str(tmp_path / "nope.pt")))
