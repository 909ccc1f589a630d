"""Run an exported slimmable network at the width (and precision) you can afford.

    import slim_runtime
    model = slim_runtime.Model("models/fashion-mnist-resnet20")
    width, reason = model.select(max_mmacs=10)
    print(model.classify(["shoe.png"], top_k=3, width=width))

`Model.run` takes float32 NumPy batches [N, C, H, W] (read in place when C-contiguous)
and returns (embedding, logits) arrays; graphs run with the GIL released (so do not write
an array from another thread while a call reads it). A model exported with
`slim-export --precision f32,f16,int8` holds each width in those precisions too:
`Model.variants` lists every (width, precision), `run` and `classify` take `precision=`,
and `select(precisions=[...])` chooses among them (a `Selection` with `.precision`).
Errors raise `SlimError` (or its subclass `NoFitError`) with a message naming the file and
the problem; bad arguments (an unknown precision among them) raise `ValueError`.
"""

from ._slim_runtime import Adaptive, Model, NoFitError, Selection, SlimError, __version__

__all__ = ["Adaptive", "Model", "NoFitError", "Selection", "SlimError", "__version__"]
