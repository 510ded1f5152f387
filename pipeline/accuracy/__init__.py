"""How right the pipeline is on recorded footage: annotations (``annotations.py``), incident matching
and scores (``score.py``), tracking scores (``tracks.py``)."""
