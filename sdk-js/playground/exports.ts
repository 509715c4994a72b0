// What the page saves: a mask as a PNG, masks as COCO JSON (one annotation per object, with
// bbox, area and RLE), and any blob under a name.
import { encodeRle } from "@sam2/sdk";

/** The tightest [x, y, width, height] around a mask's pixels (COCO's bbox); zeros when empty. */
export function bboxOf(mask: Uint8Array, width: number): [number, number, number, number] {
  let [x0, y0, x1, y1] = [Infinity, Infinity, -1, -1];
  for (let p = 0; p < mask.length; p += 1) {
    if (!mask[p]) continue;
    const x = p % width;
    const y = (p - x) / width;
    x0 = Math.min(x0, x);
    x1 = Math.max(x1, x);
    y0 = Math.min(y0, y);
    y1 = Math.max(y1, y);
  }
  return x1 < 0 ? [0, 0, 0, 0] : [x0, y0, x1 - x0 + 1, y1 - y0 + 1];
}

/** One COCO annotation: the object's mask as RLE with its bbox and area. */
export function annotation(mask: Uint8Array, width: number, height: number, extra: Record<string, number>) {
  return {
    category_id: 1,
    segmentation: encodeRle(mask, width, height),
    area: mask.reduce((sum, v) => sum + v, 0),
    bbox: bboxOf(mask, width),
    iscrowd: 0,
    ...extra,
  };
}

/** A COCO document for one image: each object once. */
export function cocoImage(name: string, width: number, height: number, objects: { mask: Uint8Array; score: number }[]): Blob {
  const annotations = objects.map((o, i) => annotation(o.mask, width, height, { id: i + 1, image_id: 1, score: o.score }));
  const coco = { images: [{ id: 1, width, height, file_name: name }], annotations, categories: [{ id: 1, name: "object" }] };
  return new Blob([JSON.stringify(coco)], { type: "application/json" });
}

/** The mask as a black-and-white PNG the size of the image. */
export function maskPng(mask: Uint8Array, width: number, height: number): Promise<Blob> {
  const canvas = document.createElement("canvas");
  canvas.width = width;
  canvas.height = height;
  const rgba = new Uint8ClampedArray(mask.length * 4);
  mask.forEach((v, i) => rgba.set(v ? [255, 255, 255, 255] : [0, 0, 0, 255], i * 4));
  canvas.getContext("2d")!.putImageData(new ImageData(rgba, width, height), 0, 0);
  return new Promise((resolve, reject) => canvas.toBlob((blob) => (blob ? resolve(blob) : reject(new Error("the browser could not write the PNG"))), "image/png"));
}

export function save(blob: Blob, name: string): void {
  const link = document.createElement("a");
  link.href = URL.createObjectURL(blob);
  link.download = name;
  link.click();
  setTimeout(() => URL.revokeObjectURL(link.href), 10_000);
}
