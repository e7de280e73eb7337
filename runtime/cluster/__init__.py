"""Cluster seams (docs: README "Cluster"; design: scale-out.md §4-§5).

Three ports keep the actors unaware of where a thread lives:

- :class:`~.ports.ThreadStore`: rollout items, the thread index, names,
  archive and git info, plus an activation *epoch* that fences appends;
- :class:`~.ports.Directory`: which node owns (has activated) a thread;
- :class:`~.ports.Bus`: request-reply, publish and subscribe on subjects.

The in-process implementations (:mod:`.memory`, and ``LocalThreadStore``
in actors/store.py over the store actor) are what a single process uses;
:mod:`.nats_bus`, :mod:`.nats_directory` and :mod:`.pg_store` are the
cluster ones, imported only by :mod:`.node` when ``--cluster`` is given, so
the single-process server never imports nats-py or psycopg.

How a request reaches the node that owns its thread (README "Cluster"):

- :mod:`.host`: the owner's side (:class:`~.host.TunnelHost`: a virtual
  connection per remote client, settling completions into the store,
  fencing, hand-off and drain) and :func:`~.host.open_tunnels`, which runs
  a node's side of it all;
- :mod:`.gateway`: the client's side (:class:`~.gateway.Gateway`: routing,
  takeover of a thread whose owner is gone);
- :mod:`.listing`: the gateway's answers from the cluster's listing
  (``thread/list``, ``thread/search``, ``thread/search/stream``, and the
  search cancel requests);
- :mod:`.repair`: the gateway's in-order delivery and gap repair;
- :mod:`.tunnel`: one tunnel's owner end, numbered, with its replay buffer;
- :mod:`.events`: the owned threads' lossless events, by per-thread
  number, in the fabric's event tail (:class:`~.ports.EventTail`), and
  the stamps that tell a gateway where its client is in each thread;
- :mod:`.wire`: the headers, subjects, timeouts and helpers they share;
- :mod:`.mirror` (rollouts copied into the store), :mod:`.drain` (handing
  threads off on SIGTERM), :mod:`.node` (opening the cluster ports),
  :mod:`.store_cli` (``trio-codex store export|import``).

The other modules:

=====================  =======================================================
``ports``              the ports: typing Protocols, no implementation
=====================  =======================================================
"""
