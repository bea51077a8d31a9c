"""The differential diagnosis between a presentation and the 13 structures.

A cited disease catalogue (:mod:`.catalogue`) holds, for each diagnosis, the structures it lives in
(or the structure outside the 13 it belongs to), its typical findings with how typical (``freq``) and
how specific (``lr``) each is, the findings that argue against it, the CT signs to look for and a source.
A finding lexicon names every finding a row may use, with the text patterns a reader matches. The data
live in ``MedSORALib/resources/differential/`` (format: ``docs/differential_schema.md``).
"""
