"""The run engine: :func:`~dffcore.run.engine.run_pipeline` aligns a stack and runs the
stages on the whole image, on strips in parallel or on bands within a memory budget
(:mod:`dffcore.run.plan`); :mod:`dffcore.run.frames` holds the aligned frames,
:mod:`dffcore.run.records` measures every stage."""
