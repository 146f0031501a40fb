"""Batches run by the gateway's own worker processes (``flask --app app worker``).

The state lives in the database (:mod:`packet.store.batches`), so any number of workers share
the work. A batch is validated by one worker, its lines are claimed in small groups with a
lease that the claiming worker renews while it lives, each line goes through the same
pipeline as a real-time request (not counted against the account's real-time limits, priced
at ``PACKET_BATCH_DISCOUNT``), and its result, usage row and price are written together. When
every line has ended, one worker assembles the output and error files.

A line whose result is written is never sent again. A line in flight when its worker died is
taken over when its lease runs out (``PACKET_BATCH_LEASE_SECONDS``) and sent once more; its
first answer was never written nor billed, so it is answered and billed once.
"""
