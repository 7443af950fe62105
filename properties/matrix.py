"""`python -m properties.matrix`: runs properties.tools.matrix (the suite's tooling, from a clone)."""

import sys

from properties.tools.matrix import main

if __name__ == "__main__":
    sys.exit(main())
