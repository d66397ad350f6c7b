"""The textured neural avatar (Shysheya et al.) and its direct-translation baseline: model, crop,
initialisation, data, training, evaluation."""
