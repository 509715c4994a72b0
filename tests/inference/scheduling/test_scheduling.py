"""Bounded work: clicks go before automatic mode (which steps aside between decoder batches and
inside its encoder and decoder passes), a request's deadline stops its work, and a client that
goes away stops it too."""

from __future__ import annotations

import logging
import re
import threading
import time
from functools import partial
from typing import Any

import httpx
import pytest
import torch
from fastapi.testclient import TestClient
from pydantic import ValidationError
from sam2_contract.errors import OverBudgetError
from sam2_contract.models import SegmentRequest
from sam2_inference import InferenceSettings, Sam2Engine, create_app
from sam2_inference.api.serving import BackgroundServer
from sam2_inference.scheduling.costs import slice_prompts
from sam2_inference.scheduling.lock import ModelLock, Work, WorkStopped
from sam2_inference.scheduling.preemption import preemptible
from support import EncoderCounter, RunningServer, free_port, fresh_engine, image_b64, post_segment

LONG_AUTO = {
    "mode": "auto",
    "points_per_side": 8,
    "points_per_batch": 4,  # 16 decoder batches: 16 places to stop or step aside
    "pred_iou_thresh": 0.0,
    "stability_score_thresh": 0.0,
    "mask_format": "rle",
}


def _in_thread(target: object) -> threading.Thread:
    thread = threading.Thread(target=target, daemon=True)  # type: ignore[arg-type]
    thread.start()
    return thread


def test_a_waiting_click_goes_before_a_waiting_auto_job() -> None:
    lock, order = ModelLock(), []
    release = threading.Event()

    def holder() -> None:
        with lock.hold(interactive=False):
            release.wait()

    def job(name: str, interactive: bool) -> None:
        with lock.hold(interactive=interactive):
            order.append(name)

    first = _in_thread(holder)
    time.sleep(0.05)
    auto = _in_thread(lambda: job("auto", False))
    time.sleep(0.05)
    click = _in_thread(lambda: job("click", True))
    time.sleep(0.05)
    release.set()
    for thread in (first, auto, click):
        thread.join(timeout=5)
    assert order == ["click", "auto"]


def _long_auto_on_a_cached_image(engine: Sam2Engine) -> SegmentRequest:
    upload = {"image": image_b64("landscape"), "point_coords": [[5, 5]]}
    first = engine.segment(SegmentRequest.model_validate(upload))
    return SegmentRequest.model_validate({"image_id": first.image_id} | LONG_AUTO)


def test_automatic_mode_steps_aside_for_a_click_between_batches(engine: Sam2Engine) -> None:
    engine.warm_up()
    auto = _long_auto_on_a_cached_image(engine)
    auto = auto.model_copy(update={"points_per_batch": 64})
    click = SegmentRequest(image_id=auto.image_id, point_coords=[[50, 50]], mask_format="rle")
    batches: list[int] = []
    observe = engine.costs.observe_batch
    engine.costs.observe_batch = lambda ms, n: (batches.append(n), observe(ms, n))  # type: ignore[method-assign]
    done: list[str] = []
    running = _in_thread(lambda: (engine.segment(auto), done.append("auto")))
    time.sleep(1.0)  # the auto job holds the model by now
    assert not done
    before = len(batches)
    engine.segment(click)
    during = len(batches) - before
    done.append("click")
    running.join(timeout=300)
    assert done == ["click", "auto"]
    # The click waited for at most the batch running when it came, and that batch was small:
    # 64 points per batch asked, sliced to SAM2_AUTO_SLICE_PROMPTS (one prompt on a CPU).
    assert during <= 1
    assert max(batches) < 64
    assert len(batches) > 1


def _auto_stages_while_a_click_runs(
    engine: Sam2Engine, auto: SegmentRequest, stages: list[torch.nn.Module], start_after: int
) -> tuple[list[str], list[str]]:
    """Run `auto` in a thread; once it has entered `stages` `start_after` times, answer a
    click. Returns which thread entered each stage, in order: all of them, and those entered
    while the click was being answered."""
    click = SegmentRequest(image_id=auto.image_id, point_coords=[[50, 50]], mask_format="rle")
    ran: list[str] = []
    mid_pass = threading.Event()

    def record(*_: object) -> None:
        ran.append(threading.current_thread().name)
        if ran.count("auto") == start_after:
            mid_pass.set()

    hooks = [stage.register_forward_pre_hook(record) for stage in stages]
    try:
        running = threading.Thread(target=lambda: engine.segment(auto), name="auto")
        running.start()
        assert mid_pass.wait(timeout=120)
        before = len(ran)
        engine.segment(click)
        during = ran[before:]
        running.join(timeout=300)
    finally:
        for hook in hooks:
            hook.remove()
    return ran, during


def test_a_click_does_not_wait_for_a_whole_encoder_pass_of_an_auto_job(
    engine: Sam2Engine,
) -> None:
    """A crop layer's image-encoder pass steps aside for a click between its blocks."""
    auto = _long_auto_on_a_cached_image(engine).model_copy(
        update={"points_per_side": 2, "crop_n_layers": 1}
    )
    blocks = list(engine.model.image_encoder.trunk.blocks)
    ran, during = _auto_stages_while_a_click_runs(engine, auto, blocks, start_after=3)
    # The click ran while that encoder pass was suspended: at most one more of its blocks ran
    # before the click was answered, not the rest of the pass.
    assert during.count("auto") <= 1
    assert ran.count("auto") > len(blocks)  # the auto job's encoder passes did run on


def test_a_click_does_not_wait_for_a_whole_decoder_pass_of_an_auto_job(
    engine: Sam2Engine,
) -> None:
    """One prompt through the mask decoder is as long as a whole click on a CPU: an auto
    job's decoder pass steps aside for a click between its stages."""
    auto = _long_auto_on_a_cached_image(engine).model_copy(update={"points_per_batch": 1})
    decoder = engine.model.sam_mask_decoder
    stages = [
        *decoder.transformer.layers,
        decoder.transformer.final_attn_token_to_image,
        *(m for m in decoder.output_upscaling if isinstance(m, torch.nn.ConvTranspose2d)),
        decoder.output_hypernetworks_mlps[0],
    ]
    ran, during = _auto_stages_while_a_click_runs(engine, auto, stages, start_after=2)
    # The click came while the job's first decoder pass was in its second stage: the click
    # ran its own decoder pass (every stage) before the job went on to its third.
    assert during.count("auto") <= 1
    assert during.count(threading.current_thread().name) == len(stages)
    assert ran.count("auto") == len(stages) * 64  # 8x8 prompts, one pass each, all run


@pytest.mark.parametrize(
    ("block", "layer", "shape", "points"),
    [
        # Global attention over hiera-tiny's 64x64 tokens: its input projection in 2 steps,
        # the attention in 4, and the stage points before the attention and before its output
        # projection.
        (5, "attn", (1, 64, 64, 384), 1 + 3 + 2),
        # 2,048 windows of 8x8: input projection in 4 steps, attention in 2, output in 2.
        (0, "attn", (2048, 8, 8, 96), 3 + 1 + 1 + 2),
        (0, "mlp.layers.0", (1, 256, 256, 96), 3),  # 96->384 over 65,536 tokens: 4 steps
        # 192->768 over 16,384 tokens in 4 steps of 4,096 (and the stage point of the second);
        # 3072->768 over 1,024 tokens in one call (only its stage point). On an Intel Xeon,
        # steps of other sizes (7,281 rows; 256 or 455) gave other last bits than one call.
        (2, "mlp.layers.0", (1, 128, 128, 192), 3),
        (2, "mlp.layers.1", (1, 128, 128, 768), 3 + 1),
        (11, "mlp.layers.1", (1, 32, 32, 3072), 1),
    ],
)
def test_long_encoder_calls_step_aside_and_compute_the_same(
    loaded_engine: Sam2Engine, block: int, layer: str, shape: tuple[int, ...], points: int
) -> None:
    """An encoder call too long to be one stage (an attention, a linear layer over many
    tokens) runs in steps with places to step aside between them, and gives exactly what
    sam2's single call gives."""
    module = loaded_engine.model.image_encoder.trunk.blocks[block].get_submodule(layer)
    x = torch.randn(*shape, generator=torch.Generator().manual_seed(block))
    called: list[int] = []
    with torch.inference_mode():
        whole = module(x)  # no preemption point in this thread: sam2's own forward
        with preemptible(lambda: called.append(1)):
            stepped = module(x)
    assert len(called) == points
    assert torch.equal(stepped, whole)


def test_batches_are_sliced_to_a_fixed_size_here_whatever_was_asked(
    loaded_engine: Sam2Engine,
) -> None:
    """On a CPU one prompt per decoder batch (one prompt already takes about a click's time);
    the answer says so, and a batch of the size set runs as asked."""
    sliced, whole = fresh_engine(loaded_engine), fresh_engine(loaded_engine, auto_slice=0)
    assert (sliced.slice_prompts, whole.slice_prompts) == (1, 0)
    body = {"image": image_b64("landscape")} | LONG_AUTO | {"points_per_side": 4}
    request = SegmentRequest.model_validate(body | {"points_per_batch": 64})
    batches: list[int] = []

    def count(_: object, _args: object, kwargs: dict[str, Any], _out: object) -> None:
        batches.append(kwargs["sparse_prompt_embeddings"].shape[0])

    hook = loaded_engine.model.sam_mask_decoder.register_forward_hook(count, with_kwargs=True)
    try:
        small = sliced.segment(request)
        sizes_sliced, batches[:] = list(batches), []
        whole.segment(request)
    finally:
        hook.remove()
    assert (sizes_sliced, batches) == ([1] * 16, [16])
    assert any(
        "points_per_batch lowered from 64 to 1 to fit SAM2_AUTO_SLICE_PROMPTS" in w
        for w in small.warnings
    ), small.warnings


@pytest.mark.parametrize(
    ("setting", "device", "prompts"),
    [
        ("auto", "cpu", 1),
        ("auto", "cuda", 128),
        ("auto", "mps", 128),
        (8, "cuda", 8),
        (0, "cpu", 0),
    ],
)
def test_the_slice_is_a_number_per_device_kind_never_a_measured_time(
    setting: int | str, device: str, prompts: int
) -> None:
    assert slice_prompts(setting, device) == prompts  # type: ignore[arg-type]


def test_the_slice_setting_takes_auto_or_a_count(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SAM2_AUTO_SLICE_PROMPTS", "16")
    assert InferenceSettings().auto_slice_prompts == 16
    monkeypatch.setenv("SAM2_AUTO_SLICE_PROMPTS", "auto")
    assert InferenceSettings().auto_slice_prompts == "auto"
    for bad in ("-1", "fast", "1.5"):
        monkeypatch.setenv("SAM2_AUTO_SLICE_PROMPTS", bad)
        with pytest.raises(ValidationError):
            InferenceSettings()


def test_the_same_auto_request_gives_the_same_masks_under_any_load(
    loaded_engine: Sam2Engine,
) -> None:
    """Three runs of one automatic-mode request: alone, beside clicks from two threads, and
    beside a thread that keeps both cores busy. The answers are bit-identical,
    scores included, and so are the decoder batches they ran."""
    engine = fresh_engine(loaded_engine)
    engine.warm_up()
    auto = _long_auto_on_a_cached_image(engine).model_copy(update={"points_per_side": 4})
    click = SegmentRequest(image_id=auto.image_id, point_coords=[[50, 50]], mask_format="rle")
    batches: list[int] = []
    observe = engine.costs.observe_batch
    engine.costs.observe_batch = lambda ms, n: (batches.append(n), observe(ms, n))  # type: ignore[method-assign]

    def clicks(stop: threading.Event) -> None:  # clicks back to back would starve it
        while not stop.wait(0.3):
            engine.segment(click)

    def busy(stop: threading.Event) -> None:
        a = torch.rand(256, 256)
        while not stop.is_set():
            a = torch.tanh(a @ a)

    runs = []
    for load in ([], [clicks, clicks], [busy]):
        stop = threading.Event()
        threads = [_in_thread(partial(target, stop)) for target in load]
        batches.clear()
        answer = engine.segment(auto).model_dump()
        stop.set()
        for thread in threads:
            thread.join(timeout=60)
        runs.append((list(batches), answer["masks"]))
    assert runs[0][1], "thresholds at 0 keep masks"
    assert runs[0] == runs[1] == runs[2]


def test_an_auto_job_that_cannot_finish_before_the_deadline_is_refused_first(
    engine: Sam2Engine, encoder_calls: EncoderCounter
) -> None:
    engine.warm_up()
    upload = {"image": image_b64("landscape"), "point_coords": [[5, 5]]}
    image_id = engine.segment(SegmentRequest.model_validate(upload)).image_id
    too_big = SegmentRequest.model_validate(
        {"image_id": image_id} | LONG_AUTO | {"points_per_side": 64}
    )
    calls, started = encoder_calls.calls, time.perf_counter()
    with pytest.raises(OverBudgetError) as refused:
        engine.segment(too_big, work=Work.within(2.0))
    assert time.perf_counter() - started < 1.0  # refused before any model work
    assert encoder_calls.calls == calls
    assert (refused.value.status, refused.value.code.value) == (422, "over_time_budget")
    suggested = re.search(r"points_per_side=(\d+) would fit", refused.value.detail)
    assert suggested is not None, refused.value.detail
    assert 1 <= int(suggested.group(1)) < 64
    # Four more encoder passes (one crop layer) cannot fit in 2 s on this CPU at any grid.
    crops = too_big.model_copy(update={"crop_n_layers": 1})
    with pytest.raises(OverBudgetError, match="lower crop_n_layers"):
        engine.segment(crops, work=Work.within(2.0))
    # Without a deadline nothing is refused: the estimate guards deadlines only.
    smaller = too_big.model_copy(update={"points_per_side": 2})
    assert engine.segment(smaller).count >= 1


def test_a_passed_deadline_stops_the_work(engine: Sam2Engine) -> None:
    auto = _long_auto_on_a_cached_image(engine)
    with pytest.raises(WorkStopped) as stopped:
        engine.segment(auto, work=Work.within(0.2))
    assert stopped.value.code.value == "inference_timeout"
    assert stopped.value.status == 504
    cancelled = Work()
    cancelled.cancelled.set()
    with pytest.raises(WorkStopped):
        engine.segment(auto, work=cancelled)


def test_the_deadline_header_bounds_a_request(client: TestClient) -> None:
    body = {"image": image_b64("landscape")} | LONG_AUTO
    answer = post_segment(client, body, headers={"X-Sam2-Deadline-Ms": "200"})
    assert (answer.status_code, answer.json()["code"]) == (504, "inference_timeout")
    assert float(answer.headers["x-sam2-model-ms"]) > 0  # the gateway meters stopped work
    assert (
        post_segment(
            client, {"image": image_b64("landscape"), "point_coords": [[9, 9]]}
        ).status_code
        == 200
    )


def test_a_client_that_goes_away_stops_its_work(
    inference_server: RunningServer, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="sam2_inference.api.bounded")
    body = {"image": image_b64("portrait")} | LONG_AUTO
    with pytest.raises(httpx.ReadTimeout):
        post_segment(httpx, base_url=inference_server.url, body=body, timeout=1.0)
    deadline = time.monotonic() + 30
    while "client went away" not in caplog.text and time.monotonic() < deadline:
        time.sleep(0.05)
    assert "client went away" in caplog.text
    click = {"image": image_b64("portrait"), "point_coords": [[9, 9]], "mask_format": "rle"}
    assert post_segment(httpx, base_url=inference_server.url, body=click, timeout=60).is_success


def test_a_tenant_with_too_many_requests_here_gets_429_and_others_do_not(
    loaded_engine: Sam2Engine, settings: InferenceSettings
) -> None:
    engine = fresh_engine(loaded_engine)
    port = free_port()
    one_each = settings.model_copy(update={"max_queued_per_tenant": 1})
    server = BackgroundServer(create_app(one_each, engine=engine), "127.0.0.1", port)
    server.start()
    url = f"http://127.0.0.1:{port}"
    click = {"image": image_b64("portrait"), "point_coords": [[9, 9]], "mask_format": "rle"}
    try:
        long_job = _in_thread(
            lambda: post_segment(
                httpx,
                {"image": image_b64("portrait")} | LONG_AUTO,
                base_url=url,
                headers={"X-Sam2-Namespace": "alice", "X-Sam2-Deadline-Ms": "5000"},
                timeout=60,
            )
        )
        time.sleep(0.5)
        again = post_segment(
            httpx, base_url=url, body=click, headers={"X-Sam2-Namespace": "alice"}, timeout=60
        )
        other = post_segment(
            httpx, base_url=url, body=click, headers={"X-Sam2-Namespace": "bob"}, timeout=60
        )
        long_job.join(timeout=60)
    finally:
        server.stop()
    assert (again.status_code, again.json()["code"]) == (429, "too_many_concurrent")
    assert again.headers["retry-after"] == "1"
    assert other.status_code == 200
