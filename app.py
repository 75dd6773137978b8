"""SEI review: train a model, see why images were flagged, and fix their labels.

Run with ``streamlit run app.py``. Runs are kept under ``$SEI_RUNS_DIR`` (default ``./runs``);
without a data choice the app opens the bundled sample data (generated on first use).
Each page draws the shared sidebar itself (``pages/_common.py: page_setup``), so a page also
works when Streamlit runs it directly.
"""

import sys
from pathlib import Path

import streamlit as st

ROOT = Path(__file__).resolve().parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from pages._common import PAGE_CONFIG, run_app  # noqa: E402  (needs ROOT on the path)

st.set_page_config(**PAGE_CONFIG)
run_app()
