import numpy as np
import torch

from sparknet.flat import FlatLayout, flatten_state, load_flat_state
from sparknet.models import SmallCNN


def test_flat_state_round_trip_includes_buffers_and_integer_counters():
    torch.manual_seed(0)
    model = SmallCNN()
    model.train()
    model(torch.randn(4, 1, 28, 28))  # moves BatchNorm running stats and counters
    layout = FlatLayout.of(model)
    floats, ints = flatten_state(model, layout)
    float_names = {e.name for e in layout.floats}
    assert "features.1.running_mean" in float_names
    assert {e.name for e in layout.ints} == {n for n in model.state_dict()
                                              if n.endswith("num_batches_tracked")}
    assert ints.tolist() == [1] * len(layout.ints)
    assert floats.size == sum(t.numel() for n, t in model.state_dict().items()
                              if t.is_floating_point())

    other = SmallCNN()
    load_flat_state(other, layout, floats, ints)
    for name, tensor in model.state_dict().items():
        assert torch.equal(other.state_dict()[name], tensor), name
    again, again_ints = flatten_state(other, layout)
    assert np.array_equal(again, floats) and np.array_equal(again_ints, ints)
