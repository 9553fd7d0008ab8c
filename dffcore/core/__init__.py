"""The core every other layer builds on; it imports nothing else of dffcore.

- :mod:`~dffcore.core.data`: the objects that flow through a pipeline (FocalStack,
  Alignment, AlignedStack, FocusVolume, DepthResult);
- :mod:`~dffcore.core.components`: the five component bases, their parameter models and
  the one list of stage kinds (``KINDS``);
- :mod:`~dffcore.core.hookspec`: the plugin hook; :mod:`~dffcore.core.registry`:
  discovery through entry points and lookup by kind and name;
- :mod:`~dffcore.core.spec`: pipeline YAML to a validated :class:`PipelineSpec`;
- :mod:`~dffcore.core.errors`: the user-facing error types.
"""
