"""Shared by the benchmark scripts: where results go and what is written beside every number.

Every benchmark writes `benchmarks/results/<name>.json` and `<name>.md` (and PNGs where useful),
each carrying the command that produced it, the machine and the date.
"""
from __future__ import annotations

import datetime as _dt
import json
import os
import platform
import shlex
import sys
from pathlib import Path
from typing import Any, Sequence

RESULTS = Path(__file__).resolve().parent / "results"


def machine() -> dict[str, Any]:
    import torch

    info = {
        "platform": platform.platform(),
        "python": platform.python_version(),
        "torch": torch.__version__,
        "cpu_cores": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "cpu": _cpu_name(),
        # the same "AMD EPYC" name has been AVX512_BF16 hosts and AVX2-only ones: speeds differ by kind
        "cpu_capability": torch.backends.cpu.get_cpu_capability(),
        "cpu_native_bf16": bool(torch.cpu._is_avx512_bf16_supported() or torch.cpu._is_amx_tile_supported()),
        "gpu": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None,
        "load_avg_1_5_15": [round(v, 2) for v in os.getloadavg()] if hasattr(os, "getloadavg") else None,
    }
    return info


def _cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def command() -> str:
    """The command line that ran this process, as a user would type it (`python -m benchmarks.x ...`)."""
    spec = getattr(sys.modules.get("__main__"), "__spec__", None)
    head = ["-m", spec.name] if spec is not None and spec.name else sys.argv[:1]
    return " ".join(shlex.quote(a) for a in [Path(sys.executable).name, *head, *sys.argv[1:]])


def markdown_table(rows: Sequence[dict[str, Any]], columns: Sequence[str] | None = None) -> str:
    if not rows:
        return "(no rows)\n"
    columns = list(columns or rows[0].keys())

    def fmt(v: Any) -> str:
        if isinstance(v, float):
            return f"{v:.4g}"
        return str(v)

    lines = ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    lines += ["| " + " | ".join(fmt(r.get(c, "")) for c in columns) + " |" for r in rows]
    return "\n".join(lines) + "\n"


def write_results(
    name: str,
    rows: Sequence[dict[str, Any]],
    title: str,
    notes: str = "",
    extra: dict[str, Any] | None = None,
    columns: Sequence[str] | None = None,
    out_dir: str | os.PathLike | None = None,
) -> Path:
    """Print the table and write `<name>.json` + `<name>.md` under benchmarks/results (or out_dir)."""
    out = Path(out_dir) if out_dir else RESULTS
    out.mkdir(parents=True, exist_ok=True)
    meta = {
        "command": command(),
        "machine": machine(),
        "date": _dt.datetime.now(_dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
    }
    table = markdown_table(rows, columns)
    print(f"\n{title}\n\n{table}")
    (out / f"{name}.json").write_text(json.dumps({"title": title, **meta, "rows": list(rows), "notes": notes, **(extra or {})}, indent=2, default=str) + "\n")
    m = meta["machine"]
    md = [
        f"# {title}",
        "",
        f"- command: `{meta['command']}`",
        f"- machine: {m['cpu']} ({m.get('cpu_capability')}, native bf16: {m.get('cpu_native_bf16')}), {m['cpu_cores']} cores ({m['torch_threads']} torch threads), GPU: {m['gpu'] or 'none'}; torch {m['torch']}, Python {m['python']}",
        f"- load average (1, 5, 15 min) when written: {m.get('load_avg_1_5_15')}",
        f"- date: {meta['date']}",
        "",
        table,
    ]
    if notes:
        md += ["", notes.strip(), ""]
    (out / f"{name}.md").write_text("\n".join(md))
    return out
