"""`python -m collector.demo`: the same as the `cognocient-demo` command."""

import sys

from collector.demo import main

sys.exit(main())
