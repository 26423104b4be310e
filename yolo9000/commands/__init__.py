"""One module per `yolo9000` subcommand; each exposes `register(subparsers)`."""
