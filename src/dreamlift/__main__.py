"""``python -m dreamlift`` is the ``dreamlift`` command (for environments without its script)."""

from dreamlift.cli.app import script

if __name__ == "__main__":
    script()
