"""Cluster seams (docs: README "Cluster"; design: scale-out.md §4-§5).

Three ports keep the actors unaware of where a thread lives:

- :class:`~.ports.ThreadStore`: rollout items, the thread index, names,
  archive and git info, plus an activation *epoch* that fences appends;
- :class:`~.ports.Directory`: which node owns (has activated) a thread;
- :class:`~.ports.Bus`: request-reply, publish and subscribe on subjects.

The in-process implementations (:mod:`.memory`, :mod:`.local_store`) are
what a single process uses; :mod:`.nats_bus`, :mod:`.nats_directory` and
:mod:`.pg_store` are the cluster ones, imported only by :mod:`.node` when
``--cluster`` is given, so the single-process server never imports
nats-py or psycopg.
"""
