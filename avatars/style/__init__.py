"""Stylizers: StyleNet, TextureNet, Gatys optimisation, perceptual losses, training, fast inference, flicker."""
