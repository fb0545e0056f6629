"""Model registry: S2D (ViT + MCP + TMA), its SFER image variant, NR-DFERNet, UniLearn."""
from dfer.models.registry import create_model, list_models, register_model

__all__ = ["create_model", "list_models", "register_model"]
