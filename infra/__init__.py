"""Modal deployment of the SAM2 service: the GPU inference class, the CPU gateway, keep-warm."""
