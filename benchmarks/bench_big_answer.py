"""Memory of one very large API answer: what reading it costs, against the floor, and what the size
cap (``http.max_response_bytes``, default 64 MiB) bounds.

Each answer is a page of Azure Boards revisions (``{"count": N, "value": [...]}``) written to a file
and served by a real HTTP server (``python -m http.server``, its own process). A fresh process per
row reads it once with the collector's client (``ApiClient.get_json``: the body read in chunks under
the cap and the deadline, then decoded), and another fresh process with the floor: ``json.loads``
of the file's bytes, what any Python reader pays. Peak RSS is the reading process's own high-water
mark (``VmHWM``, see ``rss.py``); the baseline is the same mark just before the read (imports done).
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
MB = 1024 * 1024


def revision(i: int) -> dict[str, object]:
    """One revision as Azure DevOps sends it (the fields the Boards source reads, and some it does not)."""
    return {
        "id": 1000 + i // 4,
        "rev": i % 4 + 1,
        "fields": {
            "System.Id": 1000 + i // 4,
            "System.WorkItemType": "User Story",
            "System.State": ("New", "Active", "Resolved", "Closed")[i % 4],
            "System.Reason": "Moved to state",
            "System.AreaPath": "Fabrikam\\Web",
            "System.TeamProject": "Fabrikam",
            "System.IterationPath": "Fabrikam\\Sprint 12",
            "System.ChangedDate": f"2025-05-{1 + i % 28:02d}T10:{i % 60:02d}:00.123Z",
            "System.CreatedDate": "2025-04-01T09:00:00.000Z",
            "System.Title": f"Make the checkout page faster for returning customers ({i})",
            "System.ChangedBy": {"displayName": "Jamal Hartnett", "uniqueName": "jamal@fabrikam.example"},
        },
        "url": f"https://dev.azure.com/contoso/_apis/wit/workItems/{1000 + i // 4}/revisions/{i % 4 + 1}",
    }


def write_answer(folder: Path, size: int) -> tuple[Path, int]:
    one = len(json.dumps(revision(0))) + 2
    n = max(1, size // one)
    path = folder / f"answer-{size // MB}.json"
    with path.open("w") as out:
        out.write(f'{{"count": {n}, "value": [')
        for i in range(n):
            out.write(("," if i else "") + json.dumps(revision(i)))
        out.write("]}")
    return path, n


READER = r"""
import json, sys, time
from rss import high_water_mb
mode, url, path, cap = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])
if mode == "ours":
    from collector.http import AnswerTooLarge, ApiClient, RetryPolicy
    client = ApiClient("bench", url, None, policy=RetryPolicy(attempts=1, max_body_bytes=cap))
base = high_water_mb()
started = time.perf_counter()
outcome = "decoded"
if mode == "ours":
    try:
        data, _ = client.get_json(path)
        records = len(data["value"])
    except AnswerTooLarge:
        outcome, records = "refused", 0
else:
    with open(path, "rb") as f:
        records = len(json.loads(f.read())["value"])
peak = high_water_mb()
print(json.dumps({"outcome": outcome, "records": records, "base": base, "peak": peak,
                  "seconds": time.perf_counter() - started}))
"""


def read(mode: str, url: str, path: str, cap: int) -> dict[str, object]:
    out = subprocess.run(
        [sys.executable, "-c", READER, mode, url, path, str(cap)],
        cwd=ROOT,
        env={**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), str(HERE)])},
        capture_output=True,
        text=True,
        check=True,
    )
    result: dict[str, object] = json.loads(out.stdout)
    return result


def main() -> None:
    rows = [(8, 64), (32, 64), (60, 64), (100, 64), (100, 128)]
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        files = {size: write_answer(folder, size * MB) for size in sorted({s for s, _ in rows})}
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        server = subprocess.Popen(
            [sys.executable, "-m", "http.server", str(port), "--bind", "127.0.0.1", "--directory", tmp],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        try:
            deadline = time.time() + 10
            while time.time() < deadline:
                try:
                    socket.create_connection(("127.0.0.1", port), timeout=1).close()
                    break
                except OSError:
                    time.sleep(0.1)
            url = f"http://127.0.0.1:{port}"
            print("one answer of N MB (a page of Azure Boards revisions): peak RSS of the reading process, MB")
            print(
                f"{'answer':>7} {'records':>9} {'cap':>5}  {'ours':>8} {'growth':>7} {'seconds':>8}"
                f"  {'floor':>7} {'growth':>7}  {'ours / floor (growth)':>22}"
            )
            for size, cap in rows:
                path, n = files[size]
                ours = read("ours", url, f"/{path.name}", cap * MB)
                floor = read("floor", url, str(path), cap * MB)
                grown = float(ours["peak"]) - float(ours["base"])  # type: ignore[arg-type]
                floor_grown = float(floor["peak"]) - float(floor["base"])  # type: ignore[arg-type]
                ratio = f"{grown / floor_grown:.2f} x" if ours["outcome"] == "decoded" else f"{ours['outcome']}"
                print(
                    f"{size:>5} MB {n:>9,} {cap:>3} MB  {float(ours['peak']):>8.0f} {grown:>7.0f} "  # type: ignore[arg-type]
                    f"{float(ours['seconds']):>8.2f}  {float(floor['peak']):>7.0f} {floor_grown:>7.0f}  {ratio:>22}"  # type: ignore[arg-type]
                )
        finally:
            server.terminate()
            server.wait(timeout=10)


if __name__ == "__main__":
    main()
