from launch.cli import main

raise SystemExit(main(prog="python -m launch"))
