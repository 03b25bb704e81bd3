"""Audit verification speed: `costeff audit verify` of a 1,000,000-record signed trail.

The trail is written as AuditLog writes it (sealed lines, Ed25519 over each body,
a chained signed checkpoint every 1,000 records, each anchored in a directory
sink), but buffered rather than fsync'd line by line so the set-up stays short. Verification is the real command path.
"""

from __future__ import annotations

import os
import tempfile
import time
from pathlib import Path

RECORDS = int(os.environ.get("COSTEFF_BENCH_AUDIT_RECORDS", 1_000_000))
CHECKPOINT_EVERY = 1000


def main() -> dict:
    from costeff.audit import keygen, verify

    with tempfile.TemporaryDirectory() as tmp:
        tmp_path = Path(tmp)
        os.environ.setdefault("COSTEFF_ARTIFACTS", str(tmp_path / "artifacts"))
        key, pub, _ = keygen(tmp_path / "keys" / "audit_ed25519")
        started = time.perf_counter()
        write_trail(tmp_path / "audit", key, tmp_path / "anchor", RECORDS)
        print(f"wrote {RECORDS:,} signed records in {time.perf_counter() - started:.1f} s "
              f"({os.path.getsize(tmp_path / 'audit' / 'audit.jsonl') / 1e6:.0f} MB)", flush=True)
        started, cpu = time.perf_counter(), time.process_time()
        result = verify(tmp_path / "audit", pub, anchor=str(tmp_path / "anchor"))
        wall, cpu = time.perf_counter() - started, time.process_time() - cpu
        print(f"verify: ok={result.ok}, {result.records:,} records, {result.anchored_checkpoints} anchored "
              f"checkpoints, {result.signatures_checked} record signatures checked beyond the checkpoint "
              f"signatures: {wall:.1f} s wall, {cpu:.1f} s CPU")
        if os.environ.get("COSTEFF_BENCH_ALL_SIGNATURES"):  # minutes on 2 cores: opt-in
            started = time.perf_counter()
            full = verify(tmp_path / "audit", pub, anchor=str(tmp_path / "anchor"), all_signatures=True)
            print(f"verify --all-signatures: ok={full.ok}, {full.signatures_checked:,} signatures in "
                  f"{time.perf_counter() - started:.1f} s")
    return {"goals": [
        {"name": f"audit verify of {RECORDS:,} signed records (s)", "observed": round(wall, 1),
         "threshold": 30.0, "comparator": "<=", "passed": result.ok and wall <= 30.0},
    ]}


def write_trail(directory: Path, key: Path, anchor_root: Path, count: int) -> None:
    """Sealed lines as AuditLog writes them, buffered instead of fsync'd one by one."""
    from costeff.audit import load_signer
    from costeff.audit.anchor import DirectorySink
    from costeff.audit.log import CHECKPOINT_NAME, GENESIS, LOG_NAME
    from costeff.audit.sealed import seal

    directory.mkdir(parents=True)
    signer, sink = load_signer(key, create=False), DirectorySink(anchor_root)
    prev, prev_cp, trail, offset = GENESIS, GENESIS, None, 0
    with open(directory / LOG_NAME, "wb") as log, open(directory / CHECKPOINT_NAME, "wb") as cps:
        for seq in range(count):
            line, _, prev = seal({"seq": seq, "ts": "2026-12-01T00:00:00Z", "event": "reaper.action",
                                  "actor": "costeff-reaper", "host": "bench",
                                  "payload": {"mode": "replay", "action": "reap", "target": f"deployment/p{seq % 7}",
                                              "usd_per_hour_saved": 2.5},
                                  "prev_sha256": prev, "key_id": signer.key_id}, signer)
            log.write(line)
            trail, offset = trail or prev, offset + len(line)
            if (seq + 1) % CHECKPOINT_EVERY == 0 or seq == count - 1:
                cp, _, prev_cp = seal({"seq": seq, "line_sha256": prev, "ts": "2026-12-01T00:00:00Z",
                                       "trail": trail, "prev_checkpoint_sha256": prev_cp, "key_id": signer.key_id,
                                       "records_verified": True, "offset": offset},  # this writer signed them all
                                      signer)
                sink.publish(trail, seq, cp)
                cps.write(cp)
