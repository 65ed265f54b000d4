"""Files written whole or not at all (the training state, a run's saved config and id, a
spool's progress: a crash or a full disk leaves the old file or the new one, never half),
and directories checked writable before anything goes into them."""

import os
from pathlib import Path


def write_atomic(path, content):
    """Writes ``content`` to ``path`` through a synced temporary file beside it, renamed over
    it (atomic on POSIX). On any error the temporary file is removed and ``path`` is as it was.

    Args:
        path: The file.
        content: Text, bytes, or a function that writes to a binary file object.
    """
    path = Path(path)
    tmp = path.with_name(f"{path.name}.tmp")
    try:
        with open(tmp, "wb") as f:
            if callable(content):
                content(f)
            else:
                f.write(content.encode() if isinstance(content, str) else content)
            f.flush()
            os.fsync(f.fileno())  # whole on disk before it replaces the last good file
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def writable_dir(path):
    """Creates the directory ``path`` if needed and checks that a file can be written in it.

    Returns:
        The directory as a Path.

    Raises:
        OSError: It cannot be created or written.
    """
    directory = Path(str(path))
    directory.mkdir(parents=True, exist_ok=True)
    probe = directory / f".write-test-{os.getpid()}"
    try:
        probe.write_bytes(b"0")  # a byte, not an empty file: a full disk refuses only data
    finally:
        probe.unlink(missing_ok=True)
    return directory
