"""The embedding cache: repeats skip the encoder, the byte budget holds, tenants stay apart."""

from __future__ import annotations

import threading

import numpy as np
import pytest
import torch
from fastapi.testclient import TestClient
from sam2_contract import decode_mask
from sam2_inference import CachedImage, EmbeddingCache, InferenceSettings, Sam2Engine, create_app
from sam2_inference.image.cache import MASKS_PER_IMAGE
from support import IMAGES, EncoderCounter, fresh_engine, image_b64, post_segment

CLICK = {"mode": "point", "point_coords": [[60, 40]], "point_labels": [1], "mask_format": "rle"}
NAMESPACE = "X-Sam2-Namespace"


def test_repeat_by_image_and_by_image_id_skip_the_encoder(
    client: TestClient, encoder_calls: EncoderCounter
) -> None:
    first = post_segment(client, {"image": image_b64("landscape")} | CLICK).json()
    assert (encoder_calls.calls, first["cached"]) == (1, False)
    assert first["timings_ms"]["embed_ms"] > 0

    again = post_segment(client, {"image": image_b64("landscape")} | CLICK).json()
    by_id = post_segment(client, {"image_id": first["image_id"]} | CLICK).json()
    assert encoder_calls.calls == 1
    for repeat in (again, by_id):
        assert repeat["cached"] is True
        assert repeat["timings_ms"]["embed_ms"] == 0
        assert repeat["image_id"] == first["image_id"]
        assert repeat["mask"] == first["mask"]
        assert repeat["all_scores"] == first["all_scores"]


def test_auto_mode_reuses_the_embedding_of_an_earlier_click(
    client: TestClient, encoder_calls: EncoderCounter
) -> None:
    first = post_segment(client, {"image": image_b64("portrait")} | CLICK).json()
    auto = {
        "mode": "auto",
        "points_per_side": 2,
        "mask_format": "rle",
        "image_id": first["image_id"],
    }
    response = post_segment(client, auto).json()
    assert encoder_calls.calls == 1
    assert response["cached"] is True


def test_unknown_image_id_asks_for_the_image_again(client: TestClient) -> None:
    response = post_segment(client, {"image_id": "img_" + "0" * 32} | CLICK)
    assert response.status_code == 404
    assert response.json()["code"] == "image_not_cached"


def test_namespaces_never_share_entries(client: TestClient, encoder_calls: EncoderCounter) -> None:
    first = post_segment(
        client, {"image": image_b64("landscape")} | CLICK, headers={NAMESPACE: "alice"}
    ).json()
    stolen = post_segment(
        client, {"image_id": first["image_id"]} | CLICK, headers={NAMESPACE: "bob"}
    )
    assert stolen.status_code == 404
    assert stolen.json()["code"] == "image_not_cached"
    own = post_segment(
        client, {"image": image_b64("landscape")} | CLICK, headers={NAMESPACE: "bob"}
    ).json()
    assert own["cached"] is False
    assert encoder_calls.calls == 2


def test_eviction_keeps_the_cache_inside_its_byte_budget(
    loaded_engine: Sam2Engine, settings: InferenceSettings
) -> None:
    probe = fresh_engine(loaded_engine)
    with TestClient(create_app(settings, engine=probe)) as client:
        post_segment(client, {"image": image_b64("landscape")} | CLICK)
    entry_bytes = probe.cache.stats().bytes
    assert entry_bytes > 1_000_000  # SAM2 features are megabytes; a wrong size would hide here

    engine = fresh_engine(loaded_engine, cache_bytes=int(entry_bytes * 1.5))
    with TestClient(create_app(settings, engine=engine)) as client:
        one = post_segment(client, {"image": image_b64("landscape")} | CLICK).json()
        two = post_segment(client, {"image": image_b64("portrait")} | CLICK).json()
        stats = engine.cache.stats()
        assert stats.entries == 1
        assert stats.evictions == 1
        assert stats.bytes <= stats.max_bytes
        assert post_segment(client, {"image_id": one["image_id"]} | CLICK).status_code == 404
        assert post_segment(client, {"image_id": two["image_id"]} | CLICK).status_code == 200


def _entry(nbytes_of_features: int) -> CachedImage:
    floats = nbytes_of_features // 4
    return CachedImage(
        pixels=np.zeros((1, 1, 3), np.uint8),
        features={"image_embed": torch.zeros(floats), "high_res_feats": []},
    )


def test_lru_order_and_oversized_entries() -> None:
    cache = EmbeddingCache(max_bytes=1000)
    for name in "abc":
        cache.put("ns", name, _entry(300))
    assert cache.get("ns", "a") is not None  # a is now the most recently used
    cache.put("ns", "d", _entry(300))
    assert ("ns", "b") not in cache
    assert all(("ns", k) in cache for k in "acd")
    cache.put("ns", "huge", _entry(2000))
    assert ("ns", "huge") not in cache
    assert cache.stats().bytes == 3 * (300 + 3)


def test_masks_are_kept_with_their_image_bounded_and_counted() -> None:
    mask_bytes = 256 * 256 * 4
    cache = EmbeddingCache(max_bytes=MASKS_PER_IMAGE * mask_bytes + 2000)
    cache.put("ns", "a", _entry(1000))
    assert cache.put_mask("ns", "missing", torch.zeros(1, 4, 4)) is None
    logits = [torch.full((1, 256, 256), float(i)) for i in range(MASKS_PER_IMAGE + 2)]
    ids = [cache.put_mask("ns", "a", t) for t in logits]
    assert all(i is not None and i.startswith("msk_") for i in ids)
    assert len(set(ids)) == len(ids)
    assert cache.get_mask("ns", "a", ids[0]) is None  # the oldest two made way
    assert cache.get_mask("ns", "a", ids[1]) is None
    assert cache.get_mask("ns", "a", ids[-1]) is logits[-1]
    assert cache.get_mask("other", "a", ids[-1]) is None  # another namespace sees nothing
    assert cache.stats().bytes == 1000 + 3 + MASKS_PER_IMAGE * mask_bytes
    cache.put("ns", "b", _entry(3 * mask_bytes))  # a and its masks make way
    assert cache.get_mask("ns", "a", ids[-1]) is None
    assert cache.stats().bytes == 3 * mask_bytes + 3


def test_masks_never_take_the_cache_over_its_budget() -> None:
    mask_bytes = 256 * 256 * 4
    cache = EmbeddingCache(max_bytes=2 * mask_bytes + 2000)
    cache.put("ns", "a", _entry(1000))
    ids = [cache.put_mask("ns", "a", torch.zeros(1, 256, 256)) for _ in range(3)]
    assert cache.stats().bytes == 1003 + 2 * mask_bytes <= cache.max_bytes
    assert cache.get_mask("ns", "a", ids[0] or "") is None
    assert cache.get_mask("ns", "a", ids[2] or "") is not None
    tiny = EmbeddingCache(max_bytes=mask_bytes)
    tiny.put("ns", "a", _entry(1000))
    assert tiny.put_mask("ns", "a", torch.zeros(1, 256, 256)) is None  # cannot fit: no id
    assert tiny.stats().bytes == 1003


def test_concurrent_requests_get_their_own_answers(client: TestClient) -> None:
    bodies = [
        {
            "image": image_b64(name),
            "point_coords": [[x, 30]],
            "point_labels": [1],
            "mask_format": "rle",
        }
        for name in IMAGES
        for x in (20, 70, 110)
    ]
    results: dict[int, dict] = {}

    def tenant(index: int) -> dict[str, str]:
        # One tenant each, as concurrent users are (their number at inference is bounded).
        return {"X-Sam2-Namespace": f"tenant-{index}"}

    def run(index: int) -> None:
        results[index] = post_segment(client, bodies[index], headers=tenant(index)).json()

    # Concurrent first, on an empty cache, so encoder runs and predictions interleave.
    threads = [threading.Thread(target=run, args=(i,)) for i in range(len(bodies))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    sequential = [post_segment(client, b, headers=tenant(i)).json() for i, b in enumerate(bodies)]
    for index, expected in enumerate(sequential):
        assert results[index]["image_id"] == expected["image_id"]
        assert np.array_equal(decode_mask(results[index]["mask"]), decode_mask(expected["mask"]))
        assert results[index]["all_scores"] == pytest.approx(expected["all_scores"], abs=1e-6)
