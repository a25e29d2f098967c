"""``python -m spark_mlops`` is the ``spark-mlops`` console script."""

import sys

from spark_mlops.cli import main

sys.exit(main())
