"""What a thread leaves on disk, and reading it back: the rollout files
(the original's format), the listing index and the goals (SQLite), the
pages of a thread's history, the repository a rollout records.

=====================  =======================================================
``rollout``            rollout files: the on-disk thread record, its replay
``thread_index``       the thread listing index (SQLite)
``history_pages``      pages of a thread's history (``thread/turns/list``,
                       ``thread/items/list``)
``goals``              thread goals (SQLite)
``git``                what a rollout records of its repository
=====================  =======================================================
"""
