"""The worker's timer compaction: cancelled time-limit timers leave the heap, live ones stay."""

from __future__ import annotations

from kombu.asynchronous.timer import Timer

from proj.timers import compact


def test_compaction_drops_only_cancelled_entries_and_keeps_the_heap_ordered() -> None:
    timer = Timer()
    fired: list[int] = []
    entries = [timer.call_after(100 + i, fired.append, (i,)) for i in range(10)]
    for entry in entries[::2]:
        entry.cancel()  # what Celery does when a task with a time limit ends
    assert compact(timer) == 5
    assert len(timer.queue) == 5 and compact(timer) == 0
    heap = [eta for eta, _, _ in timer._queue]
    assert all(heap[(i - 1) // 2] <= heap[i] for i in range(1, len(heap)))  # still a valid heap
    assert sorted(entry.args[0] for _, _, entry in timer.queue) == [1, 3, 5, 7, 9]
