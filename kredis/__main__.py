"""``python -m kredis``: the same command line as the ``kredis`` script."""

from kredis.app.cli import main

main()
