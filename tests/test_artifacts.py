"""Run-folder round trip and safe loading: no pickle is ever opened, no path escapes the folder."""

import json
import pickle
import shutil

import pytest

from conftest import SAMPLE
from ulmfit_cli.config import from_dict
from ulmfit_cli.errors import RunFolderError
from ulmfit_cli.models import awd_lstm
from ulmfit_cli.runfolder.artifacts import RunWriter, load_weights, open_run


def test_weights_round_trip_exactly(pipeline):
    import torch

    run = open_run(pipeline["clf"], ("finetune-clf",), "test")
    cfg = from_dict(run.config)
    a = awd_lstm.build_classifier(cfg, run.manifest["vocab_size"], len(run.manifest["classes"]))
    load_weights(a, run.file("weights"))
    b = awd_lstm.build_classifier(cfg, run.manifest["vocab_size"], len(run.manifest["classes"]))
    assert not all(torch.equal(x, y) for x, y in zip(a.state_dict().values(), b.state_dict().values()))
    load_weights(b, run.file("weights"))
    for (k, x), y in zip(a.state_dict().items(), b.state_dict().values()):
        assert torch.equal(x, y), k


class Boom:
    def __reduce__(self):
        return (exec, ("open('PWNED', 'w').write('x')",))


def test_a_pickled_weights_file_is_refused_and_never_run(pipeline, tmp_path, cli, monkeypatch):
    bad = tmp_path / "lm"
    shutil.copytree(pipeline["lm"], bad)
    (bad / "model.safetensors").write_bytes(pickle.dumps(Boom()))
    monkeypatch.chdir(tmp_path)
    run = open_run(bad, ("pretrain",), "test")
    model = awd_lstm.build_lm(from_dict(run.config), run.manifest["vocab_size"])
    with pytest.raises(RunFolderError, match="pickle"):
        load_weights(model, run.file("weights"))
    r = cli("finetune-lm", bad, SAMPLE / "trec_train.csv", "--out", tmp_path / "x", cwd=tmp_path)
    assert r.returncode == 2 and "pickle" in r.stderr
    assert not (tmp_path / "PWNED").exists()


def test_a_torch_save_file_is_refused(pipeline, tmp_path):
    import torch

    bad = tmp_path / "lm"
    shutil.copytree(pipeline["lm"], bad)
    torch.save({"x": torch.zeros(2)}, bad / "model.safetensors")
    run = open_run(bad, ("pretrain",), "test")
    with pytest.raises(RunFolderError, match="pickle or torch.save"):
        load_weights(awd_lstm.build_lm(from_dict(run.config), run.manifest["vocab_size"]), run.file("weights"))


def test_a_safetensors_header_of_length_0x80_mod_256_is_not_taken_for_a_pickle(tmp_path):
    """Its first byte is 0x80, as a pickle's (an AWD-LSTM of 3 layers at width 128 hit it: 1408 bytes)."""
    import torch
    from safetensors.torch import save_file

    model = torch.nn.Linear(3, 2)
    for pad in range(300):  # the metadata's length moves the header's
        save_file(model.state_dict(), tmp_path / "w.safetensors", metadata={"pad": "x" * pad})
        if (tmp_path / "w.safetensors").read_bytes()[0] == 0x80:
            break
    again = torch.nn.Linear(3, 2)
    load_weights(again, tmp_path / "w.safetensors")
    assert torch.equal(again.weight, model.weight)


def test_manifest_paths_cannot_escape_the_folder(pipeline, tmp_path):
    bad = tmp_path / "lm"
    shutil.copytree(pipeline["lm"], bad)
    m = json.loads((bad / "manifest.json").read_text())
    m["files"]["weights"] = "../../etc/passwd"
    (bad / "manifest.json").write_text(json.dumps(m))
    with pytest.raises(RunFolderError, match="outside the run folder"):
        open_run(bad, ("pretrain",), "test")


def test_writer_is_atomic(tmp_path):
    out = tmp_path / "run"
    w = RunWriter(out, overwrite=False)
    w.write_json("config.json", {"a": 1})
    assert not out.exists()  # nothing visible until commit
    w.commit()
    assert json.loads((out / "config.json").read_text()) == {"a": 1}
    w2 = RunWriter(tmp_path / "other", overwrite=False)
    w2.abort()
    assert list(tmp_path.iterdir()) == [out]
