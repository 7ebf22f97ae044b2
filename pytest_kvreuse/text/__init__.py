"""Text traces to blocks: offline tokenizers, tokenizing shared text once, prefix-chained
block keys, and the on-disk cache of tokenized streams."""
