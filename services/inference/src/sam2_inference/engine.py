"""The SAM2 engine: official `SAM2ImagePredictor` / `SAM2AutomaticMaskGenerator`, plus a cache.

Each request gets its own predictor object (cheap: it shares the model), so the per-image state
SAM2 keeps on a predictor never leaks between concurrent requests. Model work, and building
predictors (torch.jit.script in their transforms is not thread-safe), runs under one lock: the
accelerator serialises it anyway, and this bounds memory to one request's activations.
"""

from __future__ import annotations

import copy
import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from functools import partial
from time import perf_counter
from typing import Any

import numpy as np
import numpy.typing as npt
import torch
from sam2.automatic_mask_generator import SAM2AutomaticMaskGenerator
from sam2.modeling.sam2_base import SAM2Base
from sam2.sam2_image_predictor import SAM2ImagePredictor
from sam2_contract.errors import (
    ErrorCode,
    ImageNotCachedError,
    InvalidRequestError,
    MaskNotFoundError,
    ModelNotLoadedError,
    OverBudgetError,
    Sam2ServiceError,
)
from sam2_contract.images import (
    DecodedImage,
    Pixels,
    decode_base64,
    image_id_for,
    image_id_for_file,
)
from sam2_contract.masks import (
    BoolMask,
    answer_mask_bytes,
    answer_too_large,
    decode_mask,
    encode_mask,
    mask_from_counts,
    rle_from_counts,
)
from sam2_contract.models import (
    MODEL_IDS,
    RANDOM_WEIGHTS_WARNING,
    AutoMask,
    AutoSegmentResponse,
    BatchItemResult,
    BatchSegmentResponse,
    Health,
    Mask,
    ModelInfo,
    ObjectPrompt,
    PromptPrediction,
    PromptSegmentResponse,
    SegmentRequest,
    SegmentResponse,
    Timings,
)
from sam2_contract.overlay import render_overlay
from sam2_contract.polygons import EdgeBudget
from sam2_contract.validation import BatchEnvelope, parse_segment_request

from sam2_inference import accel, fastpath
from sam2_inference.accel import Acceleration
from sam2_inference.aot import AOT_MODES, AotStore, checkpoint_key
from sam2_inference.budget import default_budget, prompts_that_fit
from sam2_inference.cache import CachedImage, EmbeddingCache
from sam2_inference.config import (
    AutoSlice,
    CompileMode,
    DecoderPreference,
    GraphsPreference,
    InferenceSettings,
    PipelinePreference,
    PrecisionPreference,
)
from sam2_inference.costs import Costs, auto_work, slice_prompts
from sam2_inference.decoding import Decoded, ImageDecoder, pick_decoder
from sam2_inference.device import (
    compute_dtype,
    configure,
    inference_context,
    pick_device,
    pick_pipeline,
)
from sam2_inference.preemption import install_preemption, preemptible
from sam2_inference.scheduling import ModelLock, Work
from sam2_inference.weights import load_model, resolve_checkpoint

log = logging.getLogger(__name__)

FloatArray = npt.NDArray[np.float32]
_Encode = Callable[[npt.ArrayLike], Mask]


class _CachingPredictor(SAM2ImagePredictor):  # type: ignore[misc]
    """A SAM2ImagePredictor whose `set_image` looks in the embedding cache first.

    The automatic mask generator calls `set_image` once per crop; going through this method
    means auto mode reuses a cached embedding too.
    """

    _cache: EmbeddingCache
    _namespace: str
    _known_pixels: Pixels
    _known_id: str
    _work: Work
    embed_ms: float
    encoder_runs: int

    def bind(
        self, cache: EmbeddingCache, namespace: str, image: tuple[Pixels, str], work: Work
    ) -> None:
        """Point this predictor at one request: its cache, tenant, (pixels, image_id) and
        work (whose clock times the encoder without the time it stepped aside)."""
        self.reset_predictor()
        self._cache = cache
        self._namespace = namespace
        self._known_pixels, self._known_id = image
        self._work = work
        self.embed_ms = 0.0
        self.encoder_runs = 0

    def set_image(self, image: Pixels) -> None:
        pixels = np.asarray(image)
        image_id = (
            self._known_id
            if fastpath.same_array(pixels, self._known_pixels)
            else image_id_for(pixels)
        )
        entry = self._cache.get(self._namespace, image_id)
        if entry is not None:
            self.use(entry)
            return
        started = self._work.clock_ms()
        super().set_image(pixels)
        self.embed_ms += self._work.clock_ms() - started
        self.encoder_runs += 1
        self._cache.put(self._namespace, image_id, CachedImage(pixels, self._features))

    def use(self, entry: CachedImage) -> None:
        """Restore the state `set_image` would have left, from a cache entry."""
        self.reset_predictor()
        self._orig_hw = [entry.orig_hw]
        self._features = entry.features
        self._is_image_set = True


class _Generator(SAM2AutomaticMaskGenerator):  # type: ignore[misc]
    """SAM2AutomaticMaskGenerator with a hook before each crop and decoder batch (deadline,
    cancellation, clicks first), answering zero masks where sam2 1.1.0 fails: with crop
    layers and no mask surviving the thresholds, it takes the areas of an empty box tensor
    (an IndexError in torchvision's box_area)."""

    _kept: int
    fast: bool
    work: Work
    between_batches: Callable[[], None]
    observe_batch: Callable[[float, int], None]

    def generate(self, image: Pixels) -> list[dict[str, Any]]:
        self._kept = 0
        try:
            records: list[dict[str, Any]] = super().generate(image)
        except IndexError:
            if self._kept:
                raise
            return []
        return records

    def _process_crop(self, *args: Any) -> Any:
        self.between_batches()  # a crop starts with an image encoder run
        data = super()._process_crop(*args)
        self._kept += len(data["rles"])
        return data

    def _process_batch(self, points: Any, *args: Any, **kwargs: Any) -> Any:
        self.between_batches()
        started = self.work.clock_ms()  # stepping aside inside the decoder is not its time
        if self.fast and not self.use_m2m:
            data = fastpath.process_batch(self, points, *args)
        else:
            data = super()._process_batch(points, *args, **kwargs)
        self.observe_batch(self.work.clock_ms() - started, len(points))
        return data


@dataclass(frozen=True, slots=True)
class _Image:
    pixels: Pixels
    image_id: str
    entry: CachedImage | None
    decode_ms: float
    on_device: torch.Tensor | None = None  # the pixels, decoded on the model's device


FAST_POINTS_PER_BATCH = 1024
"""Automatic mode's batch in the fast pipeline when the request names none: the whole 32x32
grid through the decoder at once (the memory budget and batch slicing still lower it)."""


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
        self._template: _CachingPredictor | None = None
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
        info = ModelInfo(
            name=settings.model,
            model_id=MODEL_IDS[settings.model],
            weights=checkpoint.source,
            random_weights=checkpoint.random_weights,
            device=device.type,
            dtype=str(compute_dtype(device)).removeprefix("torch."),
        )
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
            self._template = None
            self._derived_budget = None
            self.costs = Costs()  # measured on the old device
            self._accelerate()

    def _new_decoder(self) -> ImageDecoder:
        name = pick_decoder(self._decoder_preference, self.device, self.info.pipeline)
        return ImageDecoder(name, self.device, max_pixels=self.max_pixels)

    def _accelerate(self) -> None:
        """bfloat16 weights and CUDA graphs (accel.py) for the fast pipeline on CUDA, and the
        AOTInductor encoder (aot.py) where asked, as the settings say; elsewhere the model runs
        as sam2 builds it."""
        precision, graphs, compile_mode = self._speed
        cuda = self.device.type == "cuda"
        aot = None
        if compile_mode in AOT_MODES and self.aot_store is not None:
            aot = replace(self.aot_store, autotune=AOT_MODES[compile_mode])
        if self.info.pipeline != "fast" or not (cuda or aot):
            return
        self.acceleration = accel.accelerate(
            self.model,
            bf16=cuda and precision != "float32",
            graphs=cuda and graphs != "off",
            compile_mode=None if compile_mode == "off" or aot else compile_mode,
            aot=aot,
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
        read when first asked (never while a snapshot is taken: see serving.py)."""
        if self.max_request_bytes:
            return self.max_request_bytes
        if self._derived_budget is None:
            self._derived_budget = default_budget(self.device)
        return self._derived_budget

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

        `image`, when given, is the request's image already decoded (a batch's shared upload):
        it is not decoded again. `image_file` is the image file the gateway forwarded for a
        request that names it by `image_id`: decoded here, unless its embedding is cached.
        `answer_limit` (a mask format and bytes: the gateway's bound on the answer it will
        build) refuses prompts whose masks alone would pass it, before any model work.
        """
        return self._segment(request, namespace, image, image_file, work, answer_limit)

    def _segment(
        self,
        request: SegmentRequest,
        namespace: str,
        image: DecodedImage | Decoded | None,
        image_file: bytes | None,
        work: Work | None,
        answer_limit: tuple[str, int] | None = None,
    ) -> SegmentResponse:
        started = perf_counter()
        if request.model is not None and request.model != self.info.name:
            raise ModelNotLoadedError(
                f"this server serves {self.info.name!r}, not {request.model!r}"
            )
        resolved = self._image(request, namespace, image, image_file)
        _check_bounds(request, resolved.pixels.shape[0], resolved.pixels.shape[1])
        work = work or Work()
        if request.mode == "auto":
            return self._auto(request, namespace, resolved, started, work)
        if answer_limit is not None:
            _check_answer(request, resolved.pixels.shape[0], resolved.pixels.shape[1], answer_limit)
        return self._prompt(request, namespace, resolved, started, work)

    def segment_batch(
        self, batch: BatchEnvelope, *, namespace: str = "default", work: Work | None = None
    ) -> BatchSegmentResponse:
        """Run a batch's items in order; each fails alone, as a problem in its slot. The
        shared image is decoded once; a bad shared image fails the whole batch."""
        shared = self.decoder.load(decode_base64(batch.image)) if batch.image else None
        results = []
        for index, raw in enumerate(batch.items()):
            try:
                request = parse_segment_request(raw)
                own = shared if shared and request.image == batch.image else None
                response = self._segment(request, namespace, own, None, work)
                results.append(BatchItemResult(index=index, status=200, result=response))
            except Sam2ServiceError as exc:
                problem = exc.to_problem(instance=f"#/requests/{index}")
                results.append(BatchItemResult(index=index, status=exc.status, error=problem))
        return BatchSegmentResponse(results=results, count=len(results))

    def _image(
        self,
        request: SegmentRequest,
        namespace: str,
        decoded: DecodedImage | Decoded | None,
        image_file: bytes | None,
    ) -> _Image:
        if image_file is not None:
            return self._forwarded(request, namespace, image_file)
        if isinstance(decoded, Decoded):  # a batch's shared upload
            entry = self.cache.get(namespace, decoded.image.image_id)
            return _Image(
                decoded.image.pixels, decoded.image.image_id, entry, 0.0, decoded.on_device
            )
        if decoded is not None:
            entry = self.cache.get(namespace, decoded.image_id)
            return _Image(decoded.pixels, decoded.image_id, entry, 0.0)
        if request.image_url is not None:
            raise InvalidRequestError(
                "the inference service fetches no URLs: send `image_url` to the gateway, "
                "which fetches it under its SSRF rules and forwards the file",
                code=ErrorCode.INVALID_IMAGE_URL,
            )
        if request.image_id is not None:
            entry = self.cache.get(namespace, request.image_id)
            if entry is None:
                raise ImageNotCachedError(f"no cached embedding for {request.image_id}")
            return _Image(entry.pixels, request.image_id, entry, 0.0)
        assert request.image is not None  # the model validator guarantees image or image_id
        return _decoded(self.decoder.load(decode_base64(request.image)), None)

    def _forwarded(self, request: SegmentRequest, namespace: str, image_file: bytes) -> _Image:
        """The gateway's upload: named by its file hash, decoded only when not cached."""
        image_id = image_id_for_file(image_file)
        if request.image_id not in (None, image_id):
            raise InvalidRequestError(
                "the forwarded image does not match the request's image_id",
                code=ErrorCode.INVALID_REQUEST,
            )
        entry = self.cache.get(namespace, image_id)
        if entry is not None:
            return _Image(entry.pixels, image_id, entry, 0.0)
        return _decoded(self.decoder.load(image_file), None)

    def _predictor(
        self, namespace: str, image: _Image, work: Work, *, hole_area: float = 0.0
    ) -> _CachingPredictor:
        """A predictor for one request. Building one scripts its transforms (~10 ms), so the
        common case copies a template instead; copies share the model and transforms only."""
        if hole_area:
            predictor = self._new_predictor(hole_area)
        else:
            if self._template is None:
                self._template = self._new_predictor(0.0)
            predictor = copy.copy(self._template)
        predictor.bind(self.cache, namespace, (image.pixels, image.image_id), work)
        if image.on_device is not None and isinstance(
            predictor._transforms, fastpath.DeviceTransforms
        ):  # this copy's own attribute: the template keeps its transforms
            predictor._transforms = fastpath.Uploaded(
                predictor._transforms, image.pixels, image.on_device
            )
        return predictor

    def _new_predictor(self, hole_area: float) -> _CachingPredictor:
        predictor = _CachingPredictor(
            self.model, max_hole_area=hole_area, max_sprinkle_area=hole_area
        )
        if self.info.pipeline == "fast":
            predictor._transforms = fastpath.DeviceTransforms(predictor._transforms, self.device)
        return predictor

    def _prompt(
        self, request: SegmentRequest, namespace: str, image: _Image, started: float, work: Work
    ) -> PromptSegmentResponse:
        objects = request.prompt_sets()
        mask_inputs = [self._refined(item.refine, namespace, image) for item in objects]
        prompts = len(objects)
        if prompts > self._prompts_that_fit(image):
            raise OverBudgetError(
                f"{prompts} masks on a {_size(image)} image need more memory than one request "
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
            answers = self._answers(predictor, request, objects, mask_inputs)
        model_ms = work.model_ms - before
        encode_started = perf_counter()
        per_prompt = [
            answer.prediction(
                request, self.cache.put_mask(namespace, image.image_id, answer.logits)
            )
            for answer in answers
        ]
        first = per_prompt[0]
        overlay = (
            _overlay(request, image, [decode_mask(p.mask) for p in per_prompt])
            if request.render
            else None
        )
        return PromptSegmentResponse(
            mask=first.mask,
            score=first.score,
            all_scores=first.all_scores,
            all_masks=first.all_masks,
            mask_id=first.mask_id,
            image_shape=list(image.pixels.shape[:2]),
            predictions=per_prompt if request.answers_per_object else None,
            overlay=overlay,
            **self._extensions(request, image, predictor, model_ms, encode_started, started),
        )

    def _refined(self, mask_id: str | None, namespace: str, image: _Image) -> torch.Tensor | None:
        """The logits `refine` names, kept with this image's embedding for this namespace."""
        if mask_id is None:
            return None
        logits = self.cache.get_mask(namespace, image.image_id, mask_id)
        if logits is None:
            raise MaskNotFoundError(
                f"no mask {mask_id} is kept for image {image.image_id}: it was answered on "
                "another image or for another key, or it expired with the image's embedding"
            )
        return logits

    def _answers(
        self,
        predictor: _CachingPredictor,
        request: SegmentRequest,
        objects: list[ObjectPrompt],
        mask_inputs: list[torch.Tensor | None],
    ) -> list[_Answer]:
        """One answer per object, in order. Objects with as many points, a box or not, and a
        mask to refine or not go through the decoder together (one batch per such group)."""
        groups: dict[tuple[int, bool, bool], list[int]] = {}
        for index, item in enumerate(objects):
            key = (
                len(item.point_coords or []),
                item.box_coords is not None,
                item.refine is not None,
            )
            groups.setdefault(key, []).append(index)
        answers: dict[int, _Answer] = {}
        for indices in groups.values():
            group = [objects[i] for i in indices]
            refined = [m for i in indices if (m := mask_inputs[i]) is not None]
            batch = self._decode(
                predictor, request, group, torch.stack(refined) if refined else None
            )
            answers.update(zip(indices, batch, strict=True))
        return [answers[index] for index in range(len(objects))]

    def _decode(
        self,
        predictor: _CachingPredictor,
        request: SegmentRequest,
        group: list[ObjectPrompt],
        mask_input: torch.Tensor | None,
    ) -> list[_Answer]:
        """B objects of one shape in one decoder batch (B x N points, B boxes, B x 1 x 256 x 256
        logits to refine), as `SAM2ImagePredictor.predict` takes them."""
        points = (
            np.asarray([item.point_coords for item in group], dtype=np.float32)
            if group[0].point_coords
            else None
        )
        labels = (
            np.asarray([item.labels for item in group], dtype=np.int32)
            if points is not None
            else None
        )
        box = (
            np.asarray([item.box_coords for item in group], dtype=np.float32)
            if group[0].box_coords is not None
            else None
        )
        if self.info.pipeline == "fast":
            scores, masks, logits = fastpath.predict(
                predictor,
                points,
                labels,
                box,
                mask_input,
                multimask_output=request.multimask_output,
                every_candidate=request.return_all_masks,
            )
            return _fast_answers(scores, masks, logits, request)
        masks, scores, low_res = predictor.predict(
            point_coords=points,
            point_labels=labels,
            box=box,
            mask_input=mask_input,
            multimask_output=request.multimask_output,
        )
        return _exact_answers(masks, scores, low_res, _encoder(request))

    def _auto(
        self, request: SegmentRequest, namespace: str, image: _Image, started: float, work: Work
    ) -> AutoSegmentResponse:
        fits = self._prompts_that_fit(image)
        if fits < 1:
            raise OverBudgetError(
                f"one prompt on a {_size(image)} image needs more memory than one request may "
                f"use ({self.memory_budget >> 20} MiB)",
                hint="Send a smaller image (SAM2 works at 1024x1024 internally).",
            )
        self._check_time(request, image, work)
        asked = request.points_per_batch
        if self.info.pipeline == "fast" and "points_per_batch" not in request.model_fields_set:
            asked = FAST_POINTS_PER_BATCH
        batch = min(asked, fits, self.slice_prompts or asked)
        notes = []
        if batch < asked:
            why = (
                f"the memory budget ({self.memory_budget >> 20} MiB)"
                if batch == fits
                else "SAM2_AUTO_SLICE_PROMPTS, so that a click never waits for more than one batch"
            )
            notes.append(
                f"points_per_batch lowered from {asked} to {batch} to fit {why}; the same "
                "request always runs at this size here, so it always gets the same masks"
            )
        before = work.model_ms
        with self._lock.hold(interactive=False), inference_context(self.device), work.on_model():
            work.check()
            generator = self._generator(request, batch)
            generator.work = work
            generator.fast = self.info.pipeline == "fast"
            generator.between_batches = partial(self._between_batches, work)
            generator.observe_batch = self.costs.observe_batch
            predictor = self._predictor(
                namespace, image, work, hole_area=request.min_mask_region_area
            )
            generator.predictor = predictor
            with preemptible(generator.between_batches):
                records = generator.generate(image.pixels)
        model_ms = work.model_ms - before  # without the time it stepped aside for clicks
        if predictor.encoder_runs:
            self.costs.observe_encoder(predictor.embed_ms / predictor.encoder_runs)
        if not records:
            notes.append(self._why_no_mask(request))
        encode_started = perf_counter()
        encode = None if request.mask_format == "rle" else _encoder(request)
        masks = [_auto_mask(record, encode) for record in records]
        overlay = _overlay(request, image, _largest_first(records)) if request.render else None
        return AutoSegmentResponse(
            masks=masks,
            count=len(masks),
            overlay=overlay,
            image_shape=list(image.pixels.shape[:2]),
            **self._extensions(request, image, predictor, model_ms, encode_started, started, notes),
        )

    def _why_no_mask(self, request: SegmentRequest) -> str:
        why = (
            f"no mask passed pred_iou_thresh={request.pred_iou_thresh:g} and "
            f"stability_score_thresh={request.stability_score_thresh:g}"
        )
        if self.info.random_weights:
            return f"{why}: random weights score low; set both to 0 to see their masks"
        return f"{why}; lower them to keep less certain masks"

    def _check_time(self, request: SegmentRequest, image: _Image, work: Work) -> None:
        """Refuse an automatic-mode job that would not finish before the request's deadline,
        naming the largest `points_per_side` that would."""
        left_s = work.seconds_left()
        if left_s is None:
            return

        def estimate(points_per_side: int, crop_n_layers: int) -> float | None:
            job = auto_work(
                points_per_side,
                crop_n_layers,
                request.crop_n_points_downscale_factor,
                cached=image.entry is not None,
            )
            return self.costs.estimate_ms(job)

        wanted = estimate(request.points_per_side, request.crop_n_layers)
        if wanted is None or wanted <= left_s * 1000:
            return
        fits = next(
            (
                side
                for side in range(request.points_per_side - 1, 0, -1)
                if (cost := estimate(side, request.crop_n_layers)) is not None
                and cost <= left_s * 1000
            ),
            None,
        )
        advice = (
            f"points_per_side={fits} would fit"
            if fits is not None
            else "even points_per_side=1 would not: lower crop_n_layers or send a smaller image"
        )
        raise OverBudgetError(
            f"automatic mode with points_per_side={request.points_per_side} and crop_n_layers="
            f"{request.crop_n_layers} would take about {wanted / 1000:.1f} s here, more than "
            f"the {left_s:.1f} s left before this request's deadline; {advice}",
            code=ErrorCode.OVER_TIME_BUDGET,
        )

    def let_clicks_pass(self) -> None:
        """For CPU work beside the model (a clip being decoded): wait while a click waits for
        the model or runs, so that the click is not slowed by it."""
        self._lock.let_clicks_pass()

    def _between_batches(self, work: Work) -> None:
        work.check()
        with work.aside():
            self._lock.step_aside()  # a waiting click goes first

    def _prompts_that_fit(self, image: _Image) -> int:
        height, width = image.pixels.shape[:2]
        return prompts_that_fit(self.memory_budget, height, width)

    def _generator(self, request: SegmentRequest, points_per_batch: int) -> _Generator:
        return _Generator(
            self.model,
            points_per_side=request.points_per_side,
            points_per_batch=points_per_batch,
            pred_iou_thresh=request.pred_iou_thresh,
            stability_score_thresh=request.stability_score_thresh,
            stability_score_offset=request.stability_score_offset,
            box_nms_thresh=request.box_nms_thresh,
            crop_n_layers=request.crop_n_layers,
            crop_nms_thresh=request.crop_nms_thresh,
            crop_overlap_ratio=request.crop_overlap_ratio,
            crop_n_points_downscale_factor=request.crop_n_points_downscale_factor,
            min_mask_region_area=request.min_mask_region_area,
            use_m2m=request.use_m2m,
            output_mode="uncompressed_rle",  # as sam2 keeps masks: RLE answers build none
        )

    def _extensions(
        self,
        request: SegmentRequest,
        image: _Image,
        predictor: _CachingPredictor,
        model_ms: float,
        encode_started: float,
        started: float,
        notes: list[str] | None = None,
    ) -> dict[str, Any]:
        encode_ms = _ms(encode_started)
        return {
            "mode": request.mode,
            "mask_format": request.mask_format,
            "image_id": image.image_id,
            "model": self.info,
            "cached": predictor.encoder_runs == 0,
            "timings_ms": Timings(
                decode_ms=image.decode_ms,
                embed_ms=predictor.embed_ms,
                predict_ms=model_ms - predictor.embed_ms,
                encode_ms=encode_ms,
                total_ms=_ms(started),
            ),
            "warnings": self.warnings + (notes or []),
        }


@dataclass(frozen=True, slots=True)
class _Answer:
    """One prompt's predicted IoUs and its masks, encoded on demand (after the model lock):
    every candidate's, or only the best one's."""

    scores: FloatArray
    masks: Sequence[Callable[[], Mask]]
    logits: torch.Tensor  # the best mask's, 1 x 256 x 256, kept for `refine`

    def prediction(self, request: SegmentRequest, mask_id: str | None) -> PromptPrediction:
        best = int(np.argmax(self.scores))
        pick = best if len(self.masks) > 1 else 0  # the fast path keeps only the best one's
        all_masks = [encode() for encode in self.masks] if request.return_all_masks else None
        mask = all_masks[pick] if all_masks is not None else self.masks[pick]()
        return PromptPrediction(
            mask=mask,
            score=float(self.scores[best]),
            all_scores=[float(s) for s in self.scores],
            all_masks=all_masks,
            mask_id=mask_id,
        )


def _exact_answers(
    masks: FloatArray, scores: FloatArray, low_res: FloatArray, encode: _Encode
) -> list[_Answer]:
    """sam2's own answer (C x H x W float masks for one prompt, B x C x H x W for several)."""
    if masks.ndim == 3:
        masks, scores, low_res = masks[None], scores[None], low_res[None]
    return [
        _Answer(
            s,
            [partial(encode, m > 0) for m in candidates],
            torch.from_numpy(logits[int(np.argmax(s))][None].copy()),
        )
        for candidates, s, logits in zip(masks, scores, low_res, strict=True)
    ]


def _fast_answers(
    scores: FloatArray, masks: torch.Tensor, logits: torch.Tensor, request: SegmentRequest
) -> list[_Answer]:
    """The fast path's answer: B x K x H x W boolean masks on the device. RLE is computed
    there (only change positions come back); other formats copy one byte a pixel."""
    b, k, height, width = masks.shape
    encoders: list[Callable[[], Mask]]
    if request.mask_format == "rle":
        counts = fastpath.rle_counts(masks.flatten(0, 1))
        encoders = [partial(rle_from_counts, (height, width), c) for c in counts]
    else:
        host = masks.flatten(0, 1).cpu().numpy()
        encode = _encoder(request)
        encoders = [partial(encode, m) for m in host]
    return [_Answer(scores[i], encoders[i * k : (i + 1) * k], logits[i]) for i in range(b)]


def _encoder(request: SegmentRequest) -> _Encode:
    """The request's mask format, with its options; polygons share one budget of edges."""
    return partial(
        encode_mask,
        mask_format=request.mask_format,
        tolerance=request.polygon_tolerance,
        budget=EdgeBudget(),
    )


def _auto_mask(record: dict[str, Any], encode: _Encode | None) -> AutoMask:
    """One auto mask; `encode` None: RLE, straight from sam2's run lengths."""
    runs = record["segmentation"]  # uncompressed COCO RLE: {"size": [h, w], "counts": [...]}
    return AutoMask(
        segmentation=(
            rle_from_counts(runs["size"], runs["counts"])
            if encode is None
            else encode(mask_from_counts(runs["size"], runs["counts"]))
        ),
        area=int(record["area"]),
        bbox=[float(v) for v in record["bbox"]],
        predicted_iou=float(record["predicted_iou"]),
        stability_score=float(record["stability_score"]),
        point_coords=[[float(v) for v in p] for p in record["point_coords"]],
        crop_box=[float(v) for v in record["crop_box"]],
    )


def _overlay(request: SegmentRequest, image: _Image, masks: list[BoolMask]) -> str:
    """The `render` preview: the image, the masks in order, the request's prompts."""
    assert request.render is not None
    objects = request.prompt_sets() if request.mode != "auto" else []
    return render_overlay(
        image.pixels,
        masks,
        image_format=request.render,
        points=[point for item in objects for point in item.point_coords or []],
        labels=[label for item in objects for label in item.labels or []],
        boxes=[item.box_coords for item in objects if item.box_coords is not None],
    )


def _largest_first(records: list[dict[str, Any]]) -> list[BoolMask]:
    """Automatic mode's masks, the largest first, so that the small ones stay visible."""
    ordered = sorted(records, key=lambda record: -int(record["area"]))
    return [
        mask_from_counts(r["segmentation"]["size"], r["segmentation"]["counts"]) for r in ordered
    ]


def _size(image: _Image) -> str:
    height, width = image.pixels.shape[:2]
    return f"{width}x{height}"


def _check_answer(request: SegmentRequest, height: int, width: int, limit: tuple[str, int]) -> None:
    """The masks a prompt request will answer (each prompt set's best, and with
    `return_all_masks` its candidates too), in the client's format, within the gateway's bound."""
    mask_format, most = limit
    per_set = 1 + (3 if request.multimask_output else 1) * request.return_all_masks
    masks = len(request.prompt_sets()) * per_set
    needed = masks * answer_mask_bytes(mask_format, height, width)
    if needed > most:
        raise answer_too_large(needed, most, mask_format, masks)


def _check_bounds(request: SegmentRequest, height: int, width: int) -> None:
    if request.mode == "auto":
        return
    for item in request.prompt_sets():
        box = item.box_coords
        corners = [box[:2], box[2:]] if box is not None else []
        if any(x > width or y > height for x, y in [*(item.point_coords or []), *corners]):
            raise InvalidRequestError(
                f"a point or box lies outside the {width}x{height} image",
                code=ErrorCode.COORDINATES_OUT_OF_BOUNDS,
            )


def _decoded(decoded: Decoded, entry: CachedImage | None) -> _Image:
    image = decoded.image
    return _Image(image.pixels, image.image_id, entry, decoded.ms, decoded.on_device)


def _ms(since: float) -> float:
    return (perf_counter() - since) * 1000.0
