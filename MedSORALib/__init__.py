"""MedSORA: symptom-to-organ reasoning in abdominal CT.

The library holds everything that does not need the 3D Slicer application:
the organ catalog (:mod:`MedSORALib.organs`), volume and segmentation I/O
(:mod:`MedSORALib.volume_io`, :mod:`MedSORALib.segmentation_io`), the symptom
knowledge base (:mod:`MedSORALib.knowledge`), text reasoning
(:mod:`MedSORALib.text`), the image encoder (:mod:`MedSORALib.image`) and the
scoring entry :func:`MedSORALib.scoring.score_volume`.
"""
__version__ = "0.1.0"
