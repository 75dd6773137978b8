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

from pages._common import PAGE_CONFIG  # noqa: E402  (needs ROOT on the path)

st.set_page_config(**PAGE_CONFIG)
st.navigation([
    st.Page("pages/data.py", title="Data", icon=":material/folder_open:", url_path="data"),
    st.Page("pages/train.py", title="Train", icon=":material/model_training:", url_path="train"),
    st.Page("pages/explore.py", title="Explore", icon=":material/insights:", url_path="explore"),
    st.Page("pages/review.py", title="Review", icon=":material/rule:", url_path="review"),
    st.Page("pages/benchmark.py", title="Benchmark", icon=":material/leaderboard:", url_path="benchmark"),
]).run()
