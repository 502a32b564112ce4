"""nndl.explain: look inside a trained CNN.

Input gradients and layer outputs for every nndl model (:mod:`nndl.explain.gradients`),
and the methods built on them (:mod:`nndl.explain.methods`): saliency maps, Grad-CAM,
fooling images and class visualisation, on raw pixels with the run's preprocessing
(:mod:`nndl.explain.pixels`); pictures in :mod:`nndl.explain.plots` (matplotlib,
imported lazily).
"""

from .gradients import (
    activations,
    input_gradient,
    layer_gradient,
    layer_paths,
    model_tree,
    scores,
    spatial_layers,
)
from .methods import (
    Fooled,
    class_visualization,
    feature_maps,
    fooling_image,
    grad_cam,
    saliency_map,
)
from .pixels import gaussian_blur, pixel_gradient, to_input, to_pixels

__all__ = [
    "activations",
    "input_gradient",
    "layer_gradient",
    "layer_paths",
    "model_tree",
    "scores",
    "spatial_layers",
    "saliency_map",
    "grad_cam",
    "fooling_image",
    "Fooled",
    "class_visualization",
    "feature_maps",
    "gaussian_blur",
    "pixel_gradient",
    "to_input",
    "to_pixels",
]
