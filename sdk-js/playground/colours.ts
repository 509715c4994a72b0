// The colours the playground draws masks in, one per mask or tracked object.
export const COLOURS: [number, number, number][] = [
  [30, 144, 255], [255, 99, 71], [50, 205, 50], [255, 215, 0], [186, 85, 211], [0, 206, 209], [255, 140, 0], [199, 21, 133],
];
