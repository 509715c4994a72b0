// COCO RLE (as the service sends masks) to a row-major Uint8Array mask and to canvas pixels.

export interface RleMask {
  size: number[];
  counts: string;
}

/** Run lengths from COCO's compressed counts string (pycocotools' rleFrString). */
export function rleCounts(counts: string): number[] {
  const out: number[] = [];
  let p = 0;
  while (p < counts.length) {
    let x = 0;
    let k = 0;
    let more = true;
    while (more) {
      const c = counts.charCodeAt(p) - 48;
      x |= (c & 0x1f) << (5 * k);
      more = (c & 0x20) !== 0;
      p += 1;
      k += 1;
      if (!more && (c & 0x10) !== 0) x |= -1 << (5 * k);
    }
    if (out.length > 2) x += out[out.length - 2] ?? 0;
    out.push(x);
  }
  return out;
}

/** A mask as 1/0 bytes, row-major (index y * width + x). */
export function decodeRle(rle: RleMask): Uint8Array {
  const [height = 0, width = 0] = rle.size;
  const mask = new Uint8Array(height * width);
  let position = 0;
  let value = 0;
  for (const run of rleCounts(rle.counts)) {
    if (value === 1) {
      for (let i = position; i < position + run; i += 1) {
        // COCO counts go down columns: i = x * height + y.
        const x = Math.floor(i / height);
        const y = i - x * height;
        mask[y * width + x] = 1;
      }
    }
    position += run;
    value = 1 - value;
  }
  if (position !== height * width) throw new Error(`RLE covers ${position} pixels, size says ${height * width}`);
  return mask;
}

/** COCO compressed RLE of a row-major 1/0 mask (what pycocotools.mask.encode writes). */
export function encodeRle(mask: Uint8Array, width: number, height: number): RleMask {
  const counts: number[] = [];
  let current = 0;
  let run = 0;
  for (let x = 0; x < width; x += 1) {
    for (let y = 0; y < height; y += 1) {
      const value = mask[y * width + x] ? 1 : 0;
      if (value !== current) {
        counts.push(run);
        run = 0;
        current = value;
      }
      run += 1;
    }
  }
  counts.push(run);
  let text = "";
  counts.forEach((count, i) => {
    let x = i > 2 ? count - (counts[i - 2] ?? 0) : count;
    let more = true;
    while (more) {
      let c = x & 0x1f;
      x >>= 5;
      more = (c & 0x10) !== 0 ? x !== -1 : x !== 0;
      if (more) c |= 0x20;
      text += String.fromCharCode(c + 48);
    }
  });
  return { size: [height, width], counts: text };
}

/** RGBA pixels for a canvas: `color` where the mask is set, transparent elsewhere. */
export function maskToRgba(
  mask: Uint8Array,
  color: [number, number, number, number],
): Uint8ClampedArray<ArrayBuffer> {
  const rgba = new Uint8ClampedArray(new ArrayBuffer(mask.length * 4));
  for (let i = 0; i < mask.length; i += 1) {
    if (mask[i]) rgba.set(color, i * 4);
  }
  return rgba;
}

/** The mask as ImageData, ready for `context.putImageData` (browsers). */
export function maskToImageData(
  mask: Uint8Array,
  width: number,
  height: number,
  color: [number, number, number, number] = [30, 144, 255, 128],
): ImageData {
  return new ImageData(maskToRgba(mask, color), width, height);
}
