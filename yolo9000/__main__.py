"""`python -m yolo9000` runs the CLI."""
from yolo9000.cli import main

raise SystemExit(main())
