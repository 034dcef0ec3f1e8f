"""`python -m sweeper.cli`: the same as `anpyc-sweep`."""

from sweeper.cli import main

main()
