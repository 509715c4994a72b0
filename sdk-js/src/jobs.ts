// Batch jobs (issue 30; scope `jobs`): many images, one request template, run by
// the service's workers and kept through restarts. An item is an https URL or an uploaded
// image's `image_id`; the same `idempotencyKey` answers the job it made.

import { Sam2Error } from "./core/errors.js";
import { APIResource } from "./core/resource.js";
import type { AutoSegmentation, BatchItemError, RequestOptions, Segmentation } from "./core/types.js";
import { lines } from "./internal/http.js";
import type { components } from "./internal/openapi.js";
import { autoResult, promptResult } from "./internal/results.js";

type Schemas = components["schemas"];
export type JobInfo = Schemas["JobInfo"];

export interface CreateJobOptions extends RequestOptions {
  /** The /v1/segment fields every item is answered with (API names), without an image. */
  request: Record<string, unknown>;
  /** Sent as `Idempotency-Key`: a retried create answers the job the first one made. */
  idempotencyKey?: string;
  webhookUrl?: string;
}

/** An item not finished when the results were read: queued, running or cancelled. */
export interface JobItemPending {
  state: string;
}

export type JobResult = Segmentation | AutoSegmentation | BatchItemError | JobItemPending;

export class Jobs extends APIResource {
  async create(items: (string | { image_url?: string; image_id?: string })[], options: CreateJobOptions): Promise<JobInfo> {
    const body: Record<string, unknown> = { request: options.request, items: items.map(item) };
    if (options.webhookUrl) body.webhook_url = options.webhookUrl;
    const headers = options.idempotencyKey ? { "idempotency-key": options.idempotencyKey } : undefined;
    return this.client.request<JobInfo>("POST", "/v1/jobs", body, options.signal, headers);
  }

  async get(jobId: string, options: RequestOptions = {}): Promise<JobInfo> {
    return this.client.request<JobInfo>("GET", `/v1/jobs/${encodeURIComponent(jobId)}`, undefined, options.signal);
  }

  /** This key's latest jobs, newest first. */
  async list(options: RequestOptions = {}): Promise<JobInfo[]> {
    return (await this.client.request<Schemas["JobList"]>("GET", "/v1/jobs", undefined, options.signal)).jobs;
  }

  /** Queued items never start; running ones stop. */
  async cancel(jobId: string, options: RequestOptions = {}): Promise<JobInfo> {
    return this.client.request<JobInfo>("DELETE", `/v1/jobs/${encodeURIComponent(jobId)}`, undefined, options.signal);
  }

  /** The job once it is done or cancelled, asking every `pollMs`; rejects after `timeoutMs` (the job goes on). */
  async wait(jobId: string, options: RequestOptions & { pollMs?: number; timeoutMs?: number } = {}): Promise<JobInfo> {
    const started = Date.now();
    for (;;) {
      const info = await this.get(jobId, options);
      if (info.state === "done" || info.state === "cancelled") return info;
      if (options.timeoutMs !== undefined && Date.now() - started > options.timeoutMs) {
        throw new Sam2Error(`job ${jobId} is not done after ${options.timeoutMs} ms; it goes on`);
      }
      await new Promise((resolve) => setTimeout(resolve, options.pollMs ?? 2000));
    }
  }

  /** [index, result] per item in item order, as the service streams them. */
  async *results(jobId: string, options: RequestOptions = {}): AsyncGenerator<[number, JobResult]> {
    const response = await this.client.stream(`/v1/jobs/${encodeURIComponent(jobId)}/results`, undefined, options.signal);
    for await (const line of lines(response)) {
      const entry = JSON.parse(line) as { index: number; status: number | null; result?: unknown; error?: Record<string, string>; state?: string };
      if (entry.result) {
        const answer = entry.result as Schemas["AutoSegmentResponse"] | Schemas["PromptSegmentResponse"];
        yield [entry.index, "masks" in answer ? autoResult(answer) : promptResult(answer)];
      } else if (entry.error) {
        const error = entry.error;
        yield [entry.index, { status: entry.status ?? 500, code: error.code ?? "internal_error", detail: error.detail ?? "", hint: error.hint }];
      } else {
        yield [entry.index, { state: entry.state ?? "queued" }];
      }
    }
  }
}

function item(value: string | { image_url?: string; image_id?: string }): { image_url?: string; image_id?: string } {
  if (typeof value !== "string") return value;
  if (value.startsWith("img_")) return { image_id: value };
  if (/^https?:\/\//.test(value)) return { image_url: value };
  throw new Sam2Error(`a job item is an https URL or an image_id, not ${JSON.stringify(value.slice(0, 64))}`);
}
