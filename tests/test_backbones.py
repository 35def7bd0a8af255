"""Every backbone module satisfies models.Backbone, the interface the stages call: each member is there and takes
the interface's parameters, by the same names in the same order (a backbone may give one a default, as hf does
the vocabulary size it does not need)."""

import inspect
import types

import pytest

from ulmfit_cli.config import BACKBONES
from ulmfit_cli.models import Backbone, backbone

MEMBERS = sorted(n for n, v in vars(Backbone).items() if inspect.isfunction(v) and not n.startswith("_"))


def parameters(fn) -> list[tuple]:
    return [(p.name, p.kind) for p in inspect.signature(fn).parameters.values()]


def mismatches(module) -> dict[str, str]:
    """{member: what is wrong} for each member of Backbone that `module` lacks or takes other parameters for."""
    found = {}
    for name in MEMBERS:
        fn = getattr(module, name, None)
        if not callable(fn):
            found[name] = "missing"
            continue
        want = parameters(getattr(Backbone, name))[1:]  # the protocol's methods take self; a module's functions not
        if parameters(fn) != want:
            found[name] = f"takes ({', '.join(n for n, _ in parameters(fn))}), not ({', '.join(n for n, _ in want)})"
    return found


def test_the_interface_has_what_the_stages_call():
    assert MEMBERS == sorted(
        ["build_lm", "build_classifier", "group_names", "lm_groups", "classifier_groups", "encoder_of_lm",
         "encoder_of_classifier", "diagnosed_layers", "pad_batch", "cut_doc", "lm_objective"]
    )  # fmt: skip


@pytest.mark.parametrize("name", BACKBONES)
def test_each_backbone_satisfies_the_interface(name):
    module = backbone(name)
    assert isinstance(module, Backbone)
    assert mismatches(module) == {}


def test_the_check_finds_a_missing_member_and_other_parameters():
    fake = types.SimpleNamespace(**{n: getattr(backbone("transformer"), n) for n in MEMBERS})
    del fake.pad_batch
    fake.cut_doc = lambda doc, length: doc
    assert not isinstance(fake, Backbone)
    assert mismatches(fake) == {"pad_batch": "missing", "cut_doc": "takes (doc, length), not (doc, max_len)"}
