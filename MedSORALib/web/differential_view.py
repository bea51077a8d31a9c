"""The differential diagnosis on the ``medsora serve`` page.

Under the organ table, the page shows the result's scope and its five most
probable diagnoses (:func:`MedSORALib.diagnoses.checklist_rows`): probability,
organs, the findings read in the text, and the CT signs to look for as a
checklist (check boxes in the browser; nothing is sent back or kept). Choosing a
diagnosis (its "Show" button) centres the slice views on its main organ's focus
point (:func:`MedSORALib.focus.organ_focus`: on the organ's largest axial
cross-section, inside the organ) and says so under the list.

The focus points are computed when the results are shown (:func:`result_fields`,
merged into each result of the page state), so choosing a diagnosis only moves
the slice views. :func:`build` adds the section to the page and registers its
trigger; ``web/app.py`` calls these two functions and nothing else of this module.
"""
from __future__ import annotations

from ..diagnoses import checklist_rows, scope_text
from ..focus import organ_focus
from ..organs import ORGANS

#: The trame trigger the page calls with the index of the chosen diagnosis.
TRIGGER = "medsora_choose_diagnosis"


def result_fields(result, case) -> dict:
    """The page-state fields of one result's differential: ``scope``, ``scope_text`` and ``differential``
    (the rows of :func:`~MedSORALib.diagnoses.checklist_rows` with ``organ_name`` and ``focus``, the RAS point
    in mm, or None when the case holds none of the diagnosis's organs)."""
    masks = case.masks if case is not None else {}
    rows = checklist_rows(result.differential, list(masks))
    focus_of: dict[str, list | None] = {}
    for row in rows:
        key = row["organ"]
        if key is not None and key not in focus_of:
            point = organ_focus(masks[key], case.volume.affine)
            focus_of[key] = None if point is None else [round(float(v), 2) for v in point]
        row["organ_name"] = ORGANS[key].display_name if key else ""
        row["focus"] = focus_of.get(key) if key else None
    return {"scope": result.scope, "scope_text": scope_text(result.scope, result.outside, result.none_of_these),
            "differential": rows}


def choose(app, index) -> None:
    """Centre the page's slice views on the focus point of diagnosis ``index`` of the shown result."""
    from ..scene.diagnosis_view import jump_slices

    state = app.state
    results = state.results or []
    selected = min(max(int(state.selected or 0), 0), len(results) - 1) if results else -1
    rows = results[selected].get("differential", []) if selected >= 0 else []
    try:
        row = rows[int(index)]
    except (IndexError, TypeError, ValueError):
        return
    if row.get("focus") is None:
        message = f"{row['diagnosis']}: outside the organs of this CT; the slice views stay where they are."
    else:
        jump_slices(app.slicer_app.scene, row["focus"])
        for view in app.slicer_app.view_manager.get_slice_views():
            view.schedule_render()
        r, a, s = row["focus"]
        message = (f"{row['diagnosis']}: slice views centred on the {row['organ_name']} "
                   f"(largest axial cross-section; R {r:.1f}, A {a:.1f}, S {s:.1f} mm).")
    with state:
        state.chosen_diagnosis = int(index)
        state.differential_focus = message


def build(app) -> None:
    """The differential section of the page (call inside the results block of the page layout)."""
    from trame.widgets import html
    from trame.widgets import vuetify3 as v3

    app.state.setdefault("chosen_diagnosis", -1)
    app.state.setdefault("differential_focus", "")
    app.server.trigger(TRIGGER)(lambda index: choose(app, index))

    @app.state.change("results", "selected")
    def _forget_the_choice(**_):  # another result shown: its diagnoses have not been chosen yet
        app.state.chosen_diagnosis = -1
        app.state.differential_focus = ""

    with html.Div(v_if="results[selected].differential", id="differential", classes="mt-3"):
        html.Div("Differential diagnosis", classes="text-subtitle-1")
        html.Div("{{ results[selected].scope_text }}", id="differential-scope",
                 classes=("results[selected].scope === 'modelled' ? 'text-caption' : 'text-body-2 text-amber'",))
        with html.Div(v_for="(d, i) in results[selected].differential", key="d.rank", classes="diagnosis mt-2 pa-1",
                      style=("i === chosen_diagnosis ? 'outline: 1px solid #ffb300;' : ''",)):
            with html.Div(classes="d-flex align-center", style="gap: 8px;"):
                html.Span("{{ d.rank }}. {{ d.diagnosis }}", classes="diagnosis-name font-weight-bold")
                html.Span("{{ d.probability }}", classes="diagnosis-probability")
                html.Span("({{ d.where }})", classes="text-caption")
                v3.VBtn("Show", size="x-small", variant="tonal", classes="diagnosis-show",
                        disabled=("!d.focus",), click=f"trigger('{TRIGGER}', [i])")
            html.Div("read: {{ d.read }}", v_if="d.read", classes="text-caption diagnosis-read")
            html.Div("look for:", v_if="d.look_for.length", classes="text-caption")
            with html.Div(v_for="sign in d.look_for", key="sign", classes="look-for text-body-2 ml-3"):
                with html.Label():
                    html.Input(type="checkbox", classes="look-for-check mr-1")
                    html.Span("{{ sign }}")
        html.Div("{{ differential_focus }}", v_if="differential_focus", id="differential-focus",
                 classes="text-caption mt-2")
