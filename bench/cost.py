"""What the Modal deployment costs, computed from measured figures: the tables of
docs/deploy.md's "Cost" section (a test fails when that section differs from this output).

    .venv/bin/python bench/cost.py            # print the section
    .venv/bin/python bench/cost.py --write    # and put it into docs/deploy.md

Measured: a click's GPU time on an NVIDIA H200, read from bench/README.md's row for the engine's
default on CUDA (the fast pipeline, bfloat16 weights, CUDA graphs). Prices: Modal's published
per-second rates at the time of writing (check modal.com/pricing). Assumed, and said so in the
output: the usage pattern, a cold start's length (not measured: no Modal account here) and what
a GPU container holds in CPU memory. The defaults are infra/settings.py's.
"""

from __future__ import annotations

import argparse
import re
import sys
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from infra.keepwarm import warm_hours_per_week  # noqa: E402 (after the path is set)
from infra.settings import JOB_WORKER_CPU, JOB_WORKER_MEMORY_MIB, DeploySettings  # noqa: E402

BENCH = ROOT / "bench" / "README.md"
DEPLOY = ROOT / "docs" / "deploy.md"
BEGIN, END = "<!-- cost tables: bench/cost.py -->", "<!-- end of bench/cost.py -->"
DEFAULT_ROW = "fast: bfloat16 weights, CUDA graphs (the default on CUDA)"

GPU_PER_HOUR = {"H200": 4.54, "H100": 3.95, "A100 80 GB": 2.50, "L4": 0.80}
CPU_CORE_PER_HOUR = 0.0472  # $0.0000131 per physical core per second
MEMORY_GIB_PER_HOUR = 0.0080  # $0.00000222 per GiB per second


@dataclass(frozen=True)
class Pattern:
    """The assumed use: sessions of clicks on one image each, with quiet time between them."""

    clicks_per_session: int = 10
    session_s: float = 60.0  # a person clicking every few seconds
    gap_s: float = 1800.0  # between one session's last click and the next session's first
    cold_start_s: float = 60.0  # restore, move to the GPU, warm-up: NOT measured on Modal
    container_cores: float = 2.0  # what a GPU container is billed for beside its GPU
    container_gib: float = 16.0  # the embedding cache (SAM2_DEPLOY_CACHE_MAX_BYTES) and model


@dataclass(frozen=True)
class Measured:
    new_image_click_ms: float
    cached_click_ms: float
    auto_ms: float = 0.0
    """Automatic mode, 32x32 grid, the server's default batch (measured before the batch-slicing
    fix of bench/README.md: an upper figure)."""


def measured_h200() -> Measured:
    """The H200 row of the engine's default from bench/README.md."""
    for line in BENCH.read_text().splitlines():
        cells = [c.strip().strip("*") for c in line.strip("|").split("|")]
        if cells and cells[0] == DEFAULT_ROW:
            return Measured(
                new_image_click_ms=float(cells[2]),
                cached_click_ms=float(cells[3]),
                auto_ms=float(cells[4]),
            )
    raise SystemExit(f"bench/README.md has no row {DEFAULT_ROW!r}")


def per_second(gpu: str, pattern: Pattern) -> float:
    """A running GPU container's price per second: its GPU, its cores and its memory."""
    hourly = GPU_PER_HOUR[gpu] + pattern.container_cores * CPU_CORE_PER_HOUR
    return (hourly + pattern.container_gib * MEMORY_GIB_PER_HOUR) / 3600


def click_seconds(measured: Measured, pattern: Pattern) -> float:
    """GPU seconds of one session's clicks: its image's first click, then cached ones."""
    first = measured.new_image_click_ms
    rest = (pattern.clicks_per_session - 1) * measured.cached_click_ms
    return (first + rest) / 1000


def full_use(measured: Measured, gpu: str, pattern: Pattern) -> tuple[float, float]:
    """$ per 1,000 clicks with the container always busy: every click a new image, or
    sessions' worth of cached ones."""
    rate = per_second(gpu, pattern)
    no_cache = 1000 * measured.new_image_click_ms / 1000 * rate
    sessions = 1000 / pattern.clicks_per_session
    return no_cache, sessions * click_seconds(measured, pattern) * rate


def bursty(
    measured: Measured, gpu: str, pattern: Pattern, *, scaledown_s: float, buffer: int = 0
) -> tuple[float, float]:
    """$ per 1,000 clicks, and cold starts a user waits through per 1,000 clicks, when each
    session starts from zero containers (min_containers=0) unless the last one is still up."""
    sessions = 1000 / pattern.clicks_per_session
    up = pattern.session_s + click_seconds(measured, pattern)
    if pattern.gap_s > scaledown_s:  # scaled down in between: a cold start and a full tail
        seconds, cold = pattern.cold_start_s + up + scaledown_s, sessions
    else:  # still up when the next session comes: the container never stops
        seconds, cold = up + pattern.gap_s, 0.0
    containers = 1 + buffer  # a buffer container idles beside the busy one
    return sessions * seconds * containers * per_second(gpu, pattern), cold


def keep_warm_week(gpu: str, settings: DeploySettings, pattern: Pattern) -> float:
    hours = warm_hours_per_week(settings)
    return settings.warm_containers * hours * per_second(gpu, pattern) * 3600


def batch_job(
    ms_per_image: float, images: int, settings: DeploySettings, pattern: Pattern
) -> tuple[float, float, float]:
    """A batch job's (GPU $, job-worker $, wall hours) on H200s: the job's items keep
    `max_containers` GPU containers busy (the workers send more items at once than
    `target_concurrency` x `max_containers`), each billed for its share of the GPU time, one
    cold start and one idle tail; the job workers (CPU) are billed for the whole wall time."""
    busy_s = images * ms_per_image / 1000
    containers = settings.max_containers
    per_container = pattern.cold_start_s + settings.scaledown_window_s
    gpu = (busy_s + containers * per_container) * per_second("H200", pattern)
    wall_s = pattern.cold_start_s + busy_s / containers
    worker_hourly = JOB_WORKER_CPU * CPU_CORE_PER_HOUR + JOB_WORKER_MEMORY_MIB / 1024 * (
        MEMORY_GIB_PER_HOUR
    )
    workers = settings.job_worker_containers * (wall_s + settings.job_worker_idle_s)
    return gpu, workers * worker_hourly / 3600, wall_s / 3600


def jobs_table(measured: Measured, settings: DeploySettings, pattern: Pattern) -> list[str]:
    images = 10_000
    in_flight = settings.job_items_per_container * settings.job_worker_containers
    lines = [
        "",
        f"A batch job of {images:,} images on H200s (`POST /v1/jobs`): the job workers send "
        f"{in_flight} items at once ({settings.job_worker_containers} containers x "
        f"{settings.job_items_per_container}), which keeps `max_containers` "
        f"({settings.max_containers}) GPU containers busy; each is billed for its share of the "
        f"GPU time, one cold start ({pattern.cold_start_s:g} s, not measured) and one idle tail "
        f"({settings.scaledown_window_s} s); the job workers ({JOB_WORKER_CPU:g} core, "
        f"{JOB_WORKER_MEMORY_MIB} MiB each) for the whole run. Automatic mode's time is the "
        "H200's 32x32 figure measured before the batch-slicing fix (bench/README.md), so its row "
        "is an upper figure; other GPUs: not measured.",
        "",
        f"| each image | GPU ms per image (measured) | GPU $ | job-worker $ | $ for {images:,} "
        "images | $ per 1,000 images | wall time |",
        "|---|---:|---:|---:|---:|---:|---:|",
    ]
    for name, ms in (
        ("one click, new image", measured.new_image_click_ms),
        ("automatic mode, 32x32 grid", measured.auto_ms),
    ):
        gpu, workers, hours = batch_job(ms, images, settings, pattern)
        total = gpu + workers
        lines.append(
            f"| {name} | {ms:g} | {gpu:.2f} | {workers:.3f} | {total:.2f} | "
            f"{total / images * 1000:.3f} | {hours * 60:.0f} min |"
        )
    return lines


def tables(settings: DeploySettings | None = None, pattern: Pattern | None = None) -> str:
    settings = settings or DeploySettings()
    pattern = pattern or Pattern()
    measured = measured_h200()
    tail = settings.scaledown_window_s
    lines = [
        BEGIN,
        "",
        "Computed by `bench/cost.py` from the H200 click times `bench/gpu.sh` measured (bench/"
        f"README.md, the engine's default on CUDA: new image + click {measured.new_image_click_ms}"
        f" ms, cached click {measured.cached_click_ms} ms) and Modal's per-second prices at the "
        "time of writing (GPU, plus the container's "
        f"{pattern.container_cores:g} cores at ${CPU_CORE_PER_HOUR}/core-hour and "
        f"{pattern.container_gib:g} GiB at ${MEMORY_GIB_PER_HOUR}/GiB-hour; check "
        "modal.com/pricing). Only the H200 was measured.",
        "",
        f"Assumed use: sessions of {pattern.clicks_per_session} clicks on one image over "
        f"{pattern.session_s:g} s, one session every {pattern.gap_s / 60:g} minutes, "
        f"`min_containers` 0 outside the keep-warm window; a cold start of "
        f"{pattern.cold_start_s:g} s (**not measured**: no Modal account here) is billed too.",
        "",
        "| GPU | $/hour (GPU) | $ per 1,000 clicks, busy, no cache | $ per 1,000 clicks, busy, "
        f"{pattern.clicks_per_session} per image | $ per 1,000 clicks in sessions "
        f"(scaledown {tail} s) | of which idle and starts | keep-warm $ per week |",
        "|---|---:|---:|---:|---:|---:|---:|",
    ]
    for gpu, hourly in GPU_PER_HOUR.items():
        week = f"{keep_warm_week(gpu, settings, pattern):.2f}"
        if gpu != "H200":
            idle = bursty(Measured(0.0, 0.0), gpu, pattern, scaledown_s=tail)[0]
            cells = ["not measured"] * 3 + [f"{idle:.2f} (clicks not measured)"]
            lines.append(f"| {gpu} | {hourly:.2f} | {' | '.join(cells)} | {week} |")
            continue
        no_cache, cached = full_use(measured, gpu, pattern)
        sessions, _ = bursty(measured, gpu, pattern, scaledown_s=tail)
        idle = sessions - cached
        lines.append(
            f"| {gpu} | {hourly:.2f} | {no_cache:.3f} | {cached:.3f} | {sessions:.2f} | "
            f"{idle:.2f} | {week} |"
        )
    lines += [
        "",
        f"Keep-warm: `SAM2_DEPLOY_WARM_CONTAINERS` ({settings.warm_containers}) x the window's "
        f"hours a week ({warm_hours_per_week(settings)} h; `infra.keepwarm.warm_hours_per_week`)"
        " x the container's price, billed whether or not anyone clicks.",
        "",
        "What the autoscaler's settings trade, on the H200 with the same use (per 1,000 clicks; "
        "`min_containers` 1 is the keep-warm window's case):",
        "",
        "| setting | $ per 1,000 clicks | cold starts a user waits through per 1,000 clicks |",
        "|---|---:|---:|",
    ]
    for scaledown in (60, tail, 3600):
        cost, cold = bursty(measured, "H200", pattern, scaledown_s=scaledown)
        lines.append(f"| `scaledown_window` {scaledown} s | {cost:.2f} | {cold:.0f} |")
    cost, cold = bursty(measured, "H200", pattern, scaledown_s=tail, buffer=1)
    lines.append(f"| `buffer_containers` 1 (scaledown {tail} s) | {cost:.2f} | {cold:.0f} |")
    always = (
        1000
        / pattern.clicks_per_session
        * (pattern.session_s + pattern.gap_s)
        * per_second("H200", pattern)
    )
    lines += [
        f"| `min_containers` 1 (all day) | {always:.2f} | 0 |",
        "",
        "A shorter `scaledown_window` bills less idle time but makes more sessions start cold "
        "(each waits the start); one longer than the gap between sessions keeps the container up "
        "and bills the whole gap. `buffer_containers` keeps an extra container idle beside every "
        "busy one: it absorbs a burst of users arriving together without a cold start, and costs "
        "its whole uptime again in this one-user pattern. `min_containers` (what keep-warm sets "
        "inside its window) removes cold starts for its hours at a fixed price per hour.",
        *jobs_table(measured, settings, pattern),
        "",
        END,
    ]
    return "\n".join(lines) + "\n"


def section(document: str) -> str:
    """docs/deploy.md's generated part, markers included."""
    match = re.search(re.escape(BEGIN) + ".*?" + re.escape(END) + "\n", document, re.S)
    if match is None:
        raise SystemExit(f"docs/deploy.md has no {BEGIN} ... {END} section")
    return match.group(0)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--write", action="store_true", help="put the tables into docs/deploy.md")
    args = parser.parse_args()
    generated = tables()
    print(generated, end="")
    if args.write:
        document = DEPLOY.read_text()
        DEPLOY.write_text(document.replace(section(document), generated))


if __name__ == "__main__":
    main()
