"""Lab 6: inside the model, for every model the playground can load.

- :mod:`.models`      ``open_model`` (a registry name, a run folder, a run's snapshot) and
                      ``InspectedModel``; ``encode_prompt``, ``probe_ids``, ``run_snapshot_steps``
- :mod:`.capture`     one forward pass that keeps every head's attention and the residual
                      stream after each block, with ablations as hooks
- :mod:`.lens`        the logit lens: the final norm and the output head on each block's
                      residual stream
- :mod:`.heads`       head roles: previous-token, first-token and induction scores
- :mod:`.ablation`    ``Ablation``, ``parse_ablation`` ("3.2" a head, "3.attn", "3.mlp")
- :mod:`.report`      ``inspect`` and ``induction_probe`` -> ``Inspection`` (numpy arrays and
                      plain lists, ``to_json()`` the command line's JSON)
- :mod:`.embeddings`  a 2-D PCA map of token embeddings and nearest neighbours by cosine
"""

from llm_playground.inspection.ablation import Ablation, parse_ablation
from llm_playground.inspection.embeddings import (
    DEFAULT_WORDS,
    EmbeddingMap,
    Neighbour,
    embedding_map,
    nearest_neighbours,
)
from llm_playground.inspection.heads import (
    HeadScore,
    first_token_scores,
    induction_scores,
    previous_token_scores,
    top_heads,
)
from llm_playground.inspection.models import (
    MAX_PROMPT_TOKENS,
    PROBE_MAX,
    PROBE_MIN,
    InspectedModel,
    encode_prompt,
    from_checkpoint,
    from_loaded,
    open_model,
    probe_ids,
    run_snapshot_steps,
)
from llm_playground.inspection.report import (
    Inspection,
    induction_probe,
    inspect,
    reference_sources,
)

__all__ = [
    "DEFAULT_WORDS",
    "MAX_PROMPT_TOKENS",
    "PROBE_MAX",
    "PROBE_MIN",
    "Ablation",
    "EmbeddingMap",
    "HeadScore",
    "InspectedModel",
    "Inspection",
    "Neighbour",
    "embedding_map",
    "encode_prompt",
    "first_token_scores",
    "from_checkpoint",
    "from_loaded",
    "induction_probe",
    "induction_scores",
    "inspect",
    "nearest_neighbours",
    "open_model",
    "parse_ablation",
    "previous_token_scores",
    "probe_ids",
    "reference_sources",
    "run_snapshot_steps",
    "top_heads",
]
