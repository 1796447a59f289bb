"""A tiny PNG writer (zlib + struct) and a grouped bar chart, so the benchmark needs no plotting
package. Text is drawn with a 3x5 pixel font: digits, a few letters and punctuation."""

from __future__ import annotations

import struct
import zlib
from collections.abc import Sequence
from pathlib import Path

Color = tuple[int, int, int]
WHITE, BLACK, GREY = (255, 255, 255), (0, 0, 0), (200, 200, 200)
PALETTE: tuple[Color, ...] = ((31, 119, 180), (255, 127, 14), (44, 160, 44), (214, 39, 40))

_FONT = {  # 3x5 glyphs, rows top to bottom, 3 bits each (4 = left pixel)
    "0": (7, 5, 5, 5, 7), "1": (2, 6, 2, 2, 7), "2": (7, 1, 7, 4, 7), "3": (7, 1, 7, 1, 7),
    "4": (5, 5, 7, 1, 1), "5": (7, 4, 7, 1, 7), "6": (7, 4, 7, 5, 7), "7": (7, 1, 1, 1, 1),
    "8": (7, 5, 7, 5, 7), "9": (7, 5, 7, 1, 7), ".": (0, 0, 0, 0, 2), "/": (1, 1, 2, 4, 4),
    "-": (0, 0, 7, 0, 0), " ": (0, 0, 0, 0, 0), "x": (0, 5, 2, 5, 0), ":": (0, 2, 0, 2, 0),
    "a": (0, 6, 3, 5, 7), "b": (4, 4, 7, 5, 7), "c": (0, 7, 4, 4, 7), "d": (1, 1, 7, 5, 7),
    "e": (7, 5, 7, 4, 7), "g": (0, 7, 5, 7, 1), "h": (4, 4, 7, 5, 5), "i": (2, 0, 2, 2, 2),
    "l": (6, 2, 2, 2, 7), "m": (0, 7, 7, 5, 5), "n": (0, 6, 5, 5, 5), "o": (0, 7, 5, 5, 7),
    "p": (7, 5, 7, 4, 4), "r": (0, 7, 4, 4, 4), "s": (0, 3, 4, 1, 6), "t": (4, 7, 4, 4, 7),
    "u": (0, 5, 5, 5, 7), "y": (5, 5, 7, 1, 7), "k": (4, 5, 6, 5, 5), "f": (3, 4, 7, 4, 4),
}  # fmt: skip


class Canvas:
    """An RGB raster with rectangles and tiny text, saved as PNG."""

    def __init__(self, width: int, height: int, background: Color = WHITE) -> None:
        self.width, self.height = width, height
        self.pixels = [bytearray(bytes(background) * width) for _ in range(height)]

    def rect(self, x0: int, y0: int, x1: int, y1: int, color: Color) -> None:
        x0, x1 = max(0, min(x0, x1)), min(self.width, max(x0, x1))
        y0, y1 = max(0, min(y0, y1)), min(self.height, max(y0, y1))
        span = bytes(color) * (x1 - x0)
        for y in range(y0, y1):
            self.pixels[y][3 * x0 : 3 * x1] = span

    def text(self, x: int, y: int, text: str, color: Color = BLACK, scale: int = 2) -> None:
        for char in text.lower():
            rows = _FONT.get(char, _FONT[" "])
            for row, bits in enumerate(rows):
                for column in range(3):
                    if bits & (4 >> column):
                        px, py = x + column * scale, y + row * scale
                        self.rect(px, py, px + scale, py + scale, color)
            x += 4 * scale

    def save(self, path: Path) -> None:
        raw = b"".join(b"\x00" + bytes(row) for row in self.pixels)

        def chunk(kind: bytes, data: bytes) -> bytes:
            body = kind + data
            return struct.pack(">I", len(data)) + body + struct.pack(">I", zlib.crc32(body))

        header = struct.pack(">IIBBBBB", self.width, self.height, 8, 2, 0, 0, 0)
        Path(path).write_bytes(
            b"\x89PNG\r\n\x1a\n"
            + chunk(b"IHDR", header)
            + chunk(b"IDAT", zlib.compress(raw, 9))
            + chunk(b"IEND", b"")
        )


def bar_chart(
    path: Path,
    title: str,
    groups: Sequence[str],
    series: dict[str, Sequence[float]],
    unit: str = "",
) -> None:
    """Grouped bars: one group per label in ``groups``, one bar per series, values on top.

    :param series: name -> one value per group (same order as ``groups``).
    """
    names = list(series)
    width, height, margin, top, bottom = (
        120 + 90 * len(groups) * max(1, len(names)),
        420,
        60,
        60,
        60,
    )
    width = max(width, 480)
    canvas = Canvas(width, height)
    peak = max((v for values in series.values() for v in values), default=1.0) or 1.0
    plot_height = height - top - bottom
    canvas.text(margin, 15, title, scale=3)
    for i in range(5):  # horizontal grid lines with values
        value = peak * i / 4
        y = top + plot_height - int(plot_height * i / 4)
        canvas.rect(margin, y, width - 20, y + 1, GREY)
        canvas.text(4, y - 5, f"{value:.0f}", scale=2)
    group_width = (width - margin - 20) / max(1, len(groups))
    bar_width = max(6, int(group_width / (len(names) + 1)))
    for g, label in enumerate(groups):
        x0 = margin + int(g * group_width) + bar_width // 2
        for s, name in enumerate(names):
            value = series[name][g]
            bar_height = int(plot_height * value / peak)
            x = x0 + s * bar_width
            color = PALETTE[s % len(PALETTE)]
            canvas.rect(
                x, top + plot_height - bar_height, x + bar_width - 2, top + plot_height, color
            )
            canvas.text(x, top + plot_height - bar_height - 12, f"{value:.0f}", scale=1)
        canvas.text(x0, top + plot_height + 8, label, scale=2)
    for s, name in enumerate(names):  # legend
        x = margin + s * 160
        canvas.rect(x, height - 28, x + 14, height - 14, PALETTE[s % len(PALETTE)])
        canvas.text(x + 20, height - 27, f"{name} {unit}".strip(), scale=2)
    canvas.save(path)
