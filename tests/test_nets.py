"""Shared networks: shapes for every supported size/channel count, and exact parameter counts."""

from __future__ import annotations

import pytest
import torch

from aegan.nets import AutoEncoder, Decoder, Discriminator, Encoder, NetShape, count_parameters


@pytest.mark.parametrize("size", [16, 32, 64])
@pytest.mark.parametrize("channels", [1, 3])
def test_shapes(size, channels):
    shape = NetShape(image_size=size, channels=channels, z_dim=8, width=8)
    z = torch.randn(5, 8)
    x = Decoder(shape)(z)
    assert x.shape == (5, channels, size, size)
    assert x.min() >= -1 and x.max() <= 1
    assert Encoder(shape)(x).shape == (5, 8)
    assert Encoder(shape, out_dim=16)(x).shape == (5, 16)
    assert Discriminator(shape)(x).shape == (5,)
    features, logits = Discriminator(shape).features_and_logits(x)
    assert features.shape == (5, shape.bottleneck_channels * 16) and logits.shape == (5,)
    assert AutoEncoder(shape)(x).shape == x.shape


def test_decoder_parameter_count_matches_the_dcgan_layout():
    # 16x16, 1 channel, z 32, width 32: ConvT(32->64, 4x4) + BN(64) + ConvT(64->32) + BN(32) + ConvT(32->1)
    shape = NetShape(image_size=16, channels=1, z_dim=32, width=32)
    expected = 32 * 64 * 16 + 2 * 64 + 64 * 32 * 16 + 2 * 32 + 32 * 1 * 16
    assert count_parameters(Decoder(shape)) == expected == 66240


def test_width_and_size_scale_channels():
    s = NetShape(image_size=64, channels=3, z_dim=16, width=8)
    assert s.n_halvings == 4 and s.bottleneck_channels == 64


def test_rejects_non_power_of_two():
    with pytest.raises(ValueError):
        NetShape(image_size=24, channels=1, z_dim=8, width=8)
