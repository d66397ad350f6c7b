"""Synthetic articulated, textured human with exact ground truth (see ``render`` for the API)."""
from avatars.body.mannequin.body import JOINTS, BodyPose, pose_body
from avatars.body.mannequin.camera import Camera
from avatars.body.mannequin.motions import MOTIONS, make_motion, random_pose
from avatars.body.mannequin.render import Mannequin, MannequinConfig, MannequinFrame, MannequinSequence
from avatars.body.mannequin.textures import sample_texture

__all__ = [
    "JOINTS", "BodyPose", "pose_body", "Camera", "MOTIONS", "make_motion", "random_pose",
    "Mannequin", "MannequinConfig", "MannequinFrame", "MannequinSequence", "sample_texture",
]
