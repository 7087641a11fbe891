"""`python scripts/services up|check`: run the package's command line."""

import sys
from pathlib import Path

# Run as a directory, Python puts scripts/services itself first on sys.path, where its
# module names could shadow real packages; the package's parent is what belongs there.
sys.path[0] = str(Path(__file__).resolve().parent.parent)

from services.cli import main  # noqa: E402

sys.exit(main())
