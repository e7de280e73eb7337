"""Analytics: facts in through a small best-effort mailbox, events out
through the exporters; never in the way of the server. Every actor records
facts through :mod:`.facts` (the one module of this package other actors
import).

=====================  =======================================================
``actor``              the actor: facts in through a best-effort mailbox,
                       events out
``facts``              the facts, and the ``Recorder`` every actor hands them
                       to
``reducer``            pure: facts in, analytics events out
=====================  =======================================================
"""
