"""The models and their math, one subpackage per concept; never imports ``stream`` or ``launch``.

``body`` (skeleton, pose, bones, mannequin) -> ``avatar`` (textured neural avatar) and ``style``
(stylizers), all on ``core`` (layers, precision, VGG, training loop, checkpoints, metrics, weights).
"""
