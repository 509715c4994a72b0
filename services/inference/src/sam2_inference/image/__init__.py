"""Images: the engine (sam2's predictor and mask generator behind the embedding cache),
its inputs, prompts, automatic mode and answers."""
