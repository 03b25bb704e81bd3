"""The A/A noise floor, and when one full round is enough.

fp32 is timed twice in every round, as two separately started processes (the
A/A control). How far the two disagree is the noise a winner must beat, and
tells whether a machine is quiet enough for one round to decide.
"""

from __future__ import annotations

from typing import Any

CONTROL = "fp32 (A/A)"  # fp32 timed a second time, in a process of its own, every round


def noise_floor(rounds: list[dict[str, Any]], kind: str = "full") -> dict[str, Any] | None:
    """The spread of fp32 against itself: the largest A/A ratio (capacity and answer time) over clean rounds
    (of the full rounds: a screening round's short windows only decide who is timed fully)."""
    rounds = [r for r in rounds if r.get("kind", "full") == kind]
    pairs = [(r["measurements"].get("fp32"), r["measurements"].get(CONTROL)) for r in rounds]
    pairs = [(a, b) for a, b in pairs if a and b]
    if not pairs:
        return None
    clean = [(a, b) for a, b in pairs if not bad(a) and not bad(b)]
    used = clean or pairs
    cap = [b["optimal_throughput_per_s"] / a["optimal_throughput_per_s"] for a, b in used]
    ans = [b["answer_ms"] / a["answer_ms"] for a, b in used if a["answer_ms"] and b["answer_ms"]]
    spread = lambda xs: max((max(x, 1 / x) - 1 for x in xs if x > 0), default=0.0)  # noqa: E731
    return {"method": "fp32 timed twice per round in separate processes (first and last); the floor is the "
                      "largest relative difference between the two over undisturbed rounds",
            "capacity_ratios": [round(x, 4) for x in cap], "answer_time_ratios": [round(x, 4) for x in ans],
            "capacity": round(spread(cap), 4), "answer_time": round(spread(ans), 4),
            "rounds_used": len(used), "rounds_disturbed": len(pairs) - len(clean), "only_disturbed": not clean}


def bad(m: dict[str, Any]) -> bool:
    return bool(m.get("load") and m["load"].get("disturbed"))


def floor_of(rounds: list[dict[str, Any]], kind: str = "full") -> float:
    floor = noise_floor(rounds, kind)
    return max(floor["capacity"], floor["answer_time"]) if floor else 0.0


DECISIVE = 1.5  # a first full round decides alone when every comparison in it is at least this lopsided ...
# ... and fp32 agreed with its A/A twin within 20 %: turning a 1.5x gap over takes both sides of it wrong by more
# than 22 % in opposite directions, more than the round's own A/A pair shows (1.2 x 1.2 < 1.5)
QUIET_AA = 0.20


def decisive(caps: dict[str, float], answers: dict[str, float]) -> bool:
    """Whether one undisturbed round's capacities and answer times (per label, the A/A twin included)
    decide alone.

    A second round guards against a win within the noise. It is not needed when the round's A/A pair
    agreed within ``QUIET_AA`` and every variant differs from fp32 and from every other variant by at
    least ``DECISIVE`` times in capacity and in answer time: no noise the A/A pair allows turns that over."""
    if CONTROL not in caps:
        return False
    if any(not 0 < q[k] < float("inf") for q in (caps, answers) for k in q):
        return False
    if any(max(q[CONTROL] / q["fp32"], q["fp32"] / q[CONTROL]) - 1 > QUIET_AA for q in (caps, answers)):
        return False
    names = [k for k in caps if k != CONTROL]
    return all(max(q[a] / q[b], q[b] / q[a]) >= DECISIVE for i, a in enumerate(names) for b in names[i + 1:]
               for q in (caps, answers))
