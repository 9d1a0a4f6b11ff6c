"""The latency breakdown of `docs/vla/results.json` as an SVG figure: per configuration, the RTC inference (prefix +
5 guided steps) and the plain inference (prefix + 5 steps) of rtchunk and of JAX on the same GPU, each bar split
into the prefix and the denoising steps.

    python -m rtchunk_train.vla_figure docs/vla/results.json docs/vla/latency.svg
"""

import argparse
import json
from pathlib import Path
from xml.sax.saxutils import escape

COLOURS = {"prefix": "#4c72b0", "steps": "#dd8452"}
ROW, GAP, LEFT, RIGHT, TOP = 22, 14, 250, 90, 40


def bars(result: dict) -> list:
    """(label, prefix ms, steps ms) for each inference measured in `result`."""
    rows = []
    for runtime in ("rtchunk", "jax"):
        for inference, total in (("RTC n = 5", f"{runtime}_rtc_ms"), ("plain n = 5", f"{runtime}_plain5_ms")):
            prefix = result.get(f"{runtime}_prefix_ms")
            if result.get(total) is None or prefix is None:
                continue
            name = "rtchunk (ORT CUDA EP)" if runtime == "rtchunk" else "JAX (jit)"
            rows.append((f"{name}, {inference}", prefix, max(result[total] - prefix, 0.0)))
    return rows


def figure(results: list, width: int = 900) -> str:
    """The SVG text."""
    groups = [(f"{r['model']} {r['attention'].upper()}{' (fused attention)' if r.get('fused_attention') else ''}, "
               f"{r['cameras']} camera{'s' if r['cameras'] > 1 else ''}, {r.get('dtype', '')}", bars(r)) for r in results]
    groups = [(title, rows) for title, rows in groups if rows]
    longest = max((p + s for _, rows in groups for _, p, s in rows), default=1.0)
    scale = (width - LEFT - RIGHT) / longest
    height = TOP + sum(ROW * (len(rows) + 1) + GAP for _, rows in groups) + 30
    parts = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" font-family="sans-serif" '
             f'font-size="12"><rect width="100%" height="100%" fill="white"/>',
             f'<text x="{width / 2}" y="20" text-anchor="middle" font-size="14">Inference latency on one GPU, '
             f'p50 (ms): prefix and denoising steps</text>']
    y = TOP
    for title, rows in groups:
        parts.append(f'<text x="8" y="{y + 14}" font-weight="bold">{escape(title)}</text>')
        y += ROW
        for label, prefix, steps in rows:
            parts.append(f'<text x="{LEFT - 8}" y="{y + 14}" text-anchor="end">{escape(label)}</text>')
            x = LEFT
            for part, ms in (("prefix", prefix), ("steps", steps)):
                parts.append(f'<rect x="{x:.1f}" y="{y + 3}" width="{ms * scale:.1f}" height="{ROW - 6}" '
                             f'fill="{COLOURS[part]}"><title>{part}: {ms:.2f} ms</title></rect>')
                x += ms * scale
            parts.append(f'<text x="{x + 6:.1f}" y="{y + 14}">{prefix + steps:.1f}</text>')
            y += ROW
        y += GAP
    legend_y = height - 18
    for i, (part, colour) in enumerate(COLOURS.items()):
        x = LEFT + i * 280
        label = "prefix (ViT + backbone: the KV cache)" if part == "prefix" else "5 denoising steps"
        parts.append(f'<rect x="{x}" y="{legend_y - 10}" width="12" height="12" fill="{colour}"/>')
        parts.append(f'<text x="{x + 16}" y="{legend_y}">{label}</text>')
    parts.append("</svg>")
    return "\n".join(parts) + "\n"


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("results", type=Path)
    parser.add_argument("out", type=Path)
    args = parser.parse_args()
    args.out.write_text(figure(json.loads(args.results.read_text())))
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
