"""Commands made of stages, or run before them: `pipeline`, `learning-curve`, `lr-find`, `tune` (tune, its search
space, its Optuna study and its results: space, study, tune_results), and `inspect`'s reports on the data
(inspect_data) and on how a run's tokenizer reads it (inspect_tokens).

May import: the root modules, data, models, runfolder, inference, training, importers.
"""
