"""``python -m tests.bench [--quick] [--stages ...]``: the benchmark table (see ``suite``)."""

import sys

from tests.bench.suite import main

sys.exit(main())
