"""The body: the keypoint skeleton, MediaPipe pose with filters, the bone rasterizer, the synthetic mannequin."""
