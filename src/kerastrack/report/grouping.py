"""Which runs belong together in a report: the values a sweep's job was given (its
``sweep.values`` tag), and the groups they make (the swept values other than ``seed``,
so that the seeds of one configuration are averaged).

``kerastrack.report.build`` and ``kerastrack.report.best_over`` group runs with these.
"""

import json
import math
import textwrap

from kerastrack.errors import ConfigError


def job_order(record):
    """Sort key: the sweep's job number, then the start time (runs of no sweep last)."""
    job = record.tags.get("sweep.job", "")
    return (int(job) if job.isdigit() else math.inf, record.start_time or 0)


def swept_keys(records):
    """The keys the runs' sweep varied, in the sweep's order."""
    return list(dict.fromkeys(k for r in records for k in swept_values(r)))


def swept_values(record):
    """Swept key -> value (a str) of one run; {} for a run of no sweep."""
    try:
        values = json.loads(record.tags.get("sweep.values", "{}"))
    except json.JSONDecodeError:
        return {}
    return {str(k): str(v) for k, v in values.items()} if isinstance(values, dict) else {}


def group_keys(records, swept, keys):
    """The keys that define a group: ``keys`` checked, or by default the swept keys but
    seed (the run name for runs of no sweep).

    Raises:
        ConfigError: A key that is neither swept, a param nor a tag of the runs.
    """
    if keys is None:
        return [k for k in swept if k != "seed"] if swept else ["name"]
    known = set(swept) | {"name"} | {k for r in records for k in (*r.params, *r.tags)}
    for key in keys:
        if key not in known:
            raise ConfigError(
                f"group key '{key}' is neither a swept key, a param nor a tag of these runs; "
                f"swept keys: {', '.join(swept) or 'none'}. Received: group_keys={list(keys)}"
            )
    return list(keys)


def value_of(record, key):
    """A run's value of ``key``: swept, else param, else tag, else ""; "name": the run name."""
    if key == "name":
        return record.name
    return next((s[key] for s in (swept_values(record), record.params, record.tags) if key in s), "")


def default_title(records):
    """The sweep's parent run id when the runs share one, else how many runs there are."""
    parents = {r.tags.get("mlflow.parentRunId") for r in records}
    return f"sweep {parents.pop()}" if len(parents) == 1 and None not in parents else f"{len(records)} runs"


def varied(records, swept, keys):
    """What differs between the figure's curves, e.g. "varied: optimizer; seed (3 seeds averaged)"."""
    if keys == ["name"]:
        return "one curve per run"
    parts = list(keys)
    for key in (k for k in swept if k not in keys):
        values = {swept_values(r)[key] for r in records if key in swept_values(r)}
        noun = "seeds" if key == "seed" else "values"
        parts.append(f"{key} ({len(values)} {noun} averaged)" if len(values) > 1 else f"{key}={min(values)}")
    # Searches sweep many keys: wrap rather than widen the figure.
    return textwrap.fill(f"varied: {'; '.join(parts) or 'nothing'}", width=110)


def group_label(record, keys):
    """A run's group as text, e.g. "optimizer=adam,optimizer.learning_rate=0.001"."""
    if keys == ["name"]:
        return record.name
    return ",".join(f"{k}={value_of(record, k)}" for k in keys) or "all runs"
