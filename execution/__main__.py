import sys

from execution.executor_live import main

sys.exit(main())
