// Answers the scripted services of the unit tests give: the contract's shapes, smallest size.

/** A click's answer: a 2x2 RLE mask with its right column set. */
export const ANSWER = {
  mask: { size: [2, 2], counts: "22" },
  score: 0.9,
  all_scores: [0.9],
  image_shape: [2, 2],
  image_id: "img_" + "a".repeat(32),
  cached: false,
  timings_ms: { total_ms: 1 },
};
