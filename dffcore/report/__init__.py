"""Writing reports: documents, tables and figures, independent of what they report.

- :mod:`~dffcore.report.tables`: document blocks (headings, paragraphs, lists, tables,
  images) rendered as Markdown or HTML, and tables as CSV;
- :mod:`~dffcore.report.figures`: matplotlib figures of depth, error and all-in-focus
  panels (matplotlib is imported only when drawing).
"""
