"""dfer: reproducible dynamic facial expression recognition workflows (S2D, NR-DFERNet, UniLearn)."""
__version__ = "0.1.0"
