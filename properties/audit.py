"""`python -m properties.audit`: runs properties.tools.audit (the suite's tooling, from a clone)."""

import sys

from properties.tools.audit import main

if __name__ == "__main__":
    sys.exit(main())
