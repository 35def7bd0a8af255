"""Commands made of stages, or run before them: `pipeline`, `learning-curve`, `lr-find`, and `inspect`'s reports
on the data (inspect_data) and on how a run's tokenizer reads it (inspect_tokens).

May import: the root modules, data, models, runfolder, inference, training, importers.
"""
