// "Segment everything": SAM2's automatic mask generator with the knobs that matter most, and
// defaults that fit the server (an 8x8 grid on a CPU, where 32x32 takes minutes).
import type { ModelInfo } from "@sam2/sdk";

export interface AutoKnobs {
  points_per_side: number;
  pred_iou_thresh: number;
  stability_score_thresh: number;
  crop_n_layers: number;
}

/** The API's defaults, but a coarse grid where the model runs on a CPU. */
export function defaultKnobs(model: ModelInfo | undefined): AutoKnobs {
  return { points_per_side: model?.device === "cpu" ? 8 : 32, pred_iou_thresh: 0.8, stability_score_thresh: 0.95, crop_n_layers: 0 };
}

const FIELDS: { key: keyof AutoKnobs; label: string; min: number; max: number; step: number; help: string }[] = [
  { key: "points_per_side", label: "Grid (points per side)", min: 1, max: 64, step: 1, help: "n×n prompts over the image: time grows with n²." },
  { key: "pred_iou_thresh", label: "Predicted IoU at least", min: 0, max: 1, step: 0.05, help: "How sure the model must be of a mask." },
  { key: "stability_score_thresh", label: "Stability at least", min: 0, max: 1, step: 0.05, help: "How little a mask may change with its threshold." },
  { key: "crop_n_layers", label: "Crop layers", min: 0, max: 2, step: 1, help: "Also run on 4, then 16 crops: finds small objects, costs more." },
];

export function AutoPanel(props: { knobs: AutoKnobs; onChange: (knobs: AutoKnobs) => void; onRun: () => void; disabled: boolean }) {
  const { knobs, onChange, onRun, disabled } = props;
  return (
    <fieldset className="auto">
      <legend>Segment everything</legend>
      {FIELDS.map((field) => (
        <label key={field.key} className="knob" title={field.help}>
          <span>{field.label}</span>
          <input
            type="number"
            inputMode="decimal"
            min={field.min}
            max={field.max}
            step={field.step}
            value={knobs[field.key]}
            onChange={(e) => {
              const value = Number(e.target.value);
              if (e.target.value !== "" && Number.isFinite(value)) onChange({ ...knobs, [field.key]: Math.min(field.max, Math.max(field.min, value)) });
            }}
          />
        </label>
      ))}
      <button className="primary" onClick={onRun} disabled={disabled}>
        Segment everything <kbd>A</kbd>
      </button>
    </fieldset>
  );
}
