"""Files in and out.

- :mod:`~dffcore.io.images`: the one place that reads and writes image files (BGR to RGB
  once), atomic writes, PNG text chunks;
- :mod:`~dffcore.io.stack`: focal stacks from folders, patterns or file lists, focus
  distances from a sidecar or EXIF;
- :mod:`~dffcore.io.exif`: numbers from EXIF (Pillow);
- :mod:`~dffcore.io.outputs`: the output folder of a run (``run.json`` and the maps);
- :mod:`~dffcore.io.pointcloud`: camera intrinsics and PLY point clouds.
"""
