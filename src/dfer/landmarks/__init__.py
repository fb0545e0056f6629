"""Landmark-aware features: landmark nets (MobileFaceNet and Table III's alternatives), their training on
ground-truth landmarks (`dfer train-landmarks`, ION), and the per-frame feature cache (`dfer extract-features`).
"""
from dfer.landmarks.extractor import LandmarkFeatures
from dfer.landmarks.registry import (LandmarkNetConfig, build_landmark_net, count_params, landmark_net_config,
                                     list_landmark_nets, load_landmark_weights, read_state_dict)

__all__ = ["LandmarkFeatures", "LandmarkNetConfig", "build_landmark_net", "count_params", "landmark_net_config",
           "list_landmark_nets", "load_landmark_weights", "read_state_dict"]
