"""A run's labels, from the config's ``tags`` and ``notes``: one MLflow tag ``<name>=true``
per name in ``tags`` (so that a search filter selects it: ``tags.baseline = 'true'``), and
``notes`` as the run's description (MLflow's ``mlflow.note.content``, which the UI shows and
edits on the run's page)."""

from kerastrack.utils.secrets import mask_text

NOTE_TAG = "mlflow.note.content"
TAG_VALUE = "true"
# The tags kerastrack and MLflow set themselves: a user's tag of such a name would overwrite
# what the record says of the run (its optimizer, its config's hash, its sweep, its error).
OWN_PREFIXES = ("mlflow.", "kerastrack.", "version.", "config.", "git.", "sweep.", "error.", "resume.", "best_")
OWN_NAMES = ("diverged", "diverged_epoch", "pruned")


def tag_refusal(name, groups=()):
    """Why ``name`` cannot be a user's tag, or None when it can.

    Args:
        name: The tag's name.
        groups: The config groups: each is a tag of kerastrack's (``optimizer=adam``).

    Returns:
        The reason, in words, or None.
    """
    # MLflow's own checks of a tag's name, those its store applies: what is refused here is
    # what MLflow would refuse once the run is open.
    from mlflow.utils.validation import (
        MAX_ENTITY_KEY_LENGTH,
        bad_character_message,
        path_not_unique,
        validate_param_and_metric_name,
    )

    if name in groups or name in OWN_NAMES or name.startswith(OWN_PREFIXES):
        return "kerastrack sets a tag of that name itself"
    if len(name) > MAX_ENTITY_KEY_LENGTH:
        return f"MLflow takes tag names of at most {MAX_ENTITY_KEY_LENGTH} characters"
    if not validate_param_and_metric_name(name):
        return f"MLflow refuses it: {bad_character_message()}"
    if path_not_unique(name):
        return "MLflow refuses a name that reads as another path (empty, /a, a/, a//b, ./a, ..)"
    return None


def note_limit():
    """The longest note MLflow keeps whole (a tag's value; longer ones it cuts)."""
    from mlflow.utils.validation import MAX_TAG_VAL_LENGTH

    return MAX_TAG_VAL_LENGTH


def label_tags(tags=None, notes=None):
    """The MLflow tags of a run's (or a sweep's) ``tags`` and ``notes``, credentials in the
    notes masked.

    Args:
        tags: Names, checked (``config.checks.check_labels``); None: none.
        notes: The description, or None (or empty): none.

    Returns:
        ``{name: "true", ..., "mlflow.note.content": notes}``.
    """
    labels = dict.fromkeys((str(name) for name in tags or ()), TAG_VALUE)
    if notes:
        labels[NOTE_TAG] = mask_text(str(notes))
    return labels


def without_parent_note(tags, parent_tags):
    """A sweep job's tags without the note the sweep's parent carries: a sweep's notes are
    the sweep's description, on its parent; a job whose note differs (a swept ``notes``) keeps it."""
    if NOTE_TAG in tags and tags[NOTE_TAG] == parent_tags.get(NOTE_TAG):
        return {k: v for k, v in tags.items() if k != NOTE_TAG}
    return tags
