"""The Streamlit labeling app (the only package that imports streamlit)."""
