"""glx: a workbook for Gradient Lexicase Selection (Ding & Spector, ICLR 2022).

One module per concept of the paper, each importable alone:

- ``glx.select``: selection operators on (candidates x cases) score matrices; opens with the
  reference operators (lexicase in about 20 lines); ``glx.select_fast`` holds their engines
- ``glx.data``: datasets as tensors on the training device, augmentation on the device;
  ``glx.imagefolder`` decodes and caches ImageFolder directories and tarballs
- ``glx.models``: the networks (``build(name, num_classes, input_shape)``)
- ``glx.population``: p children of one parent, trained in one batched pass or a loop
- ``glx.gls``: the generation loop (deal, mutate, score, select, adopt, record) and budgets in
  optimizer steps; SGD is the same loop with one child
- ``glx.records``: the per-generation record (one TypedDict)
- ``glx.checkpoint``: a run's random streams and its checkpoint files (no pickled code)
- ``glx.distributed``: one population over torchrun's processes and GPUs, with one process's result
- ``glx.analysis``: activations, CKA, PCA, activation statistics
- ``glx.report``: intervals over seeds, paired differences, Holm, equivalence tests, verdicts
- ``glx.viz``, ``glx.widgets``: plotly figures and ipywidgets panels for the notebooks
"""

__version__ = "0.1.0"
