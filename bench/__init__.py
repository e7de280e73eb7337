"""The benchmark drivers and the report (``python -m trio_codex.bench``).

The drivers (load.py, startup.py, ...) are also plain scripts run by path,
importing their siblings as top-level modules (``from benchlib import ...``).
Importing them through this package puts this folder on ``sys.path`` so that
those imports resolve to one copy of each module, the same as a script run
sees; the report imports them by those top-level names too.
"""

from __future__ import annotations

import sys
from pathlib import Path

_HERE = str(Path(__file__).resolve().parent)
if _HERE not in sys.path:
    sys.path.insert(0, _HERE)
