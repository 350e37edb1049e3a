"""The Streamlit app: thin pages over the library. Start it with ``make run`` or
``streamlit run src/llm_playground/ui/app.py``."""
