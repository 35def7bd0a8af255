"""A trained classifier in use: loading a run, encoding, length-sorted batched prediction, ensembles and
`evaluate`'s metrics (predictor), `predict`'s output lines (formats), the ONNX engine (onnx_engine) and
`ulmfit export` (export), `--quantize int8` (quantize).

May import: the root modules, data, models, runfolder.
"""
