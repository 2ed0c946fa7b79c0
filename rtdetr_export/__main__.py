"""``python -m rtdetr_export`` runs the CLI."""

from rtdetr_export.cli import main

main()
