"""The Emedgene connection form of both Airflow majors, derived from the extras' declaration.

Airflow 3.2+ reads ``conn-fields`` and ``ui-field-behaviour`` from the provider info
(:func:`conn_fields_schema`, :data:`UI_FIELD_BEHAVIOUR`); Airflow 2.11-3.1 call the hook's
``get_connection_form_widgets``/``get_ui_field_behaviour`` (:func:`form_widgets`,
:func:`hook_field_behaviour`). Both are built from :data:`~emedgene_provider.client.settings.SETTINGS`,
so neither form can drift from it. No Airflow import at module level: the provider info must stay
cheap to load.

What each form can show (checked against what Airflow serves, tests/unit/test_provider_info.py):

- A choice list: Airflow 3 renders a field whose JSON schema has ``enum`` as a clearable dropdown
  (``values_display`` gives the labels); Airflow 2.11 accepts only String/Integer/Password/Boolean
  fields from a hook (any other class drops the whole hook), so there it is a ``StringField`` drawn
  as a ``<select>`` and validated with ``any_of``.
- Placeholders: Airflow 3's API serves ``ui-field-behaviour`` placeholders for the standard
  fields only (host, login, password, ...); an extra field shows its label, its description and,
  for a text field with ``examples``, a "Start typing to see options" hint with those values as
  suggestions; a password-format field shows none. So the extras' placeholders serve Airflow
  2.11's form, and the declaration checks each one's words are also in the field's description.
"""

from __future__ import annotations

from typing import Any

from emedgene_provider.client.settings import SETTINGS

#: Extra fields: name -> (label, description, JSON-schema type, secret?).
CONN_FIELDS: dict[str, tuple[str, str, str, bool]] = {
    name: (s.label, s.description(), s.kind, s.secret) for name, s in SETTINGS.items()
}

#: Fields offered as a choice list: name -> ((value, what the form shows), ...). Blank stays allowed.
CHOICES: dict[str, tuple[tuple[str, str], ...]] = {
    name: s.choices for name, s in SETTINGS.items() if s.choices
}

UI_FIELD_BEHAVIOUR: dict[str, Any] = {
    "hidden-fields": ["schema", "port"],
    "relabeling": {"host": "Tenant URL", "login": "Username"},
    "placeholders": {
        "host": "https://lab.emedgene.com or lab.emg.illumina.com",
        "login": "user@lab.org (password auth)",
        "password": "password (password auth)",
        **{name: s.placeholder for name, s in SETTINGS.items() if s.placeholder},
    },
}


def conn_fields_schema() -> dict[str, Any]:
    """``conn-fields`` for the provider info (Airflow 3.2+)."""
    fields: dict[str, Any] = {}
    for name, setting in SETTINGS.items():
        schema: dict[str, Any] = {"type": [setting.kind, "null"]}
        if setting.secret:
            schema["format"] = "password"
        if setting.choices:
            schema["enum"] = [value for value, _ in setting.choices]
            schema["values_display"] = dict(setting.choices)
        if setting.examples:
            schema["examples"] = list(setting.examples)
        fields[name] = {"label": setting.label, "description": setting.description(), "schema": schema}
    return fields


def form_widgets() -> dict[str, Any]:
    """The hook's ``get_connection_form_widgets`` (Airflow 2.11-3.1): WTForms fields of the FAB UI,
    imported only when a form is drawn."""
    from flask_appbuilder.fieldwidgets import BS3PasswordFieldWidget, BS3TextFieldWidget
    from flask_babel import lazy_gettext
    from wtforms import BooleanField, PasswordField, StringField
    from wtforms.validators import Optional, any_of

    widgets: dict[str, Any] = {}
    for name, setting in SETTINGS.items():
        label, description = lazy_gettext(setting.label), setting.description()
        if setting.secret:
            widgets[name] = PasswordField(label, widget=BS3PasswordFieldWidget(), description=description)
        elif setting.choices:
            # A StringField drawn as a <select>: Airflow 2.11 refuses a hook with any other
            # field class. `any_of` is also what Airflow 3.0/3.1 turn into a dropdown.
            widgets[name] = StringField(
                label,
                widget=ChoiceWidget(setting.choices),
                validators=[Optional(), any_of([value for value, _ in setting.choices])],
                description=description,
            )
        elif setting.kind == "boolean":
            widgets[name] = BooleanField(label, description=description)
        else:
            widgets[name] = StringField(label, widget=BS3TextFieldWidget(), description=description)
    return widgets


def hook_field_behaviour() -> dict[str, Any]:
    """The hook's ``get_ui_field_behaviour`` (Airflow 2.11-3.1): :data:`UI_FIELD_BEHAVIOUR` in the
    hook method's spelling."""
    return {
        "hidden_fields": list(UI_FIELD_BEHAVIOUR["hidden-fields"]),
        "relabeling": dict(UI_FIELD_BEHAVIOUR["relabeling"]),
        "placeholders": dict(UI_FIELD_BEHAVIOUR["placeholders"]),
    }


class ChoiceWidget:
    """Draws a text field of Airflow 2.11's connection form as a ``<select>`` of its choices.

    A WTForms widget: called with the bound field, returns its HTML. The blank first option keeps
    the extra unset; a stored value that is not a choice is kept (shown as is) rather than lost.
    """

    def __init__(self, choices: tuple[tuple[str, str], ...]) -> None:
        self.choices = choices

    def __call__(self, field: Any, **kwargs: Any) -> Any:
        from markupsafe import Markup, escape
        from wtforms.widgets import html_params

        kwargs.setdefault("id", field.id)
        kwargs["class"] = f"form-control {kwargs.get('class', '')}".strip()
        current = field._value() or ""
        options = [("", ""), *self.choices]
        if current and current not in {value for value, _ in options}:
            options.append((current, current))
        html = [f"<select {html_params(name=field.name, **kwargs)}>"]
        for value, shown in options:
            selected = " selected" if value == current else ""
            html.append(f'<option value="{escape(value)}"{selected}>{escape(shown)}</option>')
        html.append("</select>")
        return Markup("".join(html))  # noqa: S704 - every value and label above is escaped
