"""Scale-out, end to end: three inference replicas behind the stand-in for Modal's proxy
(sticky routing by `Modal-Session-ID`), the real gateway in front, driven by the Python SDK as
a user would."""

from __future__ import annotations

import pytest
from sam2_inference import InferenceSettings, Sam2Engine
from scale_out import cluster, drive, images

IMAGES, CLICKS = 50, 5


@pytest.mark.slow
def test_clicks_follow_their_image_across_replicas_and_survive_one_stopping(
    loaded_engine: Sam2Engine, settings: InferenceSettings
) -> None:
    """50 images x 5 clicks over three replicas; the first replica stops halfway through the
    third round. Repeat clicks find their embedding; after the stop every call still succeeds,
    each moved image re-uploaded once by the SDK."""
    with cluster(loaded_engine, settings, sticky=True) as running:
        report = drive(running, images(IMAGES), CLICKS, stop_at=2 * IMAGES + IMAGES // 2)
        homes = {f.replica for f in running.proxy.log if f.uploaded}
    print(report)
    assert report.failures == 0
    assert report.hit_rate_before_stop >= 0.99
    assert report.most_uploads_of_one_image <= 2  # at most one resend
    assert report.images_uploaded_again >= 1  # the stopped replica's images found a new home
    assert len(homes) == 3  # the images spread over every replica


@pytest.mark.slow
def test_without_affinity_repeat_clicks_mostly_miss(
    loaded_engine: Sam2Engine, settings: InferenceSettings
) -> None:
    """The comparison: the same clicks routed at random find their embedding far less often
    (the bench measures the full 50 x 5)."""
    with cluster(loaded_engine, settings, sticky=False) as running:
        report = drive(running, images(8), 3)
    print(report)
    assert report.failures == 0
    assert report.hit_rate < 0.75
