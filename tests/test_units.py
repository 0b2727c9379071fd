import pytest

from fabric.units import UnitError, parse_fraction, parse_rate, parse_size, parse_time


@pytest.mark.parametrize("text,bits", [
    ("400Gbit/s", 400e9), ("450GB/s", 3.6e12), ("100Mbit/s", 1e8), ("64GB/s", 512e9), ("1.6Tbit/s", 1.6e12),
    ("12.5GB/s", 100e9), ("800 Gbit/s", 800e9), ("10kbit/s", 1e4),
])
def test_rates(text, bits):
    assert parse_rate(text) == pytest.approx(bits)


@pytest.mark.parametrize("text,seconds", [
    ("2us", 2e-6), ("1.5us", 1.5e-6), ("0.1us", 1e-7), ("10ms", 1e-2), ("1s", 1.0), ("500ns", 5e-7),
    ("2µs", 2e-6), (0, 0.0), ("0", 0.0),
])
def test_times(text, seconds):
    assert parse_time(text) == pytest.approx(seconds)


@pytest.mark.parametrize("text,nbytes", [
    ("4KiB", 4096), ("1MiB", 2**20), ("32MiB", 2**25), ("1GiB", 2**30), (1048576, 2**20), ("1kB", 1000),
])
def test_sizes(text, nbytes):
    assert parse_size(text) == nbytes


@pytest.mark.parametrize("text,frac", [("0%", 0.0), ("0.1%", 0.001), ("1%", 0.01), (0.02, 0.02), ("100%", 1.0)])
def test_fractions(text, frac):
    assert parse_fraction(text) == pytest.approx(frac)


@pytest.mark.parametrize("parser,text", [
    (parse_rate, "400Gb"), (parse_rate, "-5Gbit/s"), (parse_rate, "0Gbit/s"), (parse_rate, "fast"),
    (parse_rate, True), (parse_time, "2"), (parse_time, "2 parsecs"), (parse_time, "-1us"),
    (parse_size, "4Kb"), (parse_size, "0.5B"), (parse_size, 0), (parse_fraction, "150%"), (parse_fraction, 2),
    (parse_fraction, "1 percent"),
])
def test_bad_values_name_what_was_expected(parser, text):
    with pytest.raises(UnitError, match="expected"):
        parser(text)


def test_a_number_too_large_for_a_float_is_the_one_line_error():
    """Found by the profile fuzz: bytes: 1e999 read as infinity and ended in an OverflowError."""
    for parse in (parse_size, parse_rate, parse_time):
        with pytest.raises(UnitError, match="not a finite number"):
            parse("1e999")
