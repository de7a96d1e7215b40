"""``python -m tools.cli``: the same as the ``exch`` console script."""

from . import main

main()
