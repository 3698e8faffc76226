"""`python -m mimecast_exporter.simulator` runs the simulator's command line."""

from mimecast_exporter.simulator.cli import main

raise SystemExit(main())
