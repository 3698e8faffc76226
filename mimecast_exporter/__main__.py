"""`python -m mimecast_exporter` runs the exporter's command line."""

from mimecast_exporter.cli import main

raise SystemExit(main())
