import sys

from otel_diag.cli import main

sys.exit(main())
