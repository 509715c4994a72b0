import { readFileSync } from "node:fs";
import { describe, expect, it } from "vitest";
import { decodeRle, encodeRle, maskToRgba } from "../src/core/masks.js";

const vectors: { rle: { size: number[]; counts: string }; mask: string }[] = JSON.parse(
  readFileSync(new URL("./rle-vectors.json", import.meta.url), "utf8"),
);

describe("decodeRle", () => {
  it("matches the Python codec on the shared vectors", () => {
    expect(vectors.length).toBeGreaterThan(3);
    for (const { rle, mask } of vectors) {
      expect(Array.from(decodeRle(rle)).join("")).toBe(mask);
    }
  });

  it("encodes back to the Python codec's counts", () => {
    for (const { rle, mask } of vectors) {
      const [height = 0, width = 0] = rle.size;
      const bits = Uint8Array.from(mask, (c) => Number(c));
      expect(encodeRle(bits, width, height)).toEqual(rle);
    }
  });

  it("refuses counts that do not cover the mask", () => {
    expect(() => decodeRle({ size: [5, 5], counts: "0" })).toThrow(/covers/);
  });

  it("paints set pixels for a canvas", () => {
    const rgba = maskToRgba(new Uint8Array([0, 1]), [1, 2, 3, 4]);
    expect(Array.from(rgba)).toEqual([0, 0, 0, 0, 1, 2, 3, 4]);
  });
});
