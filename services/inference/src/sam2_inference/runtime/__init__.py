"""What the model runs on: weights, the device, acceleration (bf16, CUDA graphs, AOTInductor),
the fast pipeline, process memory and Modal Volume syncing."""
