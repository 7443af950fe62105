"""`python -m properties.reliability`: runs properties.tools.reliability (the suite's tooling, from a clone)."""

import sys

from properties.tools.reliability import main

if __name__ == "__main__":
    sys.exit(main())
