import pytest
import torch

from model.network import SeedCNN, pooled_size
from model.summary import format_table, layer_table


def test_q10_table_matches_the_seed() -> None:
    rows = {row.name: row for row in layer_table()}
    assert rows["Conv1"].output_shape == (32, 32, 32) and rows["Conv1"].weights == 2432
    assert rows["Pool1"].output_shape == (16, 16, 32)
    assert rows["Conv2"].output_shape == (16, 16, 64) and rows["Conv2"].weights == 51264
    assert rows["Pool2"].output_shape == (8, 8, 64)
    assert rows["Conv3"].output_shape == (8, 8, 64) and rows["Conv3"].weights == 102464
    assert rows["Pool3"].output_shape == (4, 4, 64)
    assert rows["fc4"].output_shape == (1000,) and rows["fc4"].weights == 1_025_000
    assert rows["fc5"].output_shape == (10,) and rows["fc5"].weights == 10_010


def test_totals_with_and_without_fc_biases() -> None:
    text = format_table(layer_table())
    assert "1,191,170 weights with biases" in text
    assert "1,190,160 as the seed counts" in text
    # The seed's cumulative column, row by row.
    assert [line.split()[-1] for line in text.splitlines()[1:-1]] == [
        "0", "2,432", "2,432", "53,696", "53,696", "156,160", "156,160", "1,180,160", "1,190,160",
    ]  # fmt: skip


@pytest.mark.parametrize(("size", "side"), [(32, 4), (28, 4), (8, 1)])
def test_fc_input_follows_the_image_size(size: int, side: int) -> None:
    assert pooled_size(size) == side
    network = SeedCNN(in_channels=3, image_size=size)
    assert network.classifier[1].in_features == 64 * side * side
    assert network(torch.zeros(2, 3, size, size)).shape == (2, 10)


def test_batch_norm_adds_320_weights_and_dropout_none() -> None:
    plain = sum(p.numel() for p in SeedCNN(image_size=28).parameters())
    with_bn = sum(p.numel() for p in SeedCNN(image_size=28, batch_norm=True).parameters())
    assert plain == 1_191_170
    assert with_bn - plain == 320
    assert not any(isinstance(m, torch.nn.Dropout) for m in SeedCNN().modules())
    dropout = [m for m in SeedCNN(p_dropout=0.6).modules() if isinstance(m, torch.nn.Dropout)]
    assert len(dropout) == 1 and dropout[0].p == 0.6
