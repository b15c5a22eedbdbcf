import json
from pathlib import Path

import streamer

ALERT_SCHEMA = json.loads((Path(streamer.__file__).parent / "schemas" / "alert.v2.json").read_text())
