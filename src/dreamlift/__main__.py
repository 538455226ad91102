"""``python -m dreamlift`` is the ``dreamlift`` command (for environments without its script)."""

from dreamlift.cli import main

if __name__ == "__main__":
    main()
