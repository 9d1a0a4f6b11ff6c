"""The latency figure draws one bar per measured inference, split into prefix and steps, to scale."""

import xml.etree.ElementTree as ElementTree

from rtchunk_train.vla_figure import figure

SVG = "{http://www.w3.org/2000/svg}"


def test_each_measured_inference_is_one_bar_of_prefix_and_steps_to_scale():
    results = [
        {"model": "vla-3b", "attention": "gta", "cameras": 1, "dtype": "bfloat16", "rtchunk_prefix_ms": 10.0,
         "rtchunk_rtc_ms": 80.0, "rtchunk_plain5_ms": 30.0, "jax_prefix_ms": 6.0, "jax_rtc_ms": 20.0,
         "jax_plain5_ms": 14.0},
        {"model": "vla-3b", "attention": "gqa", "cameras": 3, "rtchunk_prefix_ms": 12.0, "rtchunk_rtc_ms": 40.0},
        {"model": "vla-500m", "attention": "gta", "cameras": 1, "failure": "ran past 300 s"},
    ]
    root = ElementTree.fromstring(figure(results, width=900))
    bars = [r for r in root.iter(f"{SVG}rect") if r.find(f"{SVG}title") is not None]
    assert len(bars) == 2 * (4 + 1)
    widths = [float(r.get("width")) for r in bars]
    # rtchunk's RTC bar is the longest: its prefix and steps take the whole plotting width in proportion 10 : 70.
    assert abs(widths[1] / widths[0] - 7.0) < 1e-2
    texts = [t.text for t in root.iter(f"{SVG}text")]
    assert "vla-3b GQA, 3 cameras, " in texts and not any("vla-500m" in (t or "") for t in texts)
