"""Running a command: whether it may run without asking (the original's
command-safety rules), under which permissions and sandbox, as which child
process, and the text the model reads of it.

=====================  =======================================================
``safety``             which commands and patches run without asking, and what
                       the client is asked
``permissions``        permission profiles: the sandbox a profile stands for
``sandbox``            the bubblewrap sandbox
``environment``        the environment a command is spawned with
``seccomp``            the sandbox's seccomp filter
``process``            the process runner and tables: every child process of a
                       thread or a connection
``child``              one child process: its session, pipes or terminal,
                       reaping
``output``             the text the model receives for a command
``notify``             the ``notify`` program run after each turn
=====================  =======================================================
"""
