"""The DSPy forms of the program and version pages (governance.portal_dspy), for templates other views render.

`{% if program|can_import_dspy:user %}` asks governance.actions.rights; `{% dspy_import_form dspy_form as f %}`
gives the refused form back (with its errors) or a fresh one; `{% dspy_export_form as f %}` the layout choice.
"""

from __future__ import annotations

from typing import Any

from django import template

from governance.portal_dspy import FORM_IDS, DspyExportForm, DspyImportForm, can_import

register = template.Library()


@register.filter
def can_import_dspy(program: Any, user: Any) -> bool:
    return can_import(program, user)


@register.simple_tag
def dspy_import_form(refused: DspyImportForm | None = None) -> DspyImportForm:
    return refused or DspyImportForm(auto_id=FORM_IDS)


@register.simple_tag
def dspy_export_form() -> DspyExportForm:
    return DspyExportForm(auto_id=FORM_IDS)
