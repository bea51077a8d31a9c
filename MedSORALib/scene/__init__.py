"""The Slicer scene side of MedSORA, in plain MRML (no ``slicer.app``, no dialogs).

- :mod:`.nodes`: what both directions share: the scene lookup, IJK-to-RAS
  matrices, segmentation converter rules, segment tags and terminology.
- :mod:`.inputs`: scene in, nodes -> arrays (a CT node as a
  :class:`~MedSORALib.volume_io.Volume`, organ segments as boolean masks).
- :mod:`.result_nodes`: scene out, arrays and results -> nodes (segmentation
  coloured by relevance, table, chart, passages, subject hierarchy folder);
  the files of a result are :mod:`MedSORALib.result_files`'.
- :mod:`.render`: offscreen pictures of Slicer's 3D and slice views.

These modules import ``slicer`` and ``vtk``, and run the same inside 3D Slicer
and with PyPI ``slicer-core``. The scoring session and the worker client, which
the panel drives, live in :mod:`MedSORALib.session` and :mod:`MedSORALib.worker`
and import no Slicer.
"""
