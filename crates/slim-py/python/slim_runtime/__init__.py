"""Run an exported slimmable network at the width you can afford.

    import slim_runtime
    model = slim_runtime.Model("models/fashion-mnist-resnet20")
    width, reason = model.select(max_mmacs=10)
    print(model.classify(["shoe.png"], top_k=3, width=width))

`Model.run` takes float32 NumPy batches [N, C, H, W] (read in place when C-contiguous)
and returns (embedding, logits) arrays; graphs run with the GIL released (so do not write
an array from another thread while a call reads it). Errors raise
`SlimError` (or its subclass `NoFitError`) with a message naming the file and the problem;
bad arguments raise `ValueError`.
"""

from ._slim_runtime import Adaptive, Model, NoFitError, SlimError, __version__

__all__ = ["Adaptive", "Model", "NoFitError", "SlimError", "__version__"]
