"""Bounded work: clicks go before automatic mode (which steps aside between decoder batches and
inside its encoder and decoder passes), a request's deadline stops its work, and a client that
goes away stops it too."""

from __future__ import annotations

import logging
import re
import threading
import time

import httpx
import pytest
import torch
from fastapi.testclient import TestClient
from sam2_contract.errors import OverBudgetError
from sam2_contract.models import SegmentRequest
from sam2_inference import InferenceSettings, Sam2Engine, create_app
from sam2_inference.costs import Costs
from sam2_inference.preemption import preemptible
from sam2_inference.scheduling import ModelLock, Work, WorkStopped
from sam2_inference.serving import BackgroundServer
from support import EncoderCounter, RunningServer, free_port, fresh_engine, image_b64

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
    engine.warm_up()  # measured costs: auto mode's batches are sized to auto_slice_ms
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
    # 64 points per batch asked, sliced to what takes auto_slice_ms on this machine.
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
        (0, "mlp.layers.0", (1, 256, 256, 96), 2),  # 96->384 over 65,536 tokens: 3 steps
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


def test_batches_are_sized_to_the_time_slice_with_the_same_masks(
    loaded_engine: Sam2Engine,
) -> None:
    """Slicing changes how many prompts go through the decoder at once, not which masks come
    back. The scores may differ in float32's last bits: sam2's own decoder on this CPU gives
    other last bits for a batch of 3, 4, 5, 6, 7, 9... prompts than for one of 64 (its matrix
    products round differently by batch size; measured up to 6e-8 on the IoU predictions),
    as sam2 itself does with another `points_per_batch`."""
    sliced, whole = fresh_engine(loaded_engine), fresh_engine(loaded_engine, auto_slice_ms=0)
    sliced.warm_up()
    body = {"image": image_b64("landscape")} | LONG_AUTO | {"points_per_batch": 64}
    request = SegmentRequest.model_validate(body)
    small, big = sliced.segment(request), whole.segment(request)
    sliced_to = [re.search(r"so that a batch takes about (\d+) ms", w) for w in small.warnings]
    assert any(m and 0 < int(m.group(1)) <= 50 for m in sliced_to), small.warnings
    assert not any("points_per_batch" in w for w in big.warnings)
    ours, theirs = small.model_dump()["masks"], big.model_dump()["masks"]
    assert len(ours) == len(theirs) > 0
    for mine, whole_batch in zip(ours, theirs, strict=True):
        iou = whole_batch.pop("predicted_iou")
        assert mine.pop("predicted_iou") == pytest.approx(iou, abs=1e-6)
        # Stability counts pixels at logit thresholds: one pixel of 10^4 at most.
        stability = whole_batch.pop("stability_score")
        assert mine.pop("stability_score") == pytest.approx(stability, abs=1e-4)
        assert mine == whole_batch  # segmentation, area, bbox, point and crop exactly


def test_batches_take_no_longer_than_a_click_where_a_click_is_shorter_than_the_slice() -> None:
    """On a GPU a click on a cached image takes a few ms: a 50 ms batch would hold it up
    tenfold, so batches are sized to the click's measured model time there."""
    costs = Costs()
    assert costs.batch_for(costs.slice_ms(50.0)) is None  # nothing measured yet: as asked
    costs.observe_batch(64.0, 256)  # a quarter of a millisecond per prompt
    assert costs.slice_ms(50.0) == 50.0  # no click seen yet
    assert costs.batch_for(costs.slice_ms(50.0)) == 200
    costs.observe_click(4.0)
    assert costs.slice_ms(50.0) == 4.0
    assert costs.batch_for(costs.slice_ms(50.0)) == 16
    assert costs.slice_ms(0.0) == 0.0  # slicing off stays off
    slow = Costs()
    slow.observe_batch(85.0, 1)
    slow.observe_click(80.0)  # a CPU: the setting is the shorter
    assert (slow.slice_ms(50.0), slow.batch_for(slow.slice_ms(50.0))) == (50.0, 1)


def test_where_a_batch_has_a_fixed_cost_batches_never_shrink_to_a_prompt_or_two() -> None:
    """Measured on an H200 (bench/README.md): a click took 3.6 ms of model time and a decoder
    batch about 3.6 ms whatever its size, so batches sized to the click held one prompt and a
    32x32 job took seven seconds. With a batch's fixed cost told from its per-prompt cost, a
    batch holds at least as many prompts as cost what the fixed part costs."""
    gpu = Costs()
    gpu.observe_click(3.6)
    for prompts, ms in [(1, 3.55), (4, 3.64), (4, 3.66), (1, 3.57)]:
        gpu.observe_batch(ms, prompts)
    fit = gpu.batch_fit()
    assert fit is not None
    assert fit[0] == pytest.approx(3.53, abs=0.01)
    assert fit[1] == pytest.approx(0.03, abs=0.001)
    assert gpu.batch_for(gpu.slice_ms(50.0)) == 117  # 3.5 ms of prompts beside 3.5 ms fixed
    cpu = Costs()  # time in proportion to prompts: sized to the slice as before
    for prompts, ms in [(1, 80.0), (4, 320.0), (16, 1280.0)]:
        cpu.observe_batch(ms, prompts)
    assert cpu.batch_fit() == pytest.approx((0.0, 80.0), abs=1e-6)
    assert cpu.batch_for(cpu.slice_ms(400.0)) == 5
    noisy = Costs()  # a fit below zero is noise: no fixed part
    for prompts, ms in [(1, 10.0), (2, 25.0)]:
        noisy.observe_batch(ms, prompts)
    assert noisy.batch_fit() == (0.0, 35.0 / 3)


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
    answer = client.post("/v1/segment", json=body, headers={"X-Sam2-Deadline-Ms": "200"})
    assert (answer.status_code, answer.json()["code"]) == (504, "inference_timeout")
    assert float(answer.headers["x-sam2-model-ms"]) > 0  # the gateway meters stopped work
    assert (
        client.post(
            "/v1/segment", json={"image": image_b64("landscape"), "point_coords": [[9, 9]]}
        ).status_code
        == 200
    )


def test_a_client_that_goes_away_stops_its_work(
    inference_server: RunningServer, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="sam2_inference.app")
    body = {"image": image_b64("portrait")} | LONG_AUTO
    with pytest.raises(httpx.ReadTimeout):
        httpx.post(f"{inference_server.url}/v1/segment", json=body, timeout=1.0)
    deadline = time.monotonic() + 30
    while "client went away" not in caplog.text and time.monotonic() < deadline:
        time.sleep(0.05)
    assert "client went away" in caplog.text
    click = {"image": image_b64("portrait"), "point_coords": [[9, 9]], "mask_format": "rle"}
    assert httpx.post(f"{inference_server.url}/v1/segment", json=click, timeout=60).is_success


def test_a_tenant_with_too_many_requests_here_gets_429_and_others_do_not(
    loaded_engine: Sam2Engine, settings: InferenceSettings
) -> None:
    engine = fresh_engine(loaded_engine)
    port = free_port()
    one_each = settings.model_copy(update={"max_queued_per_tenant": 1})
    server = BackgroundServer(create_app(one_each, engine=engine), "127.0.0.1", port)
    server.start()
    url = f"http://127.0.0.1:{port}/v1/segment"
    click = {"image": image_b64("portrait"), "point_coords": [[9, 9]], "mask_format": "rle"}
    try:
        long_job = _in_thread(
            lambda: httpx.post(
                url,
                json={"image": image_b64("portrait")} | LONG_AUTO,
                headers={"X-Sam2-Namespace": "alice", "X-Sam2-Deadline-Ms": "5000"},
                timeout=60,
            )
        )
        time.sleep(0.5)
        again = httpx.post(url, json=click, headers={"X-Sam2-Namespace": "alice"}, timeout=60)
        other = httpx.post(url, json=click, headers={"X-Sam2-Namespace": "bob"}, timeout=60)
        long_job.join(timeout=60)
    finally:
        server.stop()
    assert (again.status_code, again.json()["code"]) == (429, "too_many_concurrent")
    assert again.headers["retry-after"] == "1"
    assert other.status_code == 200
