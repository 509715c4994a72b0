"""Video: the tracker (sam2's video predictor), clips, stored frames, sessions and the service
that holds them."""
