"""The `waste:` section: defaults, a custom file, and errors that name the field at fault."""

from pathlib import Path

import pytest
import yaml

from collector.waste.config import WasteConfig, WasteConfigError, load_waste_config

TESTDATA = Path(__file__).parent.parent / "testdata" / "waste"


def _section(name: str):
    return yaml.safe_load((TESTDATA / name).read_text())["waste"]


def test_defaults_are_documented_values():
    config = load_waste_config(None)
    assert config == WasteConfig()
    assert config.any_enabled
    bloat = config.context_bloat
    assert (bloat.baseline_steps, bloat.growth_factor, bloat.growing_steps) == (3, 3.0, 3)
    assert (bloat.min_step_growth, bloat.min_input_tokens, bloat.context_window_share) == (0.25, 1000, 0.8)
    assert (config.loop.repeats, config.loop.tools) == (3, True)
    assert (config.retry_storm.failures, config.retry_storm.window_seconds) == (5, 60.0)


def test_custom_file_overrides_only_what_it_names():
    config = load_waste_config(_section("custom.yaml"))
    assert config.max_tracked_calls == 500
    assert config.context_windows == {"llama-3-70b-local": 8192}
    assert config.context_bloat.growth_factor == 4.0
    assert config.context_bloat.context_window_share == 0.9
    assert config.context_bloat.baseline_steps == 3  # default kept
    assert (config.loop.repeats, config.loop.tools) == (5, False)
    assert not config.retry_storm.enabled
    assert config.any_enabled


def test_every_fault_is_named_with_its_dotted_path():
    with pytest.raises(WasteConfigError) as caught:
        load_waste_config(_section("faults.yaml"))
    message = str(caught.value)
    assert "waste.context_bloat.growth_factor: Input should be greater than 1" in message
    assert "waste.context_bloat.grow_steps: unknown setting (misspelt?)" in message
    assert "waste.loop.repeats: Input should be greater than or equal to 2" in message
    assert "waste.retry_storm.window_seconds: Input should be greater than 0" in message
    assert "waste.context_windows.tiny: Input should be greater than 0" in message


def test_a_section_that_is_not_a_mapping_is_refused_clearly():
    with pytest.raises(WasteConfigError, match=r"^waste: must be a mapping of detector settings, got list$"):
        load_waste_config(["loop"])


def test_context_window_check_can_be_switched_off_with_null():
    config = load_waste_config({"context_bloat": {"context_window_share": None}})
    assert config.context_bloat.context_window_share is None


def test_everything_disabled():
    config = load_waste_config({"enabled": False})
    assert not config.any_enabled
