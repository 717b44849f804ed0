"""tools/ entry of the exporter: same flags as `python -m ppcd_tf.export`."""

import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(
    __file__))))

from ppcd_tf import export  # noqa: E402

if __name__ == "__main__":
    export.run_main()
