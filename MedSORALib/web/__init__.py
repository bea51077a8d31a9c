"""MedSORA in a web browser (``medsora serve``), on Kitware's trame-slicer.

:mod:`.session` holds the CT, its organ masks, the models and the scored
results without any web or VTK code; :mod:`.app` is the trame application that
shows them in Slicer's slice and 3D views, rendered offscreen, and streams the
views to the page. Install with ``pip install "medsora[web]"``.
"""
