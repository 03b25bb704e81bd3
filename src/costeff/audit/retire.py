"""Close a trail that was removed on purpose, so its folder can start a new one.

The anchor remembers which trail each folder holds, so an emptied, deleted or replaced trail is
refused (nothing is acted on, nothing appended). When the removal was deliberate (a fresh
``artifacts/`` after an archive, say), the key holder closes the old trail: a record signed by the
key, written once in the anchor beside the identity it retires. The folder then starts the next
generation of identity at its next checkpoint. Without the key nobody can retire a trail, so a
deletion by anyone else stays refused.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from costeff.artifacts import iso_utc, sha256_bytes
from costeff.errors import InputError
from costeff.home import Home


def retire(directory: Path | str, reason: str, home: Home, anchor: Any = None) -> dict[str, Any]:
    """Retire the anchored identity of the trail folder ``directory`` (its audit.jsonl must be gone), with
    ``home``'s key in its anchor (or in ``anchor``: a sink or a URI)."""
    from costeff.audit.anchor import RETIRED, identity_slot
    from costeff.audit.files import LOG_NAME
    from costeff.audit.keys import home_signer
    from costeff.audit.log import AuditLog
    from costeff.audit.sealed import seal

    directory = Path(directory)
    if not reason.strip():
        raise InputError("--reason: say why the trail was removed (it goes into the anchor, signed)")
    trail = directory / LOG_NAME
    if trail.exists() and trail.stat().st_size > 0:
        raise InputError(f"{trail}: the trail is still here; move the folder aside first (it keeps verifying "
                         f"where it lies: `costeff audit verify NEWDIR`) and retire the empty one")
    signer = home_signer(home, create=False, protect=(directory,))
    sink = AuditLog(directory, signer=signer, anchor=home.anchor if anchor is None else anchor).sink
    if sink is None or not hasattr(sink, "identity"):
        raise InputError("no checkpoint anchor: there is no remembered trail to retire")
    slot = identity_slot(sink, signer.key_id, directory)
    held = sink.identity(signer.key_id, slot)
    if held is None:
        raise InputError(f"{directory}: the anchor {sink.location} holds no trail of key {signer.key_id} for this "
                         f"folder: nothing to retire")
    body = {"retired": slot, "identity_sha256": sha256_bytes(held), "key_id": signer.key_id,
            "folder": str(directory.resolve()), "reason": reason, "ts": iso_utc()}
    sink.publish_identity(signer.key_id, slot + RETIRED, seal(body, signer)[0])
    return {"folder": str(directory), "retired": slot, "key_id": signer.key_id, "anchor": str(sink.location),
            "next": identity_slot(sink, signer.key_id, directory), "reason": reason}
