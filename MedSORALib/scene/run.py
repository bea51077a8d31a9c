"""Score the scene's CT and organs in this process and add the result nodes (the panel's in-process path).

Scripts and tests call :func:`run_symptom_scoring`; the panel itself scores in the worker process
(:mod:`MedSORALib.worker`) and imports the files it writes (:func:`~MedSORALib.scene.result_nodes.add_outputs_from_files`).
"""
from __future__ import annotations

from typing import Sequence

from ..scoring import Scorer, score_inputs
from ..session import ScoringSession, ScoringSettings
from .inputs import prepare_inputs
from .result_nodes import SymptomOutputs, add_symptom_outputs


def run_symptom_scoring(volume_node, segmentation_node, symptoms: Sequence[str] | str, *,
                        settings: ScoringSettings | None = None, scorer: Scorer | None = None,
                        threshold: float = 0.0, opacity_by_relevance: bool = True,
                        show_3d: bool = False, patient=None) -> list[SymptomOutputs]:
    """Score symptoms for a CT and its organs in this process and write the outputs into the scene (blocking).

    This is what ``MedSORALogic.process`` does for scripts. ``scorer`` replaces
    a scoring session (:class:`~MedSORALib.session.ScoringSession` built from
    ``settings``), e.g. with known numbers in tests; it then loads no model. ``patient`` (age and sex,
    :class:`~MedSORALib.patient.Patient`) chooses the findings' reference ranges of the scoring session; a
    ``scorer`` given here is called as it is.
    """
    inputs = prepare_inputs(volume_node, segmentation_node, symptoms)
    if scorer is None:
        session = ScoringSession(settings or ScoringSettings())

        def scorer(volume, masks, texts, progress=None):
            return session.score(session.case(volume, masks, patient=patient, progress=progress), texts,
                                 progress=progress)
    results = score_inputs(inputs, scorer)
    return [add_symptom_outputs(result, inputs.masks, volume_node, threshold=threshold,
                                opacity_by_relevance=opacity_by_relevance, show_3d=show_3d)
            for result in results]
