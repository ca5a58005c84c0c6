"""Publishing a new delivery's task off the request's path.

Publishing a Celery message is a Redis round trip and a few milliseconds of kombu; with the
broker slow or down it is much longer. A page or API call that saved a rating does not wait
for it: after the commit the delivery's id goes to one background thread per process, which
publishes whatever has piled up meanwhile on one producer.

Nothing is lost when a publish fails or never happens (broker down, too many ids waiting, the
process stopped with ids still queued): the rating and its pending delivery are committed
first, and the sweeper (`deliveries_sweep`, run by beat every DELIVERY_SWEEP_SECONDS) enqueues
due deliveries that nobody works on. Celery workers keep publishing in line
(`delivery.enqueue_on_commit`): they answer nobody, and a worker process may end right after
its task.
"""

import atexit
import logging
import os
import threading

from django.db import transaction

logger = logging.getLogger(__name__)
MAX_WAITING = 10_000  # while the broker is down; later ones are left to the sweeper
MAX_PER_PRODUCER = 500  # ids published on one producer before the queue is looked at again
# Ids that piled up while a publish ran go out as one task's arguments: a message costs ~2 ms
# of kombu's CPU (bench/README.md), which at hundreds of ratings a second was a core's worth.
# Few enough that one worker's run of them stays short when their sink is slow.
MAX_PER_MESSAGE = 20
EXIT_WAIT_S = 2.0  # a process that stops gives waiting ids this long to go out


def publish_after_commit(delivery_id: int) -> None:
    """Once the transaction commits, have the delivery's task published in the background."""
    transaction.on_commit(lambda: publisher.submit(delivery_id), robust=True)


def _publish(delivery_ids: list[int]) -> None:
    from feedback.tasks import delivery_send

    with delivery_send.app.producer_or_acquire() as producer:
        for first in range(0, len(delivery_ids), MAX_PER_MESSAGE):
            delivery_send.apply_async(
                delivery_ids[first : first + MAX_PER_MESSAGE], producer=producer
            )


class Publisher:
    """One daemon thread per process, started by the first id submitted."""

    def __init__(self) -> None:
        self._fresh_state()
        atexit.register(self.wait_until_idle, EXIT_WAIT_S)
        # A forked child has the parent's waiting ids and lock but not its thread: start over.
        os.register_at_fork(after_in_child=self._fresh_state)

    def _fresh_state(self) -> None:
        self._changed = threading.Condition()
        self._waiting: list[int] = []
        self._busy = False
        self._thread: threading.Thread | None = None

    def submit(self, delivery_id: int) -> None:
        with self._changed:
            self._start_thread()
            if len(self._waiting) >= MAX_WAITING:
                logger.warning(
                    "delivery %s: %d tasks already wait to be published; the sweeper will "
                    "enqueue this one",
                    delivery_id,
                    len(self._waiting),
                )
                return
            self._waiting.append(delivery_id)
            self._changed.notify_all()

    def wait_until_idle(self, timeout_s: float | None = None) -> bool:
        """True once everything submitted was published (or given up on); False on timeout."""
        with self._changed:
            return self._changed.wait_for(lambda: not self._waiting and not self._busy, timeout_s)

    def _start_thread(self) -> None:
        if self._thread is None or not self._thread.is_alive():
            self._thread = threading.Thread(
                target=self._run, name="delivery-publisher", daemon=True
            )
            self._thread.start()

    def _run(self) -> None:
        while True:
            with self._changed:
                self._changed.wait_for(lambda: self._waiting)
                batch = self._waiting[:MAX_PER_PRODUCER]
                del self._waiting[:MAX_PER_PRODUCER]
                self._busy = True
            try:
                _publish(batch)
            except Exception:  # the broker is down or refused: the sweeper sends them later
                logger.exception(
                    "publishing a batch of %d delivery tasks failed; the sweeper will enqueue "
                    "those not published",
                    len(batch),
                )
            finally:
                with self._changed:
                    self._busy = False
                    self._changed.notify_all()


publisher = Publisher()
