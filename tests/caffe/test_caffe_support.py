"""Every Caffe 1.0 layer type and parameter parses; what sparknet does not implement is one
line naming the type or field (never a parse error). Level/stage rules select layers as
Caffe's Net does."""

from __future__ import annotations

import pytest

from sparknet.caffe import SUPPORTED_TYPES, parse_net_text
from sparknet.caffe.net import build_net
from sparknet.caffe.prototxt import filter_phase
from sparknet.caffe.support import CAFFE_LAYER_TYPES, NEVER_SUPPORTED
from sparknet.errors import CaffeFormatError

INPUT = ('layer { name: "in" type: "Input" top: "x" top: "y" '
         'input_param { shape { dim: 2 dim: 3 dim: 4 dim: 4 } shape { dim: 2 } } }\n')

# The parameter message of each Caffe 1.0 layer type that has one, written with Caffe's
# field names (from caffe.proto), as a user's prototxt would set them.
PARAMS = {
    "ArgMax": "argmax_param { out_max_val: true top_k: 2 axis: 1 }",
    "BatchReindex": "",
    "Bias": "bias_param { axis: 1 num_axes: 1 filler { type: 'constant' value: 1 } }",
    "Clip": "clip_param { min: -1 max: 1 }",
    "ContrastiveLoss": "contrastive_loss_param { margin: 2 legacy_version: true }",
    "Crop": "crop_param { axis: 2 offset: 1 offset: 2 }",
    "Embed": "embed_param { num_output: 4 input_dim: 10 bias_term: false "
             "weight_filler { type: 'xavier' } }",
    "Filter": "",
    "HDF5Output": "hdf5_output_param { file_name: 'out.h5' }",
    "HingeLoss": "hinge_loss_param { norm: L2 }",
    "Im2col": "convolution_param { kernel_size: 2 }",
    "InfogainLoss": "infogain_loss_param { source: 'h.binaryproto' axis: 1 }",
    "LSTM": "recurrent_param { num_output: 4 expose_hidden: true debug_info: false }",
    "LSTMUnit": "",
    "Log": "log_param { base: 2 scale: 1 shift: 1 }",
    "MVN": "mvn_param { normalize_variance: false across_channels: true eps: 1e-6 }",
    "MultinomialLogisticLoss": "loss_param { normalization: BATCH_SIZE }",
    "Parameter": "parameter_param { shape { dim: 3 dim: 4 } }",
    "Python": "python_param { module: 'os' layer: 'system' param_str: 'rm -rf /' }",
    "RNN": "recurrent_param { num_output: 4 weight_filler { type: 'gaussian' } }",
    "Reduction": "reduction_param { operation: MEAN axis: 1 coeff: 2 }",
    "SPP": "spp_param { pyramid_height: 2 pool: AVE engine: CAFFE }",
    "SigmoidCrossEntropyLoss": "loss_param { normalization: FULL }",
    "Swish": "swish_param { beta: 1.5 }",
    "Tile": "tile_param { axis: 1 tiles: 3 }",
}


@pytest.mark.parametrize("kind", sorted(set(CAFFE_LAYER_TYPES) - set(SUPPORTED_TYPES)))
def test_caffe_type_parses_and_is_refused_by_name(kind: str) -> None:
    assert kind in PARAMS, f"give {kind} a parameter example"
    net = parse_net_text(INPUT + f'layer {{ name: "l" type: "{kind}" bottom: "x" bottom: "y" '
                                 f'top: "z" {PARAMS[kind]} }}\n')
    with pytest.raises(CaffeFormatError) as err:
        build_net(net)
    message = str(err.value)
    assert f"unsupported layer type {kind}" in message and "\n" not in message
    if kind in NEVER_SUPPORTED:
        assert "never executes code" in message


def test_registry_names_every_supported_type() -> None:
    # A type sparknet builds that Caffe 1.0 does not register would be a typo.
    assert set(SUPPORTED_TYPES) <= set(CAFFE_LAYER_TYPES)


def test_unknown_type_is_not_a_caffe_type() -> None:
    net = parse_net_text(INPUT + 'layer { name: "l" type: "MyLayer" bottom: "x" top: "z" }')
    with pytest.raises(CaffeFormatError, match="unsupported layer type MyLayer .not a Caffe"):
        build_net(net)


@pytest.mark.parametrize(("layer", "field"), [
    ('type: "Pooling" pooling_param { pool: STOCHASTIC kernel_size: 2 }', "pool: STOCHASTIC"),
    ('type: "Convolution" convolution_param { num_output: 2 kernel_size: 1 axis: 2 }',
     "axis: 2"),
    ('type: "Convolution" convolution_param { num_output: 2 kernel_size: 1 kernel_size: 1 '
     'kernel_size: 1 }', "kernel_size with 3 values"),
])
def test_unimplemented_field_names_field_and_type(layer: str, field: str) -> None:
    net = parse_net_text(INPUT + f'layer {{ name: "l" {layer} bottom: "x" top: "z" }}')
    kind = layer.split('"')[1]
    with pytest.raises(CaffeFormatError, match=f"field {field} of {kind} is not supported"):
        build_net(net)


def test_v1_contrastive_loss_param_parses() -> None:
    net = parse_net_text('layers { name: "c" type: CONTRASTIVE_LOSS bottom: "a" bottom: "b" '
                         'bottom: "y" top: "loss" contrastive_loss_param { margin: 3 } }')
    assert net.layer[0].type == "ContrastiveLoss"
    assert net.layer[0].contrastive_loss_param.margin == 3


def test_v0_layers_are_refused_in_one_line() -> None:
    with pytest.raises(CaffeFormatError, match="field layer of V1LayerParameter .the V0 format"):
        parse_net_text('layers { layer { name: "conv1" type: "conv" num_output: 4 '
                       'kernelsize: 3 } bottom: "data" top: "conv1" }')


def test_datum_and_solver_state_are_declared() -> None:
    from sparknet.caffe import schema

    datum = schema.message_class("Datum")(channels=1, height=2, width=2, data=b"\1\2\3\4",
                                          label=7)
    again = schema.message_class("Datum").FromString(datum.SerializeToString())
    assert (again.label, again.data, again.encoded) == (7, b"\1\2\3\4", False)
    state = schema.message_class("SolverState")(iter=5, current_step=1)
    assert schema.message_class("SolverState").FromString(state.SerializeToString()).iter == 5


STAGED = ('name: "n" state { level: LEVEL STAGES }\n' + INPUT +
          'layer { name: "deep" type: "ReLU" bottom: "x" top: "a" include { min_level: 1 } }\n'
          'layer { name: "shallow" type: "ReLU" bottom: "x" top: "b" '
          'include { max_level: 0 } }\n'
          'layer { name: "deploy" type: "TanH" bottom: "x" top: "c" include { stage: "deploy" } }\n'
          'layer { name: "no_deploy" type: "TanH" bottom: "x" top: "d" '
          'exclude { stage: "deploy" } }\n'
          'layer { name: "train_not_val" type: "Sigmoid" bottom: "x" top: "e" '
          'include { phase: TRAIN not_stage: "val" } }\n')


@pytest.mark.parametrize(("level", "stages", "phase", "kept"), [
    (0, "", "TRAIN", {"shallow", "no_deploy", "train_not_val"}),
    (2, "", "TEST", {"deep", "no_deploy"}),
    (0, 'stage: "deploy"', "TEST", {"shallow", "deploy"}),
    (0, 'stage: "val"', "TRAIN", {"shallow", "no_deploy"}),
])
def test_level_and_stage_rules_select_layers_as_caffe(level: int, stages: str, phase: str,
                                                      kept: set[str]) -> None:
    net = parse_net_text(STAGED.replace("LEVEL", str(level)).replace("STAGES", stages))
    names = {layer.name for layer in filter_phase(net, phase).layer} - {"in"}
    assert names == kept
    built = build_net(net, phase=phase)
    assert {name for name in kept} <= {layer.name for layer in built.definition.layer}


def test_docs_table_lists_every_caffe_type_with_its_status() -> None:
    from pathlib import Path

    doc = (Path(__file__).resolve().parents[2] / "docs" / "caffe.md").read_text()
    table = doc.split("#### Layer types (Caffe 1.0's registry)")[1].split("\n\n")[1]
    status: dict[str, str] = {}
    for row in table.splitlines()[2:]:
        types, state = (cell.strip() for cell in row.strip("|").split("|")[:2])
        for kind in types.split(", "):
            assert kind not in status, f"{kind} listed twice"
            status[kind] = state
    assert set(status) == set(CAFFE_LAYER_TYPES)
    for kind, state in status.items():
        expected = ("yes" if kind in SUPPORTED_TYPES else
                    "never" if kind in NEVER_SUPPORTED else "not yet")
        assert state == expected, f"docs/caffe.md says {kind}: {state}, the code {expected}"


@pytest.mark.parametrize(("field", "message"), [
    ('net_param { name: "inline" }', "field net_param of SolverParameter is not supported"),
    ('train_net_param { name: "inline" }', "field train_net_param of SolverParameter"),
    ('train_state { stage: "big" }', "field train_state .level/stage. of SolverParameter"),
    ("snapshot_format: HDF5", "field snapshot_format of SolverParameter"),
])
def test_solver_fields_that_change_training_are_refused(field: str, message: str) -> None:
    from sparknet.caffe import parse_solver_text
    from sparknet.errors import ConfigError

    with pytest.raises(ConfigError, match=message):
        parse_solver_text(f'base_lr: 0.01 lr_policy: "fixed" {field}')
    # Fields of Caffe's own process are read and not used.
    assert parse_solver_text('base_lr: 0.01 lr_policy: "fixed" solver_mode: CPU '
                             "snapshot_format: BINARYPROTO display: 10").base_lr == \
        pytest.approx(0.01)
