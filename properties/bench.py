"""`python -m properties.bench`: runs properties.tools.bench (the suite's tooling, from a clone)."""

import sys

from properties.tools.bench import main

if __name__ == "__main__":
    sys.exit(main())
