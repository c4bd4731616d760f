"""Suite-wide setup: no network for litellm, and every test's files under its own tmp dir."""

import os

os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")
