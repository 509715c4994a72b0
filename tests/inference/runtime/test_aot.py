"""The image encoder compiled ahead of time (aot.py, `SAM2_COMPILE=aot`), on the CPU.

What a user of the setting notices: the first start compiles the encoder and keeps it as a file,
a later start loads that file instead of compiling (and answers exactly what the first did), a
damaged file is compiled again rather than stopping the service, and the answers are the eager
engine's within Inductor's rounding. Compiling hiera-tiny's encoder takes about 70 s on this
project's 2-core CPU, so one compiled package serves the module.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from sam2_contract import SegmentRequest, decode_mask
from sam2_contract.images import DecodedImage, image_id_for
from sam2_inference import InferenceSettings, Sam2Engine
from sam2_inference.runtime.aot import AotStore, checkpoint_key
from support import IMAGES, fresh_engine

CLICK = {"point_coords": [[60, 40], [150, 90]], "point_labels": [1, 0], "mask_format": "rle"}


def _start(settings: InferenceSettings, directory: Path, compile: str = "aot") -> Sam2Engine:
    """A service start with `SAM2_PIPELINE=fast SAM2_COMPILE=aot SAM2_AOT_DIR=directory`."""
    update = {"pipeline": "fast", "compile": compile, "aot_dir": directory}
    return Sam2Engine.from_settings(settings.model_copy(update=update))


def _click(engine: Sam2Engine) -> dict[str, Any]:
    pixels = IMAGES["landscape"]
    image = DecodedImage(pixels=pixels, format="raw", image_id=image_id_for(pixels))
    request = SegmentRequest(image_id=image.image_id, **CLICK)
    return engine.segment(request, image=image).model_dump()


@pytest.fixture(scope="module")
def first_start(
    settings: InferenceSettings, tmp_path_factory: pytest.TempPathFactory
) -> tuple[Sam2Engine, Path]:
    directory = tmp_path_factory.mktemp("aot")
    return _start(settings, directory), directory


def test_the_first_start_compiles_the_encoder_into_one_file_named_for_what_it_fits(
    first_start: tuple[Sam2Engine, Path], settings: InferenceSettings
) -> None:
    engine, directory = first_start
    assert engine.acceleration is not None
    assert engine.acceleration.aot == "compiled"
    assert "AOTInductor encoder (compiled)" in engine.acceleration.describe()
    (package,) = directory.iterdir()  # one file, no partial one left behind
    assert package.suffix == ".pt2"
    key = checkpoint_key(Path(settings.weights))
    for part in ("tiny", key, "float32", "cpu", f"torch{torch.__version__}"):
        assert part in package.name


def test_the_compiled_encoder_answers_what_the_eager_one_does(
    first_start: tuple[Sam2Engine, Path], loaded_engine: Sam2Engine
) -> None:
    ours = _click(first_start[0])
    theirs = _click(fresh_engine(loaded_engine, pipeline="fast"))
    assert ours["all_scores"] == pytest.approx(theirs["all_scores"], abs=1e-4)
    mine, eager = decode_mask(ours["mask"]), decode_mask(theirs["mask"])
    assert mine.any()
    assert np.mean(mine != eager) < 1e-3  # Inductor's rounding flips a boundary pixel at most


def test_a_later_start_loads_the_file_and_answers_exactly_the_same(
    first_start: tuple[Sam2Engine, Path], settings: InferenceSettings
) -> None:
    engine, directory = first_start
    (package,) = directory.iterdir()
    written = package.stat().st_mtime_ns
    later = _start(settings, directory)
    assert later.acceleration is not None
    assert later.acceleration.aot == "loaded"
    assert package.stat().st_mtime_ns == written  # not compiled again
    ours, first = _click(later), _click(engine)
    assert ours["all_scores"] == first["all_scores"]
    assert np.array_equal(decode_mask(ours["mask"]), decode_mask(first["mask"]))


def test_a_damaged_file_is_compiled_again_and_replaced(
    first_start: tuple[Sam2Engine, Path], settings: InferenceSettings
) -> None:
    engine, directory = first_start
    (package,) = directory.iterdir()
    package.write_bytes(b"PK\x03\x04 not a package")
    restarted = _start(settings, directory)
    assert restarted.acceleration is not None
    assert restarted.acceleration.aot == "compiled"
    assert package.stat().st_size > 1 << 20  # a real package again
    assert [p.name for p in directory.iterdir()] == [package.name]
    assert _click(restarted)["all_scores"] == _click(engine)["all_scores"]


def test_an_autotuned_package_is_its_own_file_and_answers_like_the_plain_one(
    first_start: tuple[Sam2Engine, Path],
    settings: InferenceSettings,
    capfd: pytest.CaptureFixture[str],
) -> None:
    """`SAM2_COMPILE=aot-max-autotune` (about 3 minutes for tiny on this CPU): its package sits
    beside the plain one instead of replacing it, the start says what it did, and Inductor's
    per-kernel timing report stays out of the service's output."""
    engine, directory = first_start
    (plain,) = directory.iterdir()
    tuned = _start(settings, directory, compile="aot-max-autotune")
    assert tuned.acceleration is not None
    assert tuned.acceleration.aot == "compiled"
    assert "AOTInductor encoder (compiled, kernels autotuned)" in tuned.acceleration.describe()
    assert sorted(p.name for p in directory.iterdir()) == sorted(
        [plain.name, plain.name.removesuffix(".pt2") + "-autotuned.pt2"]
    )
    output = capfd.readouterr()
    assert "Autotune Choices Stats" not in output.out + output.err
    ours, theirs = _click(tuned), _click(engine)
    assert ours["all_scores"] == pytest.approx(theirs["all_scores"], abs=1e-4)
    assert np.mean(decode_mask(ours["mask"]) != decode_mask(theirs["mask"])) < 1e-3


def test_another_torch_device_model_checkpoint_dtype_or_autotuning_is_another_file(
    tmp_path: Path,
) -> None:
    weights = tmp_path / "model.pt"
    weights.write_bytes(b"weights")
    store = AotStore(tmp_path, "tiny", checkpoint_key(weights))
    cpu = torch.device("cpu")
    base = store.path(cpu, torch.float32)
    assert base.parent == tmp_path
    assert store.path(cpu, torch.bfloat16) != base
    assert AotStore(tmp_path, "large", store.weights).path(cpu, torch.float32) != base
    assert AotStore(tmp_path, "tiny", store.weights, autotune=True).path(cpu, torch.float32) != base
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(torch, "__version__", "9.9.9+other")
        assert store.path(cpu, torch.float32) != base
    os.utime(weights, ns=(1, 1))  # the checkpoint replaced in place
    assert AotStore(tmp_path, "tiny", checkpoint_key(weights)).path(cpu, torch.float32) != base
    assert checkpoint_key(weights) == checkpoint_key(weights)
