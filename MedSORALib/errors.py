"""Errors that reach users as one line.

Every failure a user can cause (a missing file, a volume that is not a CT, a
segmentation without known organs, an empty symptom) raises a subclass of
:class:`MedSORAError`. The command line prints ``medsora: error: <message>`` and
exits with status 2; the Slicer module shows the message in its status line.
"""
from __future__ import annotations


class MedSORAError(Exception):
    """Base class: the message is a complete sentence meant for the user."""

    exit_code = 2


class InputFileError(MedSORAError):
    """A file or folder is missing, unreadable, or not what it should be."""


class VolumeError(MedSORAError):
    """A volume exists but cannot be used as a CT (wrong dimension, constant, all NaN)."""


class SegmentationError(MedSORAError):
    """Organ masks are missing, empty, unknown or do not overlap the CT."""


class LabelSchemeError(MedSORAError):
    """An unknown label scheme was asked for."""


class ModelError(MedSORAError):
    """Model weights or configuration are missing or inconsistent."""


class SymptomError(MedSORAError):
    """A symptom text is empty or unreadable."""


class PatientError(MedSORAError):
    """A patient's age or sex (command line, manifest or DICOM header) cannot be read."""
