// What the playground's badge says of the weights the server reports.
import { describe, expect, it } from "vitest";
import { weightsLabel } from "../playground/weights.js";

describe("the playground's weights badge", () => {
  it("says what the server knows: random weights first, a local file only as a local checkpoint", () => {
    expect(weightsLabel({ weights: "random", random_weights: true })).toBe("random weights: masks are meaningless");
    expect(weightsLabel({ weights: "local", random_weights: true })).toBe("random weights: masks are meaningless");
    expect(weightsLabel({ weights: "local", random_weights: false })).toBe("local checkpoint");
    expect(weightsLabel({ weights: "huggingface", random_weights: false })).toBe("Meta's weights (Hugging Face)");
  });
});
