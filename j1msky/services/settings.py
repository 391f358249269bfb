"""Settings → Budget and limits: the daily budget, monthly ceiling, alert thresholds and
each provider's hourly limit, read from and written to config.json.

Values are checked by config.json's own schema (config.ConfigSchema) and written by
ConfigStore.update (atomic, under its lock), like every other change to the file."""
from __future__ import annotations

from marshmallow import ValidationError

from ..config import ConfigSchema, ConfigStore, defaults, merge

BUDGET_FIELDS = ("budget.daily", "budget.monthly_ceiling", "budget.alert_thresholds.notice",
                 "budget.alert_thresholds.warning", "budget.alert_thresholds.critical")


def hourly_field(provider: str) -> str:
    return f"providers.{provider}.hourly"


def limit_fields(config: dict) -> list[str]:
    """The form's fields, named by their path in config.json."""
    return [*BUDGET_FIELDS, *(hourly_field(name) for name in config["providers"])]


def value_at(config: dict, path: str):
    value = config
    for part in path.split("."):
        value = value[part]
    return value


def limits_view(config: dict) -> dict:
    """path -> value in force, for every field of the form."""
    return {path: value_at(config, path) for path in limit_fields(config)}


def number(text: str):
    """A form's text as the JSON number it spells (the schema judges the rest)."""
    text = text.strip()
    for kind in (int, float):
        try:
            return kind(text)
        except ValueError:
            pass
    return text


def error_paths(messages: dict, prefix: str = "") -> dict[str, str]:
    """Nested schema messages as {"budget.daily": "first message"} (Dict fields' "value"
    level dropped, so a provider's limit is "providers.NAME.hourly")."""
    out = {}
    for key, value in messages.items():
        path = prefix if key == "value" else f"{prefix}{'.' if prefix else ''}{key}"
        if isinstance(value, dict):
            out.update(error_paths(value, path))
        else:
            out[path] = str(value[0] if isinstance(value, list) else value)
    return out


def apply(user: dict, values: dict) -> None:
    """Put path -> value into a config.json dict; providers are copied whole from the
    config in force first (a user's `providers` replaces the defaults' whole)."""
    if "providers" not in user:
        user["providers"] = merge(defaults(), user)["providers"]
    for path, value in values.items():
        *parents, leaf = path.split(".")
        section = user
        for part in parents:
            section = section.setdefault(part, {})
        section[leaf] = value


def update_limits(store: ConfigStore, form: dict[str, str]) -> tuple[dict, dict]:
    """Write the form's values to config.json; return (config now in force, changes as
    {path: {"old", "new"}}). ValidationError {path: message} leaves the file untouched;
    ConfigError when config.json is broken by something else."""
    before = limits_view(store.get())
    values = {path: number(form.get(path, "")) for path in before}

    def change(user: dict) -> None:
        apply(user, values)
        errors = error_paths(ConfigSchema().validate(merge(defaults(), user)))
        ours = {path: message for path, message in errors.items() if path in values}
        if ours:
            raise ValidationError(ours)

    config = store.update(change)
    after = limits_view(config)
    return config, {path: {"old": before[path], "new": after[path]}
                    for path in after if before.get(path) != after[path]}
