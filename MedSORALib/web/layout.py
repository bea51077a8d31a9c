"""The ``medsora serve`` page's layout (trame, Vuetify 3): the inputs, the slice views, the organ table,
the differential and the passages. The app (:mod:`MedSORALib.web.app`) holds the state and the handlers.
"""
from __future__ import annotations

from trame.ui.vuetify3 import SinglePageWithDrawerLayout
from trame.widgets import html
from trame.widgets import vuetify3 as v3

from ..colors import PLASMA_STOPS
from . import differential_view
from .session import css_color

#: Label schemes of a label-map segmentation (a .seg.nrrd is matched by segment names instead).
LABEL_SCHEMES = ["totalsegmentator", "btcv", "amos"]
#: The sex choices of the page (value as :func:`MedSORALib.patient.parse_sex` reads it).
SEX_CHOICES = [{"title": "unknown", "value": ""}, {"title": "female", "value": "F"}, {"title": "male", "value": "M"}]
#: The slice orientations the page offers.
ORIENTATIONS = ["Axial", "Coronal", "Sagittal"]
#: The relevance colour map as a CSS gradient (the legend under the views).
LEGEND_GRADIENT = "linear-gradient(to right, " + ", ".join(css_color(c) for c in PLASMA_STOPS) + ")"


def build_ui(self) -> None:
    """The page's layout for ``self`` (a :class:`~MedSORALib.web.app.MedSORAWebApp`): inputs, views, tables."""
    with SinglePageWithDrawerLayout(self.server, full_height=True) as layout:
        self.ui = layout
        layout.title.set_text("MedSORA")
        layout.root.theme = "dark"
        with layout.toolbar:
            v3.VSpacer()
            html.Div("{{ case_label }}", id="case-label", classes="text-caption mr-4")
        with layout.drawer as drawer:
            drawer.width = 380
            with html.Div(classes="pa-3"):
                v3.VTextarea(v_model=("symptom_text", ""), label="Symptoms (one per line)", rows=4,
                             auto_grow=True, id="symptom-box", disabled=("busy",), density="compact")
                with v3.VRow(dense=True):
                    with v3.VCol(cols=5):
                        v3.VTextField(v_model=("patient_age", ""), label="Age (years)", id="age-box",
                                      placeholder="unknown", disabled=("busy",), density="compact",
                                      hide_details=True)
                    with v3.VCol(cols=7):
                        v3.VSelect(v_model=("patient_sex", ""), label="Sex", items=("sex_choices", SEX_CHOICES),
                                   id="sex-choice", disabled=("busy",), density="compact", hide_details=True)
                html.Div("Age and sex choose the findings' reference ranges.", classes="text-caption mb-2")
                v3.VBtn("Score", click=self.on_score, id="score-button", color="primary", block=True,
                        disabled=("busy || !symptom_text.trim()",))
                v3.VProgressLinear(v_show="busy", model_value=("progress",), height=8, color="amber",
                                   classes="mt-2", id="progress-bar")
                html.Div("{{ progress_message }}", id="progress-message", classes="text-caption mt-1")
                v3.VBtn("Cancel", v_show="busy", click=self.on_cancel, id="cancel-button", size="small",
                        variant="text", classes="mt-1")
                v3.VAlert(v_if="error_message", type="error", text=("error_message",), density="compact",
                          classes="mt-2", id="error-message")
                v3.VSelect(v_if="results.length > 1", v_model=("selected",), label="Shown symptom",
                           items=("results.map((r, i) => ({title: r.symptom, value: i}))",),
                           density="compact", classes="mt-3")
                with html.Div(v_if="results.length", classes="mt-3", id="downloads"):
                    html.Div("Download", classes="text-subtitle-2")
                    html.A("{{ results[selected].seg_name }}", href=("results[selected].seg_url",),
                           download=True, id="download-seg", classes="d-block")
                    html.A("{{ results[selected].json_name }}", href=("results[selected].json_url",),
                           download=True, id="download-json", classes="d-block")
                v3.VDivider(classes="my-4")
                html.Div("Case on the server's disk", classes="text-subtitle-2 mb-2")
                html.Div("Under {{ data_root }}", v_if="can_load", classes="text-caption mb-2",
                         id="data-root")
                html.Div("Loading by path is off (no --data-root).", v_if="!can_load",
                         classes="text-caption mb-2", id="no-data-root")
                v3.VTextField(v_model=("ct_path",), label="CT (file or DICOM folder)", density="compact",
                              id="ct-path", disabled=("busy || !can_load",))
                v3.VTextField(v_model=("seg_path",), label="Organ segmentation", density="compact",
                              id="seg-path", disabled=("busy || !can_load",))
                v3.VSelect(v_model=("label_scheme",), items=("label_schemes", LABEL_SCHEMES),
                           label="Label scheme (label maps)", density="compact", disabled=("busy",),
                           id="label-scheme")
                v3.VBtn("Load", click=self.on_load, id="load-button", block=True, variant="tonal",
                        disabled=("busy || !can_load || !ct_path.trim()",))
        with layout.content:
            with html.Div(classes="pa-2 d-flex flex-column", style="gap: 8px;"):
                v3.VAlert(v_if="results.length && results[selected].scope === 'non-abdominal'", type="warning",
                          density="compact", id="ood-warning",
                          text=("'Out of domain: this does not read as an abdominal symptom (score ' + "
                                "results[selected].ood_score + '); all relevances are low.'",))
                with v3.VBtnToggle(v_model=("orientation",), mandatory=True, density="compact",
                                   id="orientation"):
                    for orientation in ORIENTATIONS:
                        v3.VBtn(orientation, value=orientation, size="small")
                with html.Div(style="height: 460px; position: relative;", id="views"):
                    self.layout_manager.initialize_layout_grid(layout)
                with html.Div(classes="d-flex align-center text-caption", style="gap: 8px;", id="legend"):
                    html.Span("relevance 0")
                    html.Div(style=f"width: 240px; height: 12px; background: {LEGEND_GRADIENT};")
                    html.Span("1")
                with html.Div(v_if="results.length", id="results"):
                    html.Div("{{ results[selected].symptom }}", classes="text-subtitle-1",
                             id="results-symptom")
                    with v3.VTable(density="compact", id="results-table"):
                        with html.Thead():
                            with html.Tr():
                                for title in ("Organ", "Relevance", "Text prior", "Image score",
                                              "Volume (ml)"):
                                    html.Th(title)
                                html.Th("Findings", v_if="has_findings")
                        with html.Tbody():
                            with html.Tr(v_for="(row, i) in results[selected].rows", key="row.key"):
                                with html.Td():
                                    html.Span(style=("{display: 'inline-block', width: '12px', height: '12px', "
                                                     "marginRight: '8px', background: row.color}",))
                                    html.Span("{{ row.organ }}", classes="organ")
                                html.Td("{{ row.relevance.toFixed(3) }}")
                                html.Td("{{ row.text_prior.toFixed(3) }}")
                                html.Td("{{ row.image_score === null ? '-' : row.image_score.toFixed(3) }}")
                                html.Td("{{ row.volume_ml.toFixed(1) }}")
                                html.Td("{{ row.findings }}", v_if="has_findings")
                    differential_view.build(self)
                    with html.Div(v_if="results[selected].passages.length", id="passages", classes="mt-3"):
                        html.Div("Supporting passages", classes="text-subtitle-1")
                        with html.Div(v_for="group in results[selected].passages", key="group.organ"):
                            html.Div("{{ group.organ }}", classes="text-subtitle-2 mt-2")
                            with html.Div(v_for="p in group.items", key="p.id", classes="text-body-2 mb-2"):
                                html.Span("{{ p.text }} ")
                                html.Span("[{{ p.source }}]", classes="text-caption")
