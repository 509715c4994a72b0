// What the playground's badge says of the served weights.
import type { ModelInfo } from "@sam2/sdk";

const SOURCES: Record<ModelInfo["weights"], string> = {
  random: "random weights: masks are meaningless",
  huggingface: "Meta's weights (Hugging Face)",
  local: "local checkpoint",
};

/** The server knows where its weights came from, not whether a local file holds Meta's
 * checkpoint; random weights are said first, wherever they came from. */
export function weightsLabel(model: Pick<ModelInfo, "weights" | "random_weights">): string {
  return model.random_weights ? SOURCES.random : SOURCES[model.weights];
}
