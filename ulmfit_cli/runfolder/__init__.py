"""The run-folder format: manifest, config, tokenizer and weights, written in a temporary sibling and renamed
into place, and the checks between stages (artifacts); a folder of many runs that a command finishes step by
step after an interruption, for `pipeline` and `learning-curve` (workdir).

May import: the root modules, data, models.
"""
