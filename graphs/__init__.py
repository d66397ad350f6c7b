"""The shipped graph files (YAML), as package data: `launch.shipped` finds them by name."""
