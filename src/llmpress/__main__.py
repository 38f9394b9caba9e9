"""``python -m llmpress``: the same command as the ``llmpress`` entry point."""

from llmpress.cli import main

if __name__ == "__main__":  # importing this module (pydoc, test collectors) must not run the CLI
    raise SystemExit(main())
