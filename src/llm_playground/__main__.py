import sys

from llm_playground.cli import main

sys.exit(main())
