// Drawing on the overlay canvas: masks (tinted, outlined), prompt markers that stay visible on
// any picture (a white ring and a dark edge), and boxes, on a stage shaped like the picture;
// shared by the image and video views.
import type { CSSProperties } from "react";
import { COLOURS } from "./colours.js";

export type Point = { x: number; y: number; label: 0 | 1 };
export type Box = [number, number, number, number];

export const FOREGROUND = "#00c853";
export const BACKGROUND = "#ff1744";
export const BOX = "#ffd600";
export const CURSOR = "#d500f9";

/** Each mask in its colour (`colour` indexes COLOURS), its edge opaque, its inside see-through. */
export function paintMasks(context: CanvasRenderingContext2D, width: number, height: number, layers: { mask: Uint8Array; colour: number }[]): void {
  const rgba = new Uint8ClampedArray(width * height * 4);
  for (const { mask, colour } of layers) {
    const [r, g, b] = COLOURS[colour % COLOURS.length]!;
    for (let p = 0; p < mask.length; p += 1) {
      if (!mask[p]) continue;
      const x = p % width;
      const edge = x === 0 || x === width - 1 || !mask[p - 1] || !mask[p + 1] || !mask[p - width] || !mask[p + width];
      rgba.set([r, g, b, edge ? 255 : 110], p * 4);
    }
  }
  context.putImageData(new ImageData(rgba, width, height), 0, 0);
}

/** A marker's radius in image pixels: about 8 screen pixels whatever the image's scale. */
export function markerRadius(canvas: HTMLCanvasElement): number {
  const shown = canvas.getBoundingClientRect().width || canvas.width;
  return Math.max(3, (8 * canvas.width) / shown);
}

/** A foreground (+) or background (−) point, ringed so that it shows on any colour. */
export function paintPoint(context: CanvasRenderingContext2D, point: Point, radius: number): void {
  context.save();
  context.lineWidth = radius / 3;
  context.beginPath();
  context.arc(point.x, point.y, radius, 0, 2 * Math.PI);
  context.fillStyle = point.label ? FOREGROUND : BACKGROUND;
  context.fill();
  context.strokeStyle = "#ffffff";
  context.stroke();
  context.beginPath();
  context.arc(point.x, point.y, radius + context.lineWidth, 0, 2 * Math.PI);
  context.lineWidth = radius / 5;
  context.strokeStyle = "#111111";
  context.stroke();
  context.beginPath();
  context.moveTo(point.x - radius / 2, point.y);
  context.lineTo(point.x + radius / 2, point.y);
  if (point.label) {
    context.moveTo(point.x, point.y - radius / 2);
    context.lineTo(point.x, point.y + radius / 2);
  }
  context.lineWidth = radius / 4;
  context.strokeStyle = "#ffffff";
  context.stroke();
  context.restore();
}

/** The keyboard cursor: a ringed crosshair, distinct from the point markers. */
export function paintCursor(context: CanvasRenderingContext2D, at: { x: number; y: number }, radius: number): void {
  context.save();
  for (const [colour, width] of [["#111111", radius * 0.7], [CURSOR, radius * 0.4]] as const) {
    context.beginPath();
    context.moveTo(at.x - 2.5 * radius, at.y);
    context.lineTo(at.x + 2.5 * radius, at.y);
    context.moveTo(at.x, at.y - 2.5 * radius);
    context.lineTo(at.x, at.y + 2.5 * radius);
    context.moveTo(at.x + radius * 1.5, at.y);
    context.arc(at.x, at.y, radius * 1.5, 0, 2 * Math.PI);
    context.lineWidth = width;
    context.strokeStyle = colour;
    context.stroke();
  }
  context.restore();
}

/** A box, solid once asked for, dashed while it is being dragged. Even line widths centred on
 * whole pixels cover whole pixels, so the yellow stays yellow. */
export function paintBox(context: CanvasRenderingContext2D, box: Box, radius: number, dragging: boolean): void {
  const line = 2 * Math.ceil(radius / 4);
  context.save();
  context.lineWidth = line + 2;
  context.strokeStyle = "#111111";
  context.strokeRect(box[0], box[1], box[2] - box[0], box[3] - box[1]);
  context.strokeStyle = BOX;
  if (dragging) context.setLineDash([radius * 1.5, radius]);
  context.lineWidth = line;
  context.strokeRect(box[0], box[1], box[2] - box[0], box[3] - box[1]);
  context.restore();
}

/** The stage's size: the picture's shape, as wide as the column allows and at most 75% of the
 * window's height, so that small pictures are scaled up and large ones down. */
export function fit(width: number, height: number): CSSProperties {
  return { aspectRatio: `${width} / ${height}`, width: `min(100%, calc(75vh * ${width / height}))` };
}
