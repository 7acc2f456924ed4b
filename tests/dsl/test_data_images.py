"""The data block's image statements (layout, resize, augment) and the image folder rule."""
import pytest

from dlrun.dsl import format_source, parse
from dlrun.dsl.dataformats import data_format, is_folder_name
from dlrun.dsl.fmt import format_model
from dlrun.errors import DslError

NET = """dlrun 1
model m {{
  data {{
    train "{train}"
{extra}  }}
  input {shape}
  flatten
  dense 2 softmax
  loss cross_entropy
  optimizer adam
}}
"""


def net(extra="", train="pets/train/", shape="3x8x8"):
    return NET.format(extra=extra, train=train, shape=shape)


def errors(text):
    with pytest.raises(DslError) as info:
        parse(text)
    return str(info.value)


def test_folder_rule():
    assert data_format("pets/train/") == "imagefolder" and is_folder_name("a/")
    assert data_format("pets/train") is None and not is_folder_name("a")
    for name in ("a.png", "b.JPG", "c.jpeg", "d.bmp", "e.gif"):
        assert data_format(name) == "image", name
    assert data_format("x.npz/") == "imagefolder"  # the trailing '/' decides


def test_settings_parse_with_defaults_and_format_back():
    text = net("    layout channels_last\n    resize stretch\n    augment crop\n    augment flip p=0.25\n"
               "    augment shift\n")
    d = parse(text).data
    assert (d.layout, d.resize) == ("channels_last", "stretch")
    assert [(a.kind, dict(a.params)) for a in d.augment] == [
        ("crop", {"padding": 4}), ("flip", {"p": 0.25}), ("shift", {"pixels": 2})]
    written = format_model(parse(text))
    assert "    augment crop\n    augment flip p=0.25\n    augment shift\n" in written
    assert format_model(parse(written)) == written
    assert format_source(text) == text


def test_setting_errors():
    assert "'resize' needs 'mode'" in errors(net("    resize\n"))
    assert "unknown value 'squash' for 'mode' of 'resize'" in errors(net("    resize squash\n"))
    assert "'padding' of 'augment crop' must be in [1, 1024], got 0" in errors(net("    augment crop padding=0\n"))
    assert "unknown parameter 'pad' for 'augment crop'" in errors(net("    augment crop pad=2\n"))
    assert "duplicate 'resize' in data" in errors(net("    resize crop\n    resize crop\n"))
    assert "'augment crop' padding=8 would move the whole image out of view" in errors(
        net("    augment crop padding=8\n"))
    assert "'layout' is for image inputs" in errors(net("    layout channels_first\n", "d.npz", "192")
                                                   .replace("  flatten\n", ""))
