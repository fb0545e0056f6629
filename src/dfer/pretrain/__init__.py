"""Self-supervised pre-training of the ViT encoders (`dfer pretrain-mae`).

``mae``: the masked autoencoder (encoder = our S2D/SFER ViT, names and shapes) and its token-level functions;
``engine``: one pre-training epoch (MAE's schedule, optimizer, accumulation, AMP);
``stage``: settings, image sources, resumption, outputs and the CLI command.
"""
