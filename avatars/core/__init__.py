"""What the model families share: layers, precision, VGG-19, the training loop, the checkpoint
format, image-quality metrics and the shipped-weights registry."""
