"""ndwconv's benchmarks, run from a checkout's root as ``python -m benchmarks.NAME``.

* ``per_call``: fixed cost per call of the weighted layers on small shapes, against
  ``nn.ConvNd`` and a reference-style layer that multiplies W by Φ on every call.
* ``layer_overhead``: weighted/plain ratio of single layers on realistic shapes (N ≤ 3),
  and ``WeightedConvNd(4, …)`` against its constituent 3-D convolutions.
* ``train_throughput``: training and inference throughput of whole networks (DnCNN,
  NAFNet), weighted against standard.
* ``tiling``: sliding-window inference against MONAI's (MONAI installed separately).

Each takes ``--quick`` (a smoke test, seconds), ``--out FILE`` and ``--threads N``, prints
its tables and writes its result as JSON (machine, versions, threads, date, settings,
numbers) to ``benchmarks/results/NAME.json`` unless ``--out`` says otherwise. The package
is not installed with ndwconv.
"""
