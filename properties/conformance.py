"""`python -m properties.conformance`: runs properties.tools.conformance (the suite's tooling, from a clone)."""

import sys

from properties.tools.conformance import main

if __name__ == "__main__":
    sys.exit(main())
