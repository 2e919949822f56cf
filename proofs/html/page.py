"""The page shell: escaping, the inline CSS and the inline script.

Every report is one file, readable offline (a CI artifact opened years later):
no link, font or script is fetched. The script only sorts tables whose header
cells carry ``data-sort`` and filters rows of tables that name a filter form
(``data-filter``), by the rows' ``data-*`` attributes.
"""

from __future__ import annotations

from html import escape
from typing import Any

CSS = """
body{font:14px/1.4 system-ui,sans-serif;margin:1.5em;color:#1d232b;background:#fff}
h1{font-size:1.5em;margin:0 0 .3em}h2{font-size:1.2em;margin:1.4em 0 .4em;
border-bottom:1px solid #ccd}h3{font-size:1.05em;margin:1em 0 .3em}
table{border-collapse:collapse;margin:.4em 0}th,td{padding:2px 8px;text-align:left;
vertical-align:top;border-bottom:1px solid #e4e6ea}th{background:#f1f3f6}
th[data-sort]{cursor:pointer}th[data-sort]:after{content:" \\2195";color:#99a}
td.detail{min-width:240px;max-width:620px}
#obligations td.mono{overflow-wrap:anywhere;min-width:240px;max-width:340px}
td.detail pre{white-space:pre-wrap}
td.num,th.num{text-align:right;font-variant-numeric:tabular-nums}
code,pre,.mono{font-family:ui-monospace,Menlo,Consolas,monospace;font-size:12.5px}
pre{background:#f6f7f9;padding:.5em;overflow:auto;max-height:24em;margin:.3em 0}
.pass{color:#14733a}.fail{color:#b3261e;font-weight:600}.warn{color:#8a5a00}
tr.failing{background:#fdecea}tr.marked{background:#fff3c4;outline:2px solid #e0a800}
.badge{display:inline-block;padding:0 6px;border-radius:8px;font-size:12px;color:#fff}
.badge.pass{background:#14733a}.badge.fail{background:#b3261e}.badge.warn{background:#8a5a00}
.summary{display:flex;gap:1.5em;flex-wrap:wrap;margin:.5em 0}
.summary div{background:#f1f3f6;padding:.4em .8em;border-radius:6px}
.filters{display:flex;gap:1em;flex-wrap:wrap;align-items:end;margin:.5em 0}
.filters label{display:flex;flex-direction:column;font-size:12px;color:#556}
.scroll{max-height:420px;overflow:auto;border:1px solid #e4e6ea}
.side{display:flex;gap:1.5em;flex-wrap:wrap;align-items:flex-start}
.side>div{flex:1 1 300px;min-width:0}
figure{margin:.3em 0}
.state-part{border-left:3px solid #ccd;padding-left:.8em;margin:.8em 0}
.state h4{margin:.4em 0 .1em;font-size:13px;color:#445}
.stderr{color:#6b4f00;font-size:12px;white-space:pre-wrap}
.diff{color:#b3261e;font-weight:600}
svg text{font:11px system-ui,sans-serif}svg .mono{font:10px ui-monospace,monospace}
.legend span{display:inline-block;margin-right:1em;font-size:12px}
.legend i{display:inline-block;width:12px;height:12px;vertical-align:middle;margin-right:4px;
border:1px solid #667}
"""

SCRIPT = """
document.querySelectorAll('th[data-sort]').forEach(function(th){
  th.addEventListener('click',function(){
    var table=th.closest('table'),body=table.tBodies[0],i=th.cellIndex,
        num=th.dataset.sort==='num',up=th.dataset.dir!=='up';th.dataset.dir=up?'up':'down';
    var rows=Array.prototype.slice.call(body.rows);
    rows.sort(function(a,b){var x=a.cells[i].dataset.value||a.cells[i].textContent,
      y=b.cells[i].dataset.value||b.cells[i].textContent;
      var c=num?(parseFloat(x)-parseFloat(y)):x.localeCompare(y);return up?c:-c;});
    rows.forEach(function(r){body.appendChild(r);});});});
document.querySelectorAll('form[data-filter]').forEach(function(form){
  var table=document.getElementById(form.dataset.filter);
  function apply(){var shown=0;
    Array.prototype.forEach.call(table.tBodies[0].rows,function(row){
      var ok=true;Array.prototype.forEach.call(form.elements,function(el){
        if(!el.name||!el.value)return;var v=row.dataset[el.name]||'';
        if(el.dataset.op==='min')ok=ok&&parseFloat(v)>=parseFloat(el.value);
        else if(el.dataset.op==='text')ok=ok&&row.textContent.toLowerCase()
          .indexOf(el.value.toLowerCase())>=0;
        else ok=ok&&v===el.value;});
      row.hidden=!ok;if(ok)shown++;});
    var out=form.querySelector('output');if(out)out.textContent=shown+' shown';}
  form.addEventListener('input',apply);form.addEventListener('submit',function(e){
    e.preventDefault();});apply();});
"""


def esc(value: Any) -> str:
    """Text from a report, escaped for HTML content and attribute values."""
    return escape(str(value), quote=True)


def attributes(**values: Any) -> str:
    """` name="value"` pairs (``data_x`` -> ``data-x``); None and False are left out."""
    return "".join(f' {name.replace("_", "-")}="{esc(value)}"' for name, value in values.items()
                   if value is not None and value is not False)


def page(title: str, body: str) -> str:
    """The whole self-contained document."""
    return (f"<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
            f"<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">"
            f"<title>{esc(title)}</title><style>{CSS}</style></head>\n<body>\n"
            f"<h1>{esc(title)}</h1>\n{body}\n<script>{SCRIPT}</script>\n</body></html>\n")


def table(head: list[str], rows: list[str], table_id: str | None = None,
          sortable: dict[int, str] | None = None) -> str:
    """A table of already rendered ``<tr>`` rows; column i sortable as
    ``sortable[i]`` ("num" or "text")."""
    sortable = sortable or {}
    cells = "".join(f"<th{attributes(data_sort=sortable.get(i))}>{esc(h)}</th>"
                    for i, h in enumerate(head))
    return (f"<table{attributes(id=table_id)}><thead><tr>{cells}</tr></thead>"
            f"<tbody>\n{''.join(rows)}</tbody></table>")


def hexa(value: Any) -> str:
    """An address as the reports print it (hex from 0x1000 up)."""
    return hex(value) if isinstance(value, int) and not isinstance(value, bool) \
        and value >= 0x1000 else str(value)
