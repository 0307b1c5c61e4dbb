"""The shared validators: a wrong count or range is a ConfigError that names the binding, shows
what was given and says what would be right; bools are not numbers; bounds are inclusive."""
import pytest

from engine.errors import ConfigError, require_int, require_interval, require_number


def test_require_int_returns_the_value_and_keeps_inclusive_bounds():
    assert require_int(1, "T.steps", low=1) == 1
    assert require_int(8, "T.window", low=0, high=8) == 8
    assert require_int(-3, "T.offset") == -3
    for value in (0, 9):
        with pytest.raises(ConfigError, match=r"^T\.window must be an integer in \[1, 8\], got " + str(value)):
            require_int(value, "T.window", low=1, high=8)


@pytest.mark.parametrize("value", [True, False, 2.0, "3", None, [1]])
def test_require_int_refuses_what_is_not_an_int(value):
    with pytest.raises(ConfigError) as caught:
        require_int(value, "Model.num_layers", low=0)
    assert str(caught.value) == f"Model.num_layers must be an integer >= 0, got {value!r}"


def test_one_sided_bounds_and_the_hint_read_as_one_message():
    with pytest.raises(ConfigError, match=r"^T\.n must be an integer <= 4, got 5; a 2x2 grid has 4 cells$"):
        require_int(5, "T.n", high=4, hint="a 2x2 grid has 4 cells")


def test_require_number_takes_ints_and_floats_with_open_or_closed_bounds():
    assert require_number(0, "EMA.decay", low=0, below=1) == 0
    assert require_number(0.5, "T.rate", low=0, high=1) == 0.5
    assert require_number(1, "T.rate", low=0, high=1) == 1
    with pytest.raises(ConfigError, match=r"^EMA\.decay must be a number in \[0, 1\), got 1\.0$"):
        require_number(1.0, "EMA.decay", low=0, below=1)
    with pytest.raises(ConfigError, match=r"^T\.temperature must be a number > 0, got 0$"):
        require_number(0, "T.temperature", above=0)
    for value in (True, "0.5", float("nan")):
        with pytest.raises(ConfigError, match=r"^T\.rate must be a number in \[0, 1\]"):
            require_number(value, "T.rate", low=0, high=1)


def test_require_interval_checks_shape_order_and_bounds():
    assert require_interval((1, 1), "CPVR.train_hops", low=1, high=7) == (1, 1)
    assert require_interval([0, 3], "PVR.train_windows", low=0, high=9) == (0, 3)
    assert require_interval((0, 45), "Rotated.angles", integer=False) == (0.0, 45.0)
    for value in ((3, 1), (0, 8), (1, 2, 3), 4, (1, True), (1.0, 2)):
        with pytest.raises(ConfigError) as caught:
            require_interval(value, "CPVR.train_hops", low=1, high=7)
        assert str(caught.value) == ("CPVR.train_hops must be a (low, high) pair of integers with "
                                     f"1 <= low <= high <= 7, got {value!r}")
