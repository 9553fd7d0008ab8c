"""Evaluation against ground truth: synthetic stacks, datasets, metrics and ``dff compare``.

- :mod:`~dffcore.eval.scenes`: the synthetic scenes' surfaces and textures;
- :mod:`~dffcore.eval.synth`: render focal stacks with exact ground truth, write them;
- :mod:`~dffcore.eval.datasets`: read datasets with ground truth (ours, HCI, DDFF-12,
  FoD500) as lazy collections of samples;
- :mod:`~dffcore.eval.metrics`: accuracy metrics (slice index, metric depth, bumpiness,
  PSNR, SSIM) and the output grid they are computed in;
- :mod:`~dffcore.eval.variants`: the pipelines a comparison runs (``--set``, ``--grid``);
- :mod:`~dffcore.eval.sources`: the stacks a comparison runs on (synthetic or a dataset);
- :mod:`~dffcore.eval.scoring`: every score of a run against a sample's ground truth;
- :mod:`~dffcore.eval.cache`: a comparison's cache of runs and ground truth;
- :mod:`~dffcore.eval.compare_report`: the report of a comparison (Markdown, HTML, CSV,
  JSON);
- :mod:`~dffcore.eval.compare`: ``compare()``, which runs every pipeline on every stack.
"""
