"""Pieces of a self-contained HTML page: escaped text, tables, embedded PNG images."""

import base64
import html


def esc(value) -> str:
  return html.escape(str(value), quote=True)


def image(png: bytes, alt: str, width: int | None = None) -> str:
  """An <img> whose PNG travels inside the page (a data: URI): no file, no network."""
  size = f' width="{width}"' if width else ""
  return (f'<img src="data:image/png;base64,{base64.b64encode(png).decode()}" '
          f'alt="{esc(alt)}"{size}>')


def table(header: list | None, rows: list[list], classes: str = "") -> str:
  """A table of already-formatted cells (str; escaped here); no header row for None."""
  head = "".join(f"<th>{esc(h)}</th>" for h in header or [])
  body = "".join("<tr>" + "".join(f"<td>{esc(c)}</td>" for c in row) + "</tr>"
                 for row in rows)
  thead = f"<thead><tr>{head}</tr></thead>" if header else ""
  return f'<table class="{classes}">{thead}<tbody>{body}</tbody></table>'


def pairs(items: list[tuple[str, str]], per_row: int = 3) -> str:
  """(name, value) pairs in a compact table, `per_row` pairs to a row."""
  rows = []
  for i in range(0, len(items), per_row):
    chunk = items[i:i + per_row]
    rows.append("<tr>" + "".join(f"<th>{esc(k)}</th><td>{esc(v)}</td>" for k, v in chunk)
                + "<td></td><td></td>" * (per_row - len(chunk)) + "</tr>")
  return f'<table class="pairs"><tbody>{"".join(rows)}</tbody></table>'


def section(ident: str, title: str, body: str) -> str:
  return f'<section id="{esc(ident)}"><h2>{esc(title)}</h2>\n{body}\n</section>'


STYLE = """
body { font: 14px/1.45 system-ui, -apple-system, "Segoe UI", sans-serif; color: #1a1a1a;
       max-width: 1100px; margin: 0 auto; padding: 16px 24px; background: #fff; }
h1 { font-size: 22px; margin: 8px 0 4px; } h2 { font-size: 17px; margin: 0 0 8px;
     border-bottom: 1px solid #ccc; padding-bottom: 3px; }
section { margin: 22px 0; break-inside: avoid-page; }
table { border-collapse: collapse; margin: 6px 0 10px; font-variant-numeric: tabular-nums; }
th, td { border: 1px solid #d0d0d0; padding: 3px 8px; text-align: right; }
th:first-child, td:first-child { text-align: left; }
thead th { background: #f0f3f7; }
.pairs th { background: #f6f7f9; font-weight: normal; text-align: left; color: #444; }
.pairs td, .info td { text-align: left; } .info td:first-child { color: #444; }
.note { color: #555; font-size: 12.5px; } .warn { color: #a33; }
.figures img { max-width: 100%; height: auto; margin: 4px 8px 4px 0; vertical-align: top; }
.gallery { display: grid; grid-template-columns: repeat(auto-fill, minmax(230px, 1fr));
           gap: 12px; }
figure { margin: 0; break-inside: avoid; border: 1px solid #ddd; padding: 6px; }
figure img { width: 100%; height: auto; image-rendering: pixelated; }
figcaption { font-size: 12px; }
@media print { body { max-width: none; padding: 0; font-size: 11px; }
               .gallery { grid-template-columns: repeat(4, 1fr); } }
"""


def page(title: str, subtitle: str, sections: list[str]) -> str:
  return (f'<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
          f'<meta name="viewport" content="width=device-width, initial-scale=1">'
          f"<title>{esc(title)}</title><style>{STYLE}</style></head>\n<body>"
          f'<h1>{esc(title)}</h1><p class="note">{esc(subtitle)}</p>\n'
          + "\n".join(sections) + "\n</body></html>\n")
