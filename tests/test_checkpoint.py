"""The one checkpoint format: every kind round-trips, a file of the wrong family says what it is."""
from __future__ import annotations

import json

import pytest
import torch
from safetensors.torch import save_file

from avatars.avatar.model import AvatarConfig, GeneratorConfig, load_avatar, read_avatar_meta, save_avatar
from avatars.core.checkpoint import FORMAT, CheckpointError, read_record
from avatars.core.weights import available, resolve_weights
from avatars.style.checkpoint import load_stylizer, read_style_record, save_stylizer
from avatars.style.stylenet import StyleNet, StyleNetConfig

TINY = GeneratorConfig(base_channels=4, max_channels=8, num_down=1, res_encoder=1, res_decoder=1, outer_kernel=3)


def test_avatars_and_styles_share_the_format_and_refuse_each_other(tmp_path):
    avatar = save_avatar(tmp_path / "person.safetensors", AvatarConfig("textured", TINY, 8).build(),
                         AvatarConfig("textured", TINY, 8))
    style = save_stylizer(tmp_path / "paint.safetensors", StyleNet(StyleNetConfig(channels=(4, 8, 8), n_residual=1)), {})
    for path, kind in ((avatar, "textured"), (style, "stylenet")):
        record = json.loads(path.with_suffix(".json").read_text())
        assert record["format"] == FORMAT and record["kind"] == kind and read_record(path) == record
    assert load_avatar(avatar)[1].kind == "textured" and isinstance(load_stylizer(style), StyleNet)
    with pytest.raises(CheckpointError, match="person is a textured avatar, not a style"):
        load_stylizer(avatar)
    with pytest.raises(CheckpointError, match="paint is a StyleNet stylizer, not an avatar"):
        read_avatar_meta(style)
    plain = tmp_path / "plain.safetensors"
    save_file({"w": torch.zeros(1)}, plain)
    with pytest.raises(CheckpointError, match="not a checkpoint of this project"):
        read_style_record(plain)


def test_shipped_names_resolve_only_in_their_own_family():
    assert "mannequin_avatar" in available("avatar") and "starry_night" in available("style")
    assert resolve_weights("starry_night", "style").parent.name == "style"
    with pytest.raises(CheckpointError, match="mannequin_avatar is a textured avatar, not a style"):
        resolve_weights("mannequin_avatar", "style")
    with pytest.raises(FileNotFoundError) as err:
        resolve_weights("no_such_style", "style")
    assert "starry_night" in str(err.value) and "mannequin_avatar" not in str(err.value)


def test_shipped_records_name_no_path_of_the_machine_that_made_them():
    for family in ("avatar", "style"):
        for name in available(family):
            text = resolve_weights(name, family).with_suffix(".json").read_text()
            assert "/work/" not in text and "/home/" not in text and "/tmp/" not in text and "/root/" not in text, name
            assert read_record(resolve_weights(name, family), family)["kind"]


def test_shipping_stores_textures_in_8_bits_and_the_network_in_fp16(tmp_path):
    """A shipped avatar is a quarter of fp32 on its textures: uint8 levels of 1/255 in the file, fp32
    within half a level after loading; values outside [0, 1] are refused, not wrapped."""
    from safetensors import safe_open

    torch.manual_seed(0)
    cfg = AvatarConfig("textured", TINY, 16)
    model = cfg.build()
    with torch.no_grad():
        model.textures.uniform_(0, 1)
    path = save_avatar(tmp_path / "ship.safetensors", model, cfg, half=True)
    with safe_open(str(path), framework="pt") as f:
        assert f.get_tensor("textures").dtype == torch.uint8
        assert f.get_tensor("net.decoder_a.0.body.0.weight").dtype == torch.float16
    loaded, _ = load_avatar(path)
    assert loaded.textures.dtype == torch.float32
    assert (loaded.textures - model.textures).abs().max() <= 0.5 / 255 + 1e-6
    with torch.no_grad():
        model.textures[0, 0, 0, 0] = 1.5
    with pytest.raises(CheckpointError, match="textures: values outside"):
        save_avatar(tmp_path / "bad.safetensors", model, cfg, half=True)
