"""LLM Playground: a hands-on workbench for learning how large language models work.

The library is the core that the Streamlit app (``llm_playground.ui``), the command
line (``llm-playground``) and the tests all call.
"""

__version__ = "0.1.0"
