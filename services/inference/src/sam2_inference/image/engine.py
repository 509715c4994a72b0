"""The SAM2 engine: official `SAM2ImagePredictor` / `SAM2AutomaticMaskGenerator`, plus a cache.

Each request gets its own predictor object (cheap: it shares the model), so the per-image state
SAM2 keeps on a predictor never leaks between concurrent requests. Model work, and building
predictors (torch.jit.script in their transforms is not thread-safe), runs under one lock: the
accelerator serialises it anyway, and this bounds memory to one request's activations. The
parts: inputs.py (the request's image), prompts.py (points, boxes, refinement), auto.py
(automatic mode), response.py (what every answer carries), predictor.py (sam2's classes with
this service's hooks).
"""

from __future__ import annotations

import logging
from functools import partial
from time import perf_counter

import numpy as np
import torch
from sam2.modeling.sam2_base import SAM2Base
from sam2_contract.errors import ModelNotLoadedError, OverBudgetError
from sam2_contract.images import DecodedImage, image_id_for
from sam2_contract.models import (
    RANDOM_WEIGHTS_WARNING,
    AutoSegmentResponse,
    Health,
    ModelInfo,
    PromptSegmentResponse,
    SegmentRequest,
    SegmentResponse,
)

from sam2_inference.config import (
    AutoSlice,
    CompileMode,
    DecoderPreference,
    GraphsPreference,
    InferenceSettings,
    PipelinePreference,
    PrecisionPreference,
)
from sam2_inference.image.auto import (
    check_time,
    decoder_batch,
    new_generator,
    why_no_mask,
)
from sam2_inference.image.cache import CachedImage, EmbeddingCache
from sam2_inference.image.client_decode import DecoderExport
from sam2_inference.image.decoding import ImageDecoder, pick_decoder
from sam2_inference.image.inputs import ResolvedImage, check_bounds, resolve_image
from sam2_inference.image.onnx import OPSET
from sam2_inference.image.predictor import CachingPredictor, Predictors
from sam2_inference.image.prompts import answer_prompts, check_answer, kept_logits
from sam2_inference.image.response import Ran, auto_response, prompt_response
from sam2_inference.runtime import accel
from sam2_inference.runtime.accel import Acceleration
from sam2_inference.runtime.aot import AOT_MODES, AotStore, checkpoint_key
from sam2_inference.runtime.device import (
    compute_dtype,
    configure,
    inference_context,
    pick_device,
    pick_pipeline,
)
from sam2_inference.runtime.weights import load_model, resolve_checkpoint, served_info
from sam2_inference.scheduling.budget import default_budget, prompts_that_fit
from sam2_inference.scheduling.costs import Costs, slice_prompts
from sam2_inference.scheduling.lock import ModelLock, Work
from sam2_inference.scheduling.preemption import install_preemption, preemptible

log = logging.getLogger(__name__)

__all__ = ["CachedImage", "Sam2Engine"]


class Sam2Engine:
    """Answers SegmentRequests with one loaded SAM 2.1 model."""

    def __init__(
        self,
        model: SAM2Base,
        info: ModelInfo,
        cache: EmbeddingCache,
        *,
        max_pixels: int,
        max_request_bytes: int = 0,
        auto_slice: AutoSlice = 0,
        pipeline: PipelinePreference = "exact",
        precision: PrecisionPreference = "auto",
        cuda_graphs: GraphsPreference = "auto",
        compile_mode: CompileMode = "off",
        image_decoder: DecoderPreference = "auto",
        aot_store: AotStore | None = None,
    ) -> None:
        self.model = model
        self.device = torch.device(info.device)
        self._pipeline_preference = pipeline
        self._decoder_preference = image_decoder
        self._speed = (precision, cuda_graphs, compile_mode)
        if compile_mode in AOT_MODES and aot_store is None:
            raise ValueError(f"compile_mode={compile_mode!r} needs an aot_store for the package")
        self.aot_store = aot_store
        self.acceleration: Acceleration | None = None
        self.info = info.model_copy(update={"pipeline": pick_pipeline(pipeline, self.device)})
        self.cache = cache
        self.max_pixels = max_pixels
        self.decoder = self._new_decoder()
        self.max_request_bytes = max_request_bytes
        self.auto_slice = auto_slice
        self.costs = Costs()
        install_preemption(model)
        self._lock = ModelLock()
        self._predictors = Predictors(model, self.device, fast=self.fast)
        self.decoder_export = DecoderExport(
            model, aot_store.decoder_path(OPSET) if aot_store is not None else None
        )
        self._derived_budget: int | None = None
        self._accelerate()

    @classmethod
    def from_settings(cls, settings: InferenceSettings) -> Sam2Engine:
        """Resolve the weights, load the model on the chosen device, and wrap it."""
        device = pick_device(settings.device)
        configure(device)
        checkpoint = resolve_checkpoint(settings)
        started = perf_counter()
        model = load_model(settings.model, checkpoint, device)
        info = served_info(settings.model, checkpoint, device)
        engine = cls(
            model,
            info,
            EmbeddingCache(settings.cache_max_bytes),
            max_pixels=settings.max_pixels,
            max_request_bytes=settings.max_request_bytes,
            auto_slice=settings.auto_slice_prompts,
            pipeline=settings.pipeline,
            precision=settings.precision,
            cuda_graphs=settings.cuda_graphs,
            compile_mode=settings.compile,
            image_decoder=settings.image_decoder,
            aot_store=AotStore(settings.aot_dir, settings.model, checkpoint_key(checkpoint.path)),
        )
        log.info(
            "loaded %s from %s (%s) on %s in %.1f s, %s pipeline%s, images decoded by %s",
            info.model_id,
            checkpoint.path,
            info.weights,
            device,
            perf_counter() - started,
            engine.info.pipeline,
            f" ({engine.acceleration.describe()})" if engine.acceleration else "",
            engine.decoder.name,
        )
        if info.random_weights:
            log.warning("RANDOM WEIGHTS: %s", RANDOM_WEIGHTS_WARNING)
        return engine

    def to(self, device: torch.device) -> None:
        """Move the model (e.g. from the CPU where a memory snapshot loaded it to the GPU).
        Cached embeddings live on the old device, so the cache starts empty."""
        configure(device)
        with self._lock.hold(interactive=True):
            accel.release(self.model)
            self.model.to(device)
            self.device = device
            self.info = self.info.model_copy(
                update={
                    "device": device.type,
                    "dtype": str(compute_dtype(device)).removeprefix("torch."),
                    "pipeline": pick_pipeline(self._pipeline_preference, device),
                }
            )
            self.cache = EmbeddingCache(self.cache.max_bytes)
            self.decoder = self._new_decoder()
            self._predictors = Predictors(self.model, device, fast=self.fast)
            self._derived_budget = None
            self.costs = Costs()  # measured on the old device
            self._accelerate()

    def _new_decoder(self) -> ImageDecoder:
        name = pick_decoder(self._decoder_preference, self.device, self.info.pipeline)
        return ImageDecoder(name, self.device, max_pixels=self.max_pixels)

    def _accelerate(self) -> None:
        precision, graphs, compile_mode = self._speed
        self.acceleration = accel.for_pipeline(
            self.model,
            self.device,
            fast=self.fast,
            precision=precision,
            graphs=graphs,
            compile_mode=compile_mode,
            aot_store=self.aot_store,
        )

    def warm_up(self) -> None:
        """One click and a small automatic-mode job on a small image, so the first real request
        pays no one-off start-up cost (CUDA context, kernel selection, graph capture) and
        automatic mode's cost estimate starts from this device's times. Runs in its own
        namespace."""
        pixels = np.full((64, 64, 3), 128, dtype=np.uint8)
        image = DecodedImage(pixels=pixels, format="raw", image_id=image_id_for(pixels))
        click = SegmentRequest(image_id=image.image_id, point_coords=[[32, 32]], mask_format="rle")
        self.segment(click, namespace="__warmup__", image=image)
        auto = SegmentRequest(
            image_id=image.image_id, mode="auto", points_per_side=2, mask_format="rle"
        )
        self.segment(auto, namespace="__warmup__", image=image)

    @property
    def slice_prompts(self) -> int:
        """Prompts automatic mode's decoder batches hold at most here (0: as asked)."""
        return slice_prompts(self.auto_slice, self.device.type)

    def health(self) -> Health:
        """What /healthz reports for a loaded engine."""
        return Health(
            state="ready",
            model=self.info,
            random_weights=self.info.random_weights,
            warnings=self.warnings,
            cache=self.cache.stats(),
        )

    @property
    def memory_budget(self) -> int:
        """Bytes one request's model work may use: the setting, or half the device's memory,
        read when first asked (never while a snapshot is taken: see api/serving.py)."""
        if self.max_request_bytes:
            return self.max_request_bytes
        if self._derived_budget is None:
            self._derived_budget = default_budget(self.device)
        return self._derived_budget

    @property
    def fast(self) -> bool:
        """Whether this engine runs the fast pipeline (fastpath.py) rather than sam2's own."""
        return self.info.pipeline == "fast"

    @property
    def warnings(self) -> list[str]:
        return [RANDOM_WEIGHTS_WARNING] if self.info.random_weights else []

    def segment(
        self,
        request: SegmentRequest,
        *,
        namespace: str = "default",
        image: DecodedImage | None = None,
        image_file: bytes | None = None,
        work: Work | None = None,
        answer_limit: tuple[str, int] | None = None,
    ) -> SegmentResponse:
        """Run one request; raises Sam2ServiceError subclasses for anything the client got wrong.

        `image`, when given, is the request's image already decoded (warm-up's pixels): it is
        not decoded again. `image_file` is the image file the gateway forwarded for a
        request that names it by `image_id`: decoded here, unless its embedding is cached.
        `answer_limit` (a mask format and bytes: the gateway's bound on the answer it will
        build) refuses prompts whose masks alone would pass it, before any model work.
        """
        started = perf_counter()
        if request.model is not None and request.model != self.info.name:
            raise ModelNotLoadedError(
                f"this server serves {self.info.name!r}, not {request.model!r}"
            )
        resolved = resolve_image(
            request,
            namespace,
            cache=self.cache,
            decoder=self.decoder,
            decoded=image,
            image_file=image_file,
        )
        check_bounds(request, resolved)
        work = work or Work()
        if request.mode == "auto":
            return self._auto(request, namespace, resolved, started, work)
        if answer_limit is not None:
            height, width = resolved.pixels.shape[:2]
            check_answer(request, height, width, answer_limit)
        return self._prompt(request, namespace, resolved, started, work)

    def _predictor(
        self, namespace: str, image: ResolvedImage, work: Work, *, hole_area: float = 0.0
    ) -> CachingPredictor:
        pixels = (image.pixels, image.image_id, image.on_device)
        return self._predictors.get(self.cache, namespace, pixels, work, hole_area=hole_area)

    def _prompt(
        self,
        request: SegmentRequest,
        namespace: str,
        image: ResolvedImage,
        started: float,
        work: Work,
    ) -> PromptSegmentResponse:
        objects = request.prompt_sets()
        mask_inputs = [
            kept_logits(self.cache, namespace, image.image_id, item.refine) for item in objects
        ]
        prompts = len(objects)
        if prompts > self._prompts_that_fit(image):
            raise OverBudgetError(
                f"{prompts} masks on a {image.size} image need more memory than one request "
                f"may use ({self.memory_budget >> 20} MiB)",
                hint="Send the boxes or objects in several requests (by image_id: no new upload).",
            )
        before = work.model_ms
        with self._lock.hold(interactive=True), inference_context(self.device), work.on_model():
            work.check()
            predictor = self._predictor(namespace, image, work)
            if image.entry is not None:
                predictor.use(image.entry)
            else:
                predictor.set_image(image.pixels)
            if predictor.encoder_runs:
                self.costs.observe_encoder(predictor.embed_ms)
            answers = answer_prompts(predictor, request, objects, mask_inputs, fast=self.fast)
        ran = self._ran(request, image, predictor, work, before, started)
        return prompt_response(
            ran, answers, partial(self.cache.put_mask, namespace, image.image_id)
        )

    def _auto(
        self,
        request: SegmentRequest,
        namespace: str,
        image: ResolvedImage,
        started: float,
        work: Work,
    ) -> AutoSegmentResponse:
        fits = self._prompts_that_fit(image)
        if fits < 1:
            raise OverBudgetError(
                f"one prompt on a {image.size} image needs more memory than one request may "
                f"use ({self.memory_budget >> 20} MiB)",
                hint="Send a smaller image (SAM2 works at 1024x1024 internally).",
            )
        check_time(request, image, work, self.costs)
        batch, notes = decoder_batch(
            request,
            fits=fits,
            slice_prompts=self.slice_prompts,
            fast=self.fast,
            budget_mib=self.memory_budget >> 20,
        )
        before = work.model_ms
        with self._lock.hold(interactive=False), inference_context(self.device), work.on_model():
            work.check()
            generator = new_generator(self.model, request, batch)
            generator.work = work
            generator.fast = self.fast
            generator.between_batches = partial(self._between_batches, work)
            generator.observe_batch = self.costs.observe_batch
            predictor = self._predictor(
                namespace, image, work, hole_area=request.min_mask_region_area
            )
            generator.predictor = predictor
            with preemptible(generator.between_batches):
                records = generator.generate(image.pixels)
        if predictor.encoder_runs:
            self.costs.observe_encoder(predictor.embed_ms / predictor.encoder_runs)
        if not records:
            notes.append(why_no_mask(request, random_weights=self.info.random_weights))
        ran = self._ran(request, image, predictor, work, before, started, notes)
        return auto_response(ran, records)

    def let_clicks_pass(self) -> None:
        """For CPU work beside the model (a clip being decoded): wait while a click waits for
        the model or runs, so that the click is not slowed by it."""
        self._lock.let_clicks_pass()

    def _between_batches(self, work: Work) -> None:
        work.check()
        with work.aside():
            self._lock.step_aside()  # a waiting click goes first

    def _prompts_that_fit(self, image: ResolvedImage) -> int:
        height, width = image.pixels.shape[:2]
        return prompts_that_fit(self.memory_budget, height, width)

    def _ran(
        self,
        request: SegmentRequest,
        image: ResolvedImage,
        predictor: CachingPredictor,
        work: Work,
        model_ms_before: float,
        started: float,
        notes: list[str] | None = None,
    ) -> Ran:
        """The work done, for its answer: its model time without the time it stepped aside."""
        model_ms = work.model_ms - model_ms_before
        warnings = self.warnings + (notes or [])
        return Ran(request, image, predictor, self.info, model_ms, started, warnings)
