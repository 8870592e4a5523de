"""Collecting preferences: the SQLite store, labeling batches, Pick-a-Pic and JSONL exchange, rater
agreement, simulated-rater runs, and the Streamlit app (`labeling_app.app`, the only subpackage
that imports streamlit)."""
